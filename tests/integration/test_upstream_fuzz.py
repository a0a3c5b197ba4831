"""Stateful fuzzing of the upstream client: whatever the origin sends, reuse stays on a boundary.

A Hypothesis state machine drives one ``UpstreamProxy`` (called as an ASGI app, in-process)
against one raw origin on loopback, exchange after exchange. Each step picks a request (method,
body in one piece or streamed) and what the origin answers: interim 1xx, any status, correct or
wrong framing (short, long, chunked with trailers, bad chunks, both CL and TE, duplicate CL,
close-delimited), ``Connection: close``, bytes after the response, an answer sent before the
request body was read, a close after the answer.

Invariants checked after every step:

- **response side**: if the connection went back to the pool, the origin's bytes were exactly
  one complete response for that request (h11, as an independent parser, agrees, with no byte
  left over). An origin that closes *after* a clean response may still be pooled: its FIN
  comes later, and a pooled connection found closed is not used (or the request is retried
  when nothing came back), which is no desync;
- **request side**: every request the origin parsed is exactly one the proxy was given (target
  and body), in order, so a reused connection never makes the origin read one request's bytes
  as part of another; a parse error at the origin only ever follows a request the proxy gave
  up on mid-body;
- **client side**: ``forward`` never raises, the status and headers sent are ones the ASGI
  server can write, a body sent with a Content-Length has exactly that length, and an
  HTTP/1.0 client always gets one (it cannot read chunked framing).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import h11
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

from waitroom_proxy.asgi.proxy import UpstreamProxy

# -- what the origin answers ----------------------------------------------------------------

INTERIM = [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"]
STATUSES = [200, 201, 204, 206, 301, 304, 404, 500, 101, 600, 999]
FRAMINGS = ["cl", "cl_short", "cl_long", "chunked", "trailers", "bad_chunk", "both", "dup_cl",
            "none"]  # fmt: skip


@dataclass(frozen=True)
class Answer:
    raw: bytes
    early: bool
    close: bool  # the origin closes after writing ``raw``


@st.composite
def answers(draw: Any) -> Answer:
    parts = draw(st.lists(st.sampled_from(INTERIM), max_size=2))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    status = draw(st.sampled_from(STATUSES))
    framing = draw(st.sampled_from(FRAMINGS))
    conn = draw(st.sampled_from([b"", b"connection: close\r\n", b"connection: keep-alive\r\n"]))
    body = draw(st.binary(max_size=40))
    extra = draw(st.sampled_from([b"", b"HTTP/1.1 200 OK\r\nx-injected: 1\r\ncontent-length: 4"
                                  b"\r\n\r\nevil", b"garbage", b"\r\n"]))  # fmt: skip
    odd = draw(st.sampled_from([b"", b"x-del: a\x7fb\r\n", b"x-fold: a\r\n b\r\n",
                                b"bad name: v\r\n", b"x-nul: a\x00b\r\n", b"x-bin: \xff\xfe\r\n",
                                b"x-cr: a\rb\r\n", b": empty-name\r\n"]))  # fmt: skip
    head = b"%b %d Status\r\n%b%b" % (version, status, conn, odd)
    if framing == "cl":
        msg = head + b"content-length: %d\r\n\r\n%b" % (len(body), body)
    elif framing == "cl_short":
        msg = head + b"content-length: %d\r\n\r\n%b" % (len(body) + 5, body)
    elif framing == "cl_long":
        msg = head + b"content-length: %d\r\n\r\n%b" % (len(body), body + b"tail")
    elif framing in ("chunked", "trailers"):
        chunk = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
        trailer = b"x-trailer: forged\r\n" if framing == "trailers" else b""
        msg = head + b"transfer-encoding: chunked\r\n\r\n" + chunk + b"0\r\n" + trailer + b"\r\n"
    elif framing == "bad_chunk":
        msg = head + b"transfer-encoding: chunked\r\n\r\nzz\r\n" + body + b"\r\n0\r\n\r\n"
    elif framing == "both":
        msg = head + b"content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
    elif framing == "dup_cl":
        msg = head + b"content-length: %d\r\ncontent-length: 1\r\n\r\n%b" % (len(body), body)
    else:  # none: close-delimited
        msg = head + b"\r\n" + body
    close = draw(st.booleans()) or framing in ("cl_short", "none")
    return Answer(b"".join(parts) + msg + extra, draw(st.booleans()), close)


@dataclass(frozen=True)
class Ask:
    method: str
    pieces: tuple[bytes, ...]  # more than one: streamed to the proxy piece by piece
    http_version: str  # the client's


asks = st.builds(
    Ask,
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]),
    st.lists(st.binary(min_size=1, max_size=30), max_size=3).map(tuple),
    st.sampled_from(["1.1", "1.0"]),
)


def clean_keepalive(method: str, raw: bytes) -> bool:
    """h11's view: ``raw`` is exactly one complete response to ``method``, keep-alive."""
    at = raw.rfind(b"HTTP/1.0 ")
    if at >= 0 and b"connection: keep-alive" in raw[at:].lower():
        # h11 never keeps an HTTP/1.0 connection; RFC 9112 §9.3 allows it with keep-alive,
        # with the same framing: judge it as the HTTP/1.1 response it is equivalent to.
        raw = raw[:at] + b"HTTP/1.1 " + raw[at + 9 :]
    c = h11.Connection(h11.CLIENT)
    c.send(h11.Request(method=method, target="/", headers=[("host", "o")]))
    c.send(h11.EndOfMessage())
    try:
        c.receive_data(raw)
        while True:
            event = c.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
    except h11.RemoteProtocolError:
        return False
    # Empty lines between messages are skipped by every HTTP/1.1 parser (RFC 9112 §2.2): they
    # cannot shift the next message, so they do not count as bytes after the response.
    left = c.trailing_data[0]
    return c.their_state is h11.DONE and not c.trailing_data[1] and not left.strip(b"\r\n")


