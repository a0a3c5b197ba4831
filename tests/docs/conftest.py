"""Fixtures of the documentation checks: an origin site, and a fresh copy of the repository
after the README's install step."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.helpers import clean_env, copy_repo
from tests.docs.registry import REPO, command
from tests.examples.procs import Proc, free_port, wait_http


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The static example site, served on a free port (an origin for the quick starts)."""
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(REPO / "examples" / "static-site" / "site")],
        tmp_path / "site.log", env=clean_env(),
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files in a new directory, after the README's first step there:
    ``scripts/install`` makes a new venv from ``requirements/runtime.txt`` (as on a new
    machine), so the commands that follow it run without the test environment."""
    copy = copy_repo(tmp_path_factory.mktemp("fresh") / "waitroom-proxy")
    done = subprocess.run(
        ["bash", "-c", command("scripts/install").text], cwd=copy, env=clean_env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (copy / ".venv" / "bin" / "waitroom-proxy").is_file()
    return copy
