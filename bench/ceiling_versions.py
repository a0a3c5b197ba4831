"""The versions the ceiling benchmark compares (``bench/ceiling.py``): the calls each version's
``RedisStore`` makes, recorded in a subprocess that imports that version's package (``git
archive`` of a revision), and its schedule of store touches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.ceiling_store import PLACE

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 1_000
"""The schedule is evaluated per block of places (its thresholds are multiples of it)."""
MAX_WAITERS = 20_000_000


class _Recorded(redis.RedisError):
    """Raised by the recorder so that the adapter call stops once its arguments are known."""


class _Recorder:
    def __init__(self, sha: str) -> None:
        self.sha = sha
        self.keys: list[str] = []
        self.args: list[str] = []

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        self.keys = [str(k) for k in keys]
        self.args = [str(a) for a in args]
        raise _Recorded


async def _record(store: Any, name: str, call: Callable[[], Awaitable[Any]]) -> list[str]:
    scripts: dict[str, Any] = store._scripts
    original = scripts[name]
    recorder = _Recorder(original.sha)
    scripts[name] = recorder
    try:
        with contextlib.suppress(Exception):
            await call()
    finally:
        scripts[name] = original
    if not recorder.keys:
        raise RuntimeError(f"the adapter made no {name} call")
    return ["EVALSHA", recorder.sha, str(len(recorder.keys)), *recorder.keys, *recorder.args]


async def record_calls(room: str, url: str) -> dict[str, Any]:
    """The calls this version's ``RedisStore`` makes, and its schedule of store touches."""
    from waitroom_proxy.adapters.redis_store import RedisStore
    from waitroom_proxy.domain.policy import RoomPolicy
    from waitroom_proxy.domain.rules import refresh_seconds
    from waitroom_proxy.ports import RoomLimits

    try:
        from waitroom_proxy.domain.pacing import touch_interval

        how = "every few polls far back (domain.pacing)"
    except ImportError:
        touch_interval = refresh_seconds
        how = "every poll"
    store = RedisStore(url, timeout=5.0)
    # (a room's default max_queue_length is 1M: a bigger room must be configured so)
    queue_only = RoomLimits(
        capacity=1, abandon_after_ms=3_600_000, direct_admit=False, max_queue_length=MAX_WAITERS
    )
    ticking = RoomLimits(capacity=1)  # the default abandon_after: the sweep's real pace
    beat: Callable[[], Awaitable[Any]] = lambda: store.heartbeat(room, PLACE)  # noqa: E731
    if "abandon_after_ms" in inspect.signature(store.heartbeat).parameters:
        # (a long abandon_after: the measured polls must not find their places silent)
        beat = lambda: store.heartbeat(room, PLACE, 3_600_000)  # type: ignore[call-arg]  # noqa: E731
    try:
        calls = {
            "holder": await _record(store, "arrive", lambda: store.arrive(room, PLACE, ticking)),
            "arrive": await _record(store, "arrive", lambda: store.arrive(room, PLACE, queue_only)),
            "heartbeat": await _record(store, "heartbeat", beat),
            "hit": await _record(store, "hit", lambda: store.hit(PLACE, 600, 60_000)),
            "tick": await _record(store, "tick", lambda: store.tick(room, ticking)),
        }
    finally:
        await store.close()
    policy = RoomPolicy(name="default", capacity=1)
    blocks = range(0, MAX_WAITERS, BLOCK)
    return {
        "calls": calls,
        "scripts": [s.source for s in store._scripts.values()],
        "touch": [touch_interval(policy, a) for a in blocks],
        "poll": [refresh_seconds(policy, a) for a in blocks],
        "how": how,
    }


@dataclass
class Version:
    label: str
    room: str
    calls: dict[str, list[str]]
    scripts: list[str]
    touch: list[float]
    poll: list[float]
    how: str
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    in_flight: int = 0
    """0: the recorded calls, one in flight per connection (``redis-benchmark``); else this
    tree's ``RedisStore`` drives the heartbeats with this many calls in flight, its batcher
    pipelining them, and ``redis-benchmark -P`` sends arrivals at the depth it reached."""

    ids: int = 1
    """Place ids per heartbeat call (``redis-benchmark`` sending a gathered call: 1 is a lone
    heartbeat); the column's other calls are its base version's."""

    def batched(self, in_flight: int) -> Version:
        """This version driven through its own client, gathered (``in_flight``)."""
        return dataclasses.replace(
            self,
            label=f"{self.label}, own client",
            how=f"{self.how}, a room's heartbeats of one turn gathered ({in_flight} in flight)",
            results={},
            in_flight=in_flight,
        )

    def gathered(self, ids: int) -> Version:
        """This version with ``ids`` place ids in each heartbeat call."""
        return dataclasses.replace(
            self,
            label=f"{self.label}, {ids} ids a call",
            how=f"{self.how}, {ids} heartbeats a call",
            results={},
            ids=ids,
        )

    def rate(self, intervals: list[float], waiters: int) -> float:
        """Calls per second of ``waiters`` waiters at places 0 .. waiters-1."""
        full, rest = divmod(waiters, BLOCK)
        total = sum(BLOCK / i for i in intervals[:full])
        if rest:
            total += rest / intervals[full]
        return total

    def ceiling(self, budget: float, cost: Callable[[int], float]) -> int:
        """The most waiters (to a block) whose ``cost(n)`` (core seconds per second) fits."""
        lo, hi = 0, BLOCK
        while hi < MAX_WAITERS and cost(hi) <= budget:
            lo, hi = hi, min(MAX_WAITERS, hi * 2)
        while hi - lo > BLOCK:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
        return lo


@contextlib.contextmanager
def tree_of(rev: str) -> Iterator[Path]:
    """The package of revision ``rev`` (``git archive``) in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="waitroom-ceiling-rev-") as tmp:
        archive = Path(tmp) / "tree.tar"
        with open(archive, "wb") as fh:
            subprocess.run(
                ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "waitroom_proxy"],
                stdout=fh, check=True, timeout=60,
            )  # fmt: skip
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def describe(label: str, room: str, url: str, tree: Path | None) -> Version:
    """Record a version's calls in a subprocess that imports that version's package."""
    path = os.pathsep.join(str(p) for p in (tree, ROOT) if p is not None)
    done = subprocess.run(
        [sys.executable, "-m", "bench.ceiling", "--describe", room, url],
        env={**os.environ, "PYTHONPATH": path}, cwd=tree or ROOT,  # (the cwd comes first)
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"describing {label} failed: {done.stderr[-2000:]}")
    return Version(label=label, room=room, **json.loads(done.stdout))