# -- the origin -----------------------------------------------------------------------------


@dataclass
class Seen:
    target: bytes
    body: bytes = b""
    complete: bool = False


@dataclass
class OriginConn:
    seen: list[Seen] = field(default_factory=list)
    error: bool = False


class Origin:
    """Answers the queued ``Answer`` for each request; h11 parses what arrives."""

    def __init__(self) -> None:
        self.queue: deque[Answer] = deque()
        self.conns: list[OriginConn] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        oc = OriginConn()
        self.conns.append(oc)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        h = h11.Connection(h11.SERVER)
        answer: Answer | None = None
        try:
            while True:
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError:
                    oc.error = True
                    return
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    h.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    oc.seen.append(Seen(event.target))
                    answer = self.queue.popleft() if self.queue else None
                    if answer is not None and answer.early:
                        writer.write(answer.raw)
                        if answer.close:
                            await writer.drain()
                            return
                elif isinstance(event, h11.Data):
                    oc.seen[-1].body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    oc.seen[-1].complete = True
                    if answer is None:
                        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    elif not answer.early:
                        writer.write(answer.raw)
                    await writer.drain()
                    if answer is not None and answer.close:
                        return
                    h.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                    h.send(h11.EndOfMessage())
                    h.start_next_cycle()
                    answer = None
                else:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


# -- the machine ----------------------------------------------------------------------------


class UpstreamReuse(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.origin = Origin()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self.origin.handle, "127.0.0.1", 0)
        )
        port = self.server.sockets[0].getsockname()[1]
        self.proxy = UpstreamProxy(f"http://127.0.0.1:{port}", read_timeout=0.2)
        self.issued: list[tuple[bytes, bytes]] = []  # (target, body) given to the proxy
        self.n = 0

    @rule(ask=asks, answer=answers())
    def exchange(self, ask: Ask, answer: Answer) -> None:
        self.n += 1
        target = b"/x/%d" % self.n
        body = b"".join(ask.pieces)
        self.issued.append((target, body))
        self.origin.queue.clear()
        self.origin.queue.append(answer)
        sent = self.loop.run_until_complete(self._forward(ask, target))
        pooled = self.proxy.pool.idle_count > 0
        if pooled:
            assert clean_keepalive(ask.method, answer.raw), (
                "a connection was pooled after a response that did not end cleanly",
                answer,
            )
        start = sent[0]
        assert start["type"] == "http.response.start" and 100 <= start["status"] <= 599
        for name, value in start["headers"]:
            # What uvicorn refuses to write (it would raise mid-response).
            assert not HEADER_RE.search(name) and not HEADER_VALUE_RE.search(value), (name, value)
        lengths = [int(v) for n, v in start["headers"] if n == b"content-length"]
        assert len(lengths) <= 1
        bodies = [m for m in sent[1:] if m["type"] == "http.response.body"]
        finished = bool(bodies) and not bodies[-1].get("more_body", False)
        if finished and ask.method != "HEAD" and start["status"] not in (204, 304):
            if lengths:
                assert sum(len(m.get("body", b"")) for m in bodies) == lengths[0]
            else:
                # The ASGI server would frame it as chunked, which an HTTP/1.0 client lacks.
                assert ask.http_version == "1.1", "an HTTP/1.0 client got no Content-Length"

    async def _forward(self, ask: Ask, target: bytes) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        pieces = list(ask.pieces) or [b""]
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if pieces:
                piece = pieces.pop(0)
                return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
            await never.wait()  # the client stays connected until the response is done
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {
            "type": "http", "method": ask.method, "path": target.decode(), "raw_path": target,
            "query_string": b"", "headers": [(b"host", b"fuzz")], "http_version": ask.http_version,
            "scheme": "http", "client": ("127.0.0.1", 50000),
        }  # fmt: skip
        async with asyncio.timeout(10):
            await self.proxy.forward(scope, receive, send)
        # Let the origin parse what is already on its way before the invariants look.
        for _ in range(5):
            await asyncio.sleep(0)
        return sent

    @invariant()
    def origin_parsed_only_requests_of_their_own(self) -> None:
        issued = dict(self.issued)
        for oc in self.origin.conns:
            for i, seen in enumerate(oc.seen):
                assert seen.target in issued, ("the origin parsed a request nobody sent", seen)
                if seen.complete:
                    assert seen.body == issued[seen.target], ("a body absorbed other bytes", seen)
                else:
                    assert i == len(oc.seen) - 1  # only the last one may be cut short
            if oc.error:
                assert oc.seen and not oc.seen[-1].complete, "garbage reached the origin"

    def teardown(self) -> None:
        async def close() -> None:
            await self.proxy.aclose()
            self.server.close()
            for t in list(self.origin.tasks):
                t.cancel()
            await asyncio.sleep(0)
            await self.server.wait_closed()

        self.loop.run_until_complete(close())
        self.loop.close()


UpstreamReuse.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_upstream_reuse_fuzz = UpstreamReuse.TestCase
