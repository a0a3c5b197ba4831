"""A lean async HTTP/1.1 load client: keep-alive connections from the project's upstream pool.

It reuses :class:`waitroom_proxy.asgi.upstream.UpstreamPool` (asyncio protocol + httptools), so
one Python process can drive thousands of requests per second, which aiohttp or httpx cannot
on one core. One request at a time per connection; concurrency = the number of callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Sequence

from waitroom_proxy.asgi.upstream import UpstreamError, UpstreamPool

Header = tuple[bytes, bytes]


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[Header], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def cookie(self, name: str) -> str | None:
        """The value of a ``Set-Cookie`` for ``name`` (None if absent; "" when deleted)."""
        prefix = name.encode() + b"="
        for k, v in self.headers:
            if k == b"set-cookie" and v.startswith(prefix):
                return v[len(prefix) :].split(b";", 1)[0].decode("latin-1")
        return None


class LoadClient:
    """Requests to one ``http://host:port`` over up to ``pool_size`` keep-alive connections."""

    def __init__(self, base_url: str, *, pool_size: int = 256, timeout: float = 30.0) -> None:
        self.pool = UpstreamPool(base_url, connect_timeout=timeout, pool_size=pool_size)
        self.host = self.pool.authority.encode()
        self.timeout = timeout
        self.errors = 0

    async def request(
        self, method: str, path: str, headers: Sequence[Header] = (), body: bytes = b""
    ) -> Response:
        pool = self.pool
        conn = pool.acquire_idle(asyncio.get_running_loop().time())
        if conn is None:
            conn = await pool.connect()
        conn.start(head=method == "HEAD")
        lines = [f"{method} {path} HTTP/1.1".encode(), b"host: " + self.host]
        lines.extend(k + b": " + v for k, v in headers)
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: " + str(len(body)).encode())
        conn.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        conn.end_request()  # without it the pool never reuses the connection (a new one a request)
        try:
            await conn.read_head(self.timeout)
            while not conn.complete:
                if conn.exc is not None:
                    raise conn.exc
                await conn.wait(self.timeout)
        except (UpstreamError, OSError):
            self.errors += 1
            conn.abort()
            raise
        data = conn.take()
        status, hdrs = conn.status, conn.headers
        pool.release(conn)
        return Response(status, hdrs, data)

    async def aclose(self) -> None:
        await self.pool.aclose()


class Tally:
    """Counts and latencies of one kind of request."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.statuses: dict[int, int] = {}
        self.latencies_ms: list[float] = []

    def add(self, status: int, ms: float, ok: bool) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        self.latencies_ms.append(ms)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q / 100 * len(data)))]


async def drive(
    op: Callable[[int], Awaitable[bool | None]], *, duration: float, concurrency: int,
    limit: int | None = None,
) -> tuple[int, float]:  # fmt: skip
    """Run ``op(i)`` from ``concurrency`` tasks for ``duration`` seconds (or ``limit`` calls).

    Returns (calls completed, seconds). Exceptions in ``op`` count as calls and are swallowed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    counter = itertools.count()
    done = 0

    async def worker() -> None:
        nonlocal done
        while loop.time() < deadline:
            i = next(counter)
            if limit is not None and i >= limit:
                return
            with contextlib.suppress(UpstreamError, OSError):
                await op(i)
            done += 1

    start = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, loop.time() - start
