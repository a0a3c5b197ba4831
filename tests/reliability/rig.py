"""Shared parts of the reliability suite: a counting origin, an event recorder, the proxy under
test on real uvicorn, and small load and statistics helpers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.events import Event
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app

SECRET = "reliability-secret-" + "r" * 32


class CountingOrigin:
    """A raw ASGI origin: counts requests by path and answers a small JSON body."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.log: list[tuple[float, str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            more = msg.get("more_body", False)
        self.hits[scope["path"]] += 1
        self.methods[scope["method"]] += 1
        self.log.append((time.monotonic(), scope["method"], scope["path"]))
        body = b'{"origin":true}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RecordingPublisher:
    """An event publisher that keeps every event with the monotonic time it was published."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []

    def publish(self, event: Event) -> None:
        self.events.append((time.monotonic(), event))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def times(self, type_: str) -> list[float]:
        return [t for t, e in self.events if e.type == type_]

    async def wait_for(self, type_: str, after: float, timeout: float) -> float | None:
        """The first time ``type_`` was published after ``after``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t in self.times(type_):
                if t >= after:
                    return t
            await asyncio.sleep(0.01)
        return None


@dataclass
class Rig:
    url: str
    app: Any
    origin: CountingOrigin
    events: RecordingPublisher
    room: str

    @property
    def engine(self) -> Any:
        return self.app.engine

    @property
    def gate(self) -> Any:
        return self.app.engine.gate


@contextlib.asynccontextmanager
async def proxy_rig(
    policy: RoomPolicy | tuple[RoomPolicy, ...],
    *,
    store: Any,
    server: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    controller_interval: float = 0.2,
    http: Any = None,
    publisher: Any = None,
) -> AsyncIterator[Rig]:
    """The standalone proxy (real uvicorn) in front of a counting origin, on this loop.

    ``policy``: one room, or several (the rig's ``room`` is then the first one's name).
    """
    rooms = policy if isinstance(policy, tuple) else (policy,)
    origin = CountingOrigin()
    events = publisher if publisher is not None else RecordingPublisher()
    async with serve_asgi(origin) as origin_url:
        options: dict[str, Any] = {"secret": SECRET, **(server or {})}
        settings = Settings(rooms=rooms, upstream=origin_url, **options)
        app = build_app(
            settings,
            store=store,
            publisher=events,
            clock=clock,
            controller_interval=controller_interval,
            access_log=False,
        )
        extra = {"http": http} if http is not None else {}
        # uvicorn closes a keep-alive connection 5 s after a response unless the next request
        # was read by then; on a starved loop (a loaded CI machine) that timer can fire with
        # the next request already waiting, and the client sees a reset that no test here is
        # about. 75 s is nginx's keepalive_timeout.
        async with serve_asgi(app, timeout_keep_alive=75, **extra) as url:
            yield Rig(url, app, origin, events, rooms[0].name)


def client(url: str, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=kw.pop("timeout", 10), **kw)


JSON = {"accept": "application/json"}


@dataclass
class Sample:
    t: float
    status: int
    latency: float
    body_status: str | None = None


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)

    def between(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in self.samples if t0 <= s.t <= t1]


async def timed(c: httpx.AsyncClient, rec: Recorder, method: str, path: str, **kw: Any) -> Any:
    t0 = time.monotonic()
    try:
        r = await c.request(method, path, **kw)
    except httpx.HTTPError as exc:
        rec.errors.append((t0, f"{type(exc).__name__}: {exc}"))
        return None
    body_status = None
    if r.headers.get("content-type", "").startswith("application/json"):
        with contextlib.suppress(ValueError):
            data = r.json()
            if isinstance(data, dict):
                body_status = data.get("status")
    rec.samples.append(Sample(t0, r.status_code, time.monotonic() - t0, body_status))
    return r


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


async def admitted_client(url: str, path: str = "/s") -> httpx.AsyncClient:
    """A client holding a session (capacity must be free)."""
    c = client(url)
    r = await c.get(path)
    assert r.status_code == 200 and r.json() == {"origin": True}, r.text[:200]
    assert c.cookies.get("waitroom_session"), "no session cookie"
    return c


def report(name: str, **figures: Any) -> None:
    """Print the figures a test measured (shown with ``-s``, and kept in the log with -rA)."""
    text = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    print(f"\nRELIABILITY {name}: {text}")
