"""The command line: CliRunner for each command, and real ``python -m waitroom_proxy`` runs."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import waitroom_proxy
import waitroom_proxy.cli
from waitroom_proxy import __version__
from waitroom_proxy.cli import format_settings, main
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Bypass, RoomPolicy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "waitroom.toml"
BROKEN = """\
[server]
port = "abc"

[[rooms]]
name = "sale"
capacity = 0
mode = "lifo"
capcity = 3
"""
BROKEN_PROBLEMS = [
    'server.port: must be an integer 1-65535, got "abc"',
    "rooms[0].capacity: must be >= 1, got 0",
    'rooms[0].mode: must be one of fifo, random, passthrough, reject, queue_all, got "lifo"',
    'rooms[0].capcity: unknown key (did you mean "capacity"?)',
]


@pytest.fixture(autouse=True)
def clean_env() -> Iterator[None]:
    """The tests' own WAITROOM_* variables only; ``serve`` exports its flags, so restore all."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("WAITROOM_"):
            del os.environ[name]
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def fake_module(monkeypatch: pytest.MonkeyPatch, parent: Any, name: str, **attrs: Any) -> None:
    """Install ``parent.name`` as a stand-in module (the real one may not exist yet)."""
    module = types.ModuleType(f"{parent.__name__}.{name}")
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(parent, name, module, raising=False)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Settings]]:
    calls: list[Settings] = []
    fake_module(monkeypatch, waitroom_proxy, "server", run=calls.append)
    yield calls


