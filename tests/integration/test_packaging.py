"""A non-editable install (a wheel in a fresh venv) ships the templates and the Lua scripts,
and its console script and ``python -m`` entry work."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = [
    f"waitroom_proxy/templates/{f.name}"
    for f in sorted((REPO / "templates").iterdir())
    if f.is_file() and f.suffix != ".py"
]
"""Every template, script and style the pages and the console load: all must be shipped."""


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel, and everything the build printed (``-v``: setuptools' warnings too)."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v",
         "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (whl,) = out.glob("waitroom_proxy-*.whl")
    return whl, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(build: tuple[Path, str]) -> Path:
    return build[0]


def test_the_build_prints_no_setuptools_warning(build: tuple[Path, str]) -> None:
    """No deprecation (the ``project.license`` table) and no packaging ambiguity (a data
    directory that is an importable package missing from ``packages``)."""
    log = build[1]
    found = [
        line.strip()
        for line in log.splitlines()
        if re.search(r"Deprecat|_Warning:|SetuptoolsWarning|License classifiers", line)
    ]
    assert not found, found


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "waitroom_proxy/py.typed",
        *TEMPLATES,
        "waitroom_proxy/adapters/lua/arrive.lua",
        "waitroom_proxy/adapters/lua/tick.lua",
        "waitroom_proxy/adapters/lua/hit.lua",
        "waitroom_proxy/adapters/lua/prelude/bucket.lua",
        "waitroom_proxy/adapters/lua/prelude/settled.lua",
        "waitroom_proxy/service/gatekeeper.py",
        "waitroom_proxy/server/apps.py",
        "waitroom_proxy/ports/store.py",
    ):
        assert required in names, required


def test_fresh_venv_install_finds_templates(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q",
         str(wheel)],
        check=True,
        timeout=300,
    )  # fmt: skip
    # Dependencies come from the test venv's site-packages (appended, so the wheel's copy of
    # the package wins over the editable checkout).
    deps = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": deps, "PATH": "/usr/bin:/bin"}
    probe = (
        "import waitroom_proxy, sys;"
        "from waitroom_proxy.asgi.page import PageRenderer;"
        "html = PageRenderer().waiting_page({'status': 'waiting', 'room': 'r', 'position': 3},"
        " nonce='abcdefgh12345678');"
        "assert 'wr-position' in html;"
        # Every package is in the wheel: the server stack and the Lua scripts with their
        # preludes.
        "from waitroom_proxy import WaitroomMiddleware;"
        "from waitroom_proxy.adapters.redis_store import load_script_source;"
        "assert 'bucket_refill' in load_script_source('tick');"
        "print(waitroom_proxy.__file__)"
    )
    out = subprocess.run([str(py), "-c", probe], env=env, capture_output=True, text=True,
                         timeout=60, check=True, cwd=tmp_path)  # fmt: skip
    assert out.stdout.strip().startswith(str(env_dir)), out.stdout
    example = REPO / "examples" / "waitroom.toml"
    for cmd in (
        [str(env_dir / "bin" / "waitroom-proxy"), "check-config", str(example)],
        [str(py), "-m", "waitroom_proxy", "check-config", str(example)],
    ):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "OK" in r.stdout
