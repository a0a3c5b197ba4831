"""``events tail`` against a real nats-server with JetStream, as a function and as the CLI.

Every test uses its own room name, so tests can share the session's server and stream.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.nats_helpers import flushed, make, new_room
from waitroom_proxy.adapters.nats_events import NatsPublisher
from waitroom_proxy.cli.event_tail import tail
from waitroom_proxy.domain import events as ev

# -- tail ------------------------------------------------------------------------------------


class _Lines(io.StringIO):
    """A StringIO written from the tail thread and read from the test."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, s: str) -> int:
        with self.lock:
            return super().write(s)

    def lines(self) -> list[str]:
        with self.lock:
            return self.getvalue().splitlines()


async def _run_tail(nats_url: str, room: str | None, n: int) -> tuple[threading.Thread, _Lines]:
    out = _Lines()
    ready = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            tail(nats_url, room, out=out, max_events=n, on_ready=ready.set)
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 10)
    assert not errors, errors
    return thread, out


async def test_tail_prints_one_room(publisher: NatsPublisher, nats_url: str) -> None:
    room, other = new_room(), new_room()
    thread, out = await _run_tail(nats_url, room, 2)
    publisher.publish(make(ev.POSITION_ENQUEUED, other, place="x"))
    publisher.publish(make(ev.SYSTEM_STORE_DOWN, None))
    e1 = make(ev.POSITION_ENQUEUED, room, place="p1")
    e2 = make(ev.POSITION_ADMITTED, room, place="p1")
    publisher.publish(e1)
    publisher.publish(e2)
    await flushed(publisher)
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    assert out.lines() == [
        f'{ev.rfc3339(e1.time)}  position.enqueued  {room}  {{"place":"p1"}}',
        f'{ev.rfc3339(e2.time)}  position.admitted  {room}  {{"place":"p1"}}',
    ]


async def test_tail_prints_everything_without_a_room(
    publisher: NatsPublisher, nats_url: str
) -> None:
    room = new_room()
    thread, out = await _run_tail(nats_url, None, 2)
    e1 = make(ev.SYSTEM_STORE_UP, None)
    e2 = make(ev.QUEUE_PAUSED, room)
    publisher.publish(e1)
    publisher.publish(e2)
    await flushed(publisher)
    await asyncio.to_thread(thread.join, 10)
    lines = out.lines()
    assert lines[0] == f"{ev.rfc3339(e1.time)}  system.store_up  -  {{}}"
    assert lines[1] == f"{ev.rfc3339(e2.time)}  queue.paused  {room}  {{}}"


def test_tail_says_clearly_when_nats_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as info:
        tail(f"nats://user:secret@127.0.0.1:{port}", None, connect_timeout=1.0)
    assert time.monotonic() - t0 < 5
    msg = str(info.value.code)
    assert "cannot reach NATS" in msg and f"127.0.0.1:{port}" in msg
    assert "secret" not in msg


def _cli() -> list[str]:
    return [sys.executable, "-m", "waitroom_proxy"]


async def test_cli_events_tail_prints_until_interrupted(
    publisher: NatsPublisher, nats_url: str
) -> None:
    room = new_room()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    proc = subprocess.Popen(
        [*_cli(), "events", "tail", "--room", room, "--nats-url", nats_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first: list[str] = []
        reader = threading.Thread(
            target=lambda: first.append(proc.stdout.readline() if proc.stdout else ""),
            daemon=True,
        )
        reader.start()
        # The consumer delivers only new events: publish until the first line shows up.
        deadline = time.monotonic() + 20
        while reader.is_alive():
            assert time.monotonic() < deadline, "events tail printed nothing"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            publisher.publish(make(ev.SESSION_STARTED, room, place="p9"))
            await asyncio.sleep(0.2)
        assert first[0].split("  ")[1:] == ["session.started", room, '{"place":"p9"}\n']
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_events_tail_fails_clearly_when_nats_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    proc = subprocess.run(
        [*_cli(), "events", "tail", "--nats-url", f"nats://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "cannot reach NATS" in proc.stderr