# --- top level --------------------------------------------------------------------------------


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_commands_and_env_vars(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("check-config", "serve", "demo", "events"):
        assert command in result.output
    result = runner.invoke(main, ["serve", "--help"])
    for env in ("WAITROOM_UPSTREAM", "WAITROOM_CAPACITY", "WAITROOM_PORT", "WAITROOM_STORE_URL"):
        assert env in result.output


# --- check-config -----------------------------------------------------------------------------


def test_check_config_prints_rooms_with_secrets_masked(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(
        '[server]\nstore_url = "redis://:store-password@cache:6379/0"\n'
        'secret = "file-secret-file-secret-file-secret"\n'
        '[[rooms]]\nname = "sale"\ncapacity = 5\n'
        '[rooms.bypass]\nsecret = "bypass-bypass-bypass"\n'
    )
    result = runner.invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert '[room "sale"]' in result.output
    assert "redis://:***@cache:6379/0" in result.output
    for secret in ("store-password", "file-secret", "bypass-bypass"):
        assert secret not in result.output
    assert result.output.rstrip().endswith("OK, 1 room")


def test_check_config_applies_env_unless_ignored(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAITROOM_PORT", "nope")
    result = runner.invoke(main, ["check-config", str(EXAMPLE)])
    assert result.exit_code == 2
    assert result.stderr == 'WAITROOM_PORT: must be an integer 1-65535, got "nope"\n'
    result = runner.invoke(main, ["check-config", "--ignore-env", str(EXAMPLE)])
    assert result.exit_code == 0


def test_check_config_lists_every_problem(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    result = runner.invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == BROKEN_PROBLEMS
    assert result.stdout == ""


def test_check_config_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = runner.invoke(main, ["check-config", str(missing)])
    assert result.exit_code == 2
    assert result.stderr == f"{missing}: no such file\n"


def test_format_settings_shows_every_value() -> None:
    room = RoomPolicy(name="r", capacity=3, bypass=Bypass(secret="0123456789abcdef"))
    text = format_settings(Settings(rooms=(room,), admin_token="a" * 16, previous_secrets=("p",)))
    assert "0123456789abcdef" not in text and "a" * 16 not in text
    assert "  bypass.secret             ***" in text
    assert "  admin_token               ***" in text
    assert "  capacity                  3" in text
    assert "  template                  (built-in)" in text
    assert "  session_renewal           true" in text


# --- serve ------------------------------------------------------------------------------------


def test_serve_quick_start(runner: CliRunner, served: list[Settings]) -> None:
    result = runner.invoke(
        main,
        ["serve", "--upstream", "http://127.0.0.1:8000", "--capacity", "100", "--port", "9000"],
    )
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert settings.upstream == "http://127.0.0.1:8000"
    assert settings.port == 9000
    assert settings.rooms == (RoomPolicy(name="default", capacity=100),)


def test_serve_hands_its_flags_to_worker_processes(
    runner: CliRunner, served: list[Settings]
) -> None:
    # uvicorn workers rebuild settings from the environment (server.run.worker_app).
    args = ["serve", "-c", str(EXAMPLE), "--upstream", "http://o:1", "--port", "9005"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert os.environ["WAITROOM_CONFIG"] == str(EXAMPLE)
    assert os.environ["WAITROOM_UPSTREAM"] == "http://o:1"
    assert os.environ["WAITROOM_PORT"] == "9005"
    from waitroom_proxy.config import load_settings

    assert load_settings(None, env=os.environ) == served[0]


def test_serve_flags_beat_env_beats_file(
    runner: CliRunner, served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAITROOM_PORT", "9001")
    monkeypatch.setenv("WAITROOM_LOG_LEVEL", "debug")
    monkeypatch.setenv("WAITROOM_CONFIG", str(EXAMPLE))
    result = runner.invoke(main, ["serve", "--port", "9002"])
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert settings.port == 9002  # flag over env
    assert settings.log_level == "debug"  # env over file
    assert [room.name for room in settings.rooms] == ["ticket-sale", "lottery"]  # WAITROOM_CONFIG


def test_serve_with_config_flag(runner: CliRunner, served: list[Settings]) -> None:
    result = runner.invoke(main, ["serve", "-c", str(EXAMPLE), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert len(served[0].rooms) == 2


def test_serve_without_rooms(runner: CliRunner, served: list[Settings]) -> None:
    result = runner.invoke(main, ["serve"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "capacity: no rooms configured: pass --capacity N (or WAITROOM_CAPACITY) "
        "or a config file with [[rooms]]",
    ]
    assert served == []


def test_serve_without_upstream_is_forward_auth_mode(
    runner: CliRunner, served: list[Settings]
) -> None:
    result = runner.invoke(main, ["serve", "--capacity", "5", "--port", "9006"])
    assert result.exit_code == 0, result.output
    assert served[0].upstream is None and served[0].auth_cache_seconds == 5


def test_serve_bad_env_and_flags_are_reported_together(
    runner: CliRunner, served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAITROOM_WORKERS", "many")
    result = runner.invoke(
        main, ["serve", "--upstream", "ftp://x", "--capacity", "0", "--port", "http"]
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        'WAITROOM_WORKERS: must be an integer >= 1, got "many"',
        '--upstream: must be a http:// or https:// URL with a host, got "ftp://x"',
        "--capacity: must be >= 1, got 0",
        '--port: must be an integer 1-65535, got "http"',
    ]
    assert "Traceback" not in result.output
    assert served == []


def test_serve_capacity_with_several_rooms(runner: CliRunner, served: list[Settings]) -> None:
    result = runner.invoke(main, ["serve", "-c", str(EXAMPLE), "--capacity", "5"])
    assert result.exit_code == 2
    assert "--capacity: applies to a single room, but the config file has 2 rooms" in (
        result.stderr
    )


# --- demo and events tail ---------------------------------------------------------------------


def test_demo(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    fake_module(monkeypatch, waitroom_proxy, "demo", run_demo=lambda port: calls.append(port))
    assert runner.invoke(main, ["demo"]).exit_code == 0
    assert runner.invoke(main, ["demo", "--port", "9123"]).exit_code == 0
    assert calls == [8080, 9123]
    result = runner.invoke(main, ["demo", "--port", "0"])
    assert result.exit_code == 2


def test_events_tail_needs_a_nats_url(runner: CliRunner) -> None:
    result = runner.invoke(main, ["events", "tail", "--room", "sale"])
    assert result.exit_code == 2
    assert result.stderr == ("--nats-url: required: pass --nats-url URL or set WAITROOM_NATS_URL\n")


def test_events_tail_checks_url_and_room(runner: CliRunner) -> None:
    result = runner.invoke(main, ["events", "tail", "--nats-url", "http://x", "--room", "Sale!"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        '--nats-url: must be a nats:// or tls:// URL with a host, got "http://x"',
        '--room: must be 1-64 characters of a-z, 0-9, _ and -, got "Sale!"',
    ]


def test_events_tail_calls_the_tail(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str | None]] = []

    def tail(nats_url: str, room: str | None) -> None:
        calls.append((nats_url, room))

    fake_module(monkeypatch, waitroom_proxy.cli, "event_tail", tail=tail)
    monkeypatch.setenv("WAITROOM_NATS_URL", "nats://127.0.0.1:4222")
    result = runner.invoke(main, ["events", "tail"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["events", "tail", "--room", "sale", "--nats-url", "tls://n:1"])
    assert result.exit_code == 0, result.output
    assert calls == [("nats://127.0.0.1:4222", None), ("tls://n:1", "sale")]

    def interrupted(nats_url: str, room: str | None) -> None:
        raise KeyboardInterrupt

    fake_module(monkeypatch, waitroom_proxy.cli, "event_tail", tail=interrupted)
    assert runner.invoke(main, ["events", "tail"]).exit_code == 0


# --- real processes ---------------------------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WAITROOM_")}
    return subprocess.run(
        [sys.executable, "-m", "waitroom_proxy", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_subprocess_check_config_example() -> None:
    result = run_module("check-config", "examples/waitroom.toml")
    assert result.returncode == 0, result.stderr
    assert '[room "ticket-sale"]' in result.stdout
    assert '[room "lottery"]' in result.stdout
    assert result.stdout.rstrip().endswith("examples/waitroom.toml: OK, 2 rooms")
    # What serve would warn about, and that its rooms match example.com hosts only (so a try
    # on localhost queues nothing).
    warning, note = result.stderr.splitlines()
    assert warning.startswith("warning: secret is not set: a random secret is used")
    assert note.startswith("note: no room matches every host, so requests for any other host")
    assert "ticket-sale: tickets.example.com/, *.example.com/sale; lottery:" in note


def test_subprocess_check_config_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    result = run_module("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == BROKEN_PROBLEMS
    assert "Traceback" not in result.stdout + result.stderr


def test_subprocess_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "waitroom.toml"
    path.write_text("[server]\nport = 1\nhost = \n")
    result = run_module("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr == f"{path}: invalid TOML at line 3, column 8: invalid value\n"
    assert "Traceback" not in result.stdout + result.stderr
