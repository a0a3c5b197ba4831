"""The gate's one promise as a property (DESIGN §4, "What reaches the origin"; issue 11).

Hypothesis writes raw requests — paths with every encoding and dot segment, zero to two Host
headers (odd ones too), absolute-form targets, HTTP/1.0, forged headers and cookies, bodies
with trailers, several requests pipelined in one write — and sends them over a raw socket to
the real proxy (uvicorn with our hardened protocol, both parsers) in front of a strict
recording origin. The ``sale`` room is full; it bypasses ``/static/``, ``*.css``, a secret
header and ``10.0.0.0/8`` (unreachable here: no proxy is trusted). After every example:

- every request the origin received carried exactly one Host and a target in normal form
  (normalising it again changes nothing), and either matches no room, or carries a valid
  ``Waitroom-Verified`` session *for the room its target matches*, or matches a bypass rule
  of that room on that same target;
- the origin could parse everything it was sent (no request it had to refuse);
- no client ever got a 500.

``EXAMPLES`` examples per parser (CI-friendly); the counts are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.gate_rig import SECRET, Gate, run_gate
from waitroom_proxy.domain.target import (
    BadRequest,
    normalize_path,
    parse_host,
    strip_parameters,
)
from waitroom_proxy.domain.tokens import TokenError

EXAMPLES = 250


class LiveGate:
    """``run_gate`` on an event loop of its own thread, so Hypothesis can drive it blocking."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.gate: Gate | None = None
        self.free_token = ""
        self.checked = 0
        self.counts: Counter[str] = Counter()
        self.examples = 0
        self.refused = 0
        self.queued = 0
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        # Nobody is promoted here (the sale room stays full), so the admission controller may
        # sleep: its jittered sleep draws from the global random module, which Hypothesis
        # forbids during a draw (and this loop runs on another thread while Hypothesis draws).
        async with run_gate(self.kind, controller_interval=3600) as g:
            self.gate = g
            # A genuine session, but for the free room: it must not open the sale room.
            now = time.time()
            self.free_token, _ = g.gate.sessions.signer.issue("free", "p" * 22, now=now, ttl=3600,
                                                     max_age=7200)  # fmt: skip
            self._ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None or self.gate is None:
            raise RuntimeError(f"gate did not start: {self._error!r}")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module", params=["httptools", "h11"])
def live(request: pytest.FixtureRequest) -> Iterator[LiveGate]:
    gate = LiveGate(request.param)
    gate.start()
    yield gate
    gate.stop()
    print(f"\nPROPERTY gate ({gate.kind}): examples={gate.examples}, origin requests checked="
          f"{gate.checked} {dict(gate.counts)}, refused with 400={gate.refused}, queued={gate.queued}")  # fmt: skip


# -- request strategies -------------------------------------------------------------------------

# Plausible pieces, repeated so that most requests are valid and reach a decision; the nasty
# ones stay frequent enough to appear in every run.
BENIGN = [b"static", b"buy", b"a.css", b"x", b".", b"..", b"", b"%2e", b"%2e%2e", b".%2e",
          b"%2F", b";x=1", b"%41", b"~", b"|", b"%73tatic", b"%7e", b"%3f", b"@", b":"]  # fmt: skip
NASTY = [
    b"_waitroom", b"%2E", b"%2e.", b"%2f", b"%5c", b"%5C", b"\\", b"%00", b"%0a", b"%zz", b"%",
    b"%2", b"%25", b"%252e", b"..;", b".css", b"%c3%a9", b"\xc3\xa9", b"%ff", b"%c0%ae", b"#",
    b"//", b";",
]  # fmt: skip
PIECES = BENIGN * 10 + NASTY
GOOD_HOSTS = [b"shop.test", b"SHOP.test", b"shop.test:80", b"shop.test.", b"free.test",
              b"Free.Test:8080", b"other.test", b"127.0.0.1"]  # fmt: skip
ODD_HOSTS = [b"", b"free.test/x", b"u@free.test", b"[::1]", b"shop.test:0", b"free.test,a",
             b"shop.test "]  # fmt: skip
HOSTS = GOOD_HOSTS * 4 + ODD_HOSTS
METHODS = [b"GET"] * 6 + [b"POST"] * 3 + [b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"get"]


@st.composite
def paths(draw: Any) -> bytes:
    pieces = draw(st.lists(st.sampled_from(PIECES), max_size=6))
    sep = draw(st.lists(st.sampled_from([b"/", b"/", b""]), min_size=len(pieces),
                        max_size=len(pieces)))  # fmt: skip
    path = b"/" + b"".join(p + s for p, s in zip(pieces, sep, strict=True))
    if draw(st.booleans()):
        path += b"?" + draw(st.sampled_from([b"q=1", b"/../x", b"a=%00", b"", b"x=/static/"]))
    return path


@st.composite
def targets(draw: Any) -> bytes:
    path = draw(paths())
    form = draw(st.sampled_from(["origin"] * 12 + ["absolute"] * 2 + ["asterisk", "authority"]))
    if form == "absolute":
        scheme = draw(st.sampled_from([b"http", b"HTTP", b"https", b"ftp"]))
        return scheme + b"://" + draw(st.sampled_from([*GOOD_HOSTS, b"u@shop.test"])) + path
    if form == "asterisk":
        return b"*"
    if form == "authority":
        return b"shop.test:443"
    return path


@st.composite
def requests(draw: Any, free_token: str, holder: str) -> bytes:
    method = draw(st.sampled_from(METHODS))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0"]))
    lines = [method + b" " + draw(targets()) + b" " + version]
    count = draw(st.sampled_from([1] * 8 + [0, 2]))
    for host in draw(st.lists(st.sampled_from(HOSTS), min_size=count, max_size=count)):
        lines.append(draw(st.sampled_from([b"Host: ", b"host:", b"HOST:  "])) + host)
    forged = [
        b"Waitroom-Bypass: " + SECRET.encode(),
        b"Waitroom-Bypass: wrong-secret-value",
        b"waitroom_bypass: " + SECRET.encode(),
        b"X-Forwarded-For: 10.1.2.3",
        b"X_Forwarded_For: 10.1.2.3",
        b"Waitroom-Verified: " + holder.encode(),
        b"Waitroom_Verified: " + holder.encode(),
        b"Cookie: waitroom_session=" + free_token.encode(),
        b"Cookie: waitroom_session=forged; a=1",
        b"Cookie: waitroom_session=" + holder.encode(),
        b"Expect: 100-continue",
        b"Connection: keep-alive",
        b"Accept: application/json",
    ]
    lines += draw(st.lists(st.sampled_from(forged), max_size=3))
    body = draw(
        st.sampled_from([b"", b"", b"abc", b"GET /buy HTTP/1.1\r\nHost: shop.test\r\n\r\n"])
    )
    framing = draw(st.sampled_from(["none", "length", "chunked", "chunked"] * 2 + ["2-lengths"]))
    if framing == "length" or (framing == "none" and body):
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "2-lengths":
        lines += [b"Content-Length: %d" % len(body)] * 2
        payload = body
    elif framing == "chunked" and version == b"HTTP/1.1":
        lines.append(b"Transfer-Encoding: chunked")
        trailers = draw(st.lists(st.sampled_from([
            b"Host: free.test", b"Waitroom-Bypass: " + SECRET.encode(),
            b"X-Forwarded-For: 10.1.2.3", b"Cookie: waitroom_session=" + holder.encode(),
        ]), max_size=2))  # fmt: skip
        chunk = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
        payload = chunk + b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
    else:
        payload = b""
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def sentinel(n: int) -> bytes:
    return b"GET /static/__end__%d HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n" % n


def exchange(port: int, data: bytes) -> bytes:
    """One write; read until the server closes (the sentinel ends every connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- the promise --------------------------------------------------------------------------------


def violation(
    live: LiveGate, method: bytes, target: bytes, headers: list[Any], sent: bytes
) -> str | None:
    """Why the origin should not have received this request, or None. ``sent`` is what the
    client wrote: the bypass secret header stays with the proxy, so whether a secret was sent
    is read from there (for pipelined requests, any of them; the rules still apply to this
    request's own path and method)."""
    assert live.gate is not None
    gate = live.gate.gate

    def values(name: bytes) -> list[bytes]:
        return [v for n, v in headers if n.lower() == name]

    hosts = values(b"host")
    if len(hosts) != 1:
        return f"origin got {len(hosts)} Host headers"
    raw_path = target.split(b"?", 1)[0]
    try:
        decoded, encoded = normalize_path(raw_path)
        host = parse_host(hosts[0])
    except BadRequest as exc:
        return f"origin got a target or Host the edge refuses: {exc}"
    if encoded != raw_path:
        return f"origin got a target not in normal form ({encoded!r})"
    route = strip_parameters(decoded)
    room = gate.room_for(host, route)
    if room is None:
        live.counts["no room"] += 1
        return None
    verified = values(b"waitroom-verified")
    if len(verified) == 1:
        try:
            gate.sessions.signer.verify(verified[0].decode(), now=time.time(), room=room.name)
            live.counts[f"session ({room.name})"] += 1
            return None
        except TokenError:
            return f"Waitroom-Verified is no session for room {room.name}"
    if verified:
        return "more than one Waitroom-Verified"
    name = room.bypass.secret_header
    if values(name) or values(name.replace(b"-", b"_")):
        return "the bypass secret header reached the origin"
    secret = None
    if room.bypass.secret is not None:
        line = name + b": " + room.bypass.secret + b"\r\n"
        if line.lower() in sent.lower():
            secret = room.bypass.secret
    rules, verb = room.bypass, method.decode()
    if rules.matches(decoded, verb, None, secret) and rules.matches(route, verb, None, secret):
        live.counts["bypass" if b"__end__" not in raw_path else "bypass (end marker)"] += 1
        return None
    return f"reached the origin unqueued in room {room.name}"


def _check(live: LiveGate, data: bytes) -> None:
    assert live.gate is not None
    origin = live.gate.origin
    before = len(origin.requests)
    live.examples += 1
    raw = exchange(live.gate.port, data + sentinel(live.examples))
    assert b"HTTP/1.1 500 " not in raw and b"HTTP/1.0 500 " not in raw, raw[:400]
    live.refused += raw.count(b"HTTP/1.1 400 ")
    live.queued += raw.count(b"set-cookie: waitroom_ticket=")
    assert origin.errors == [], origin.errors
    for seen in origin.requests[before:]:
        live.checked += 1
        why = violation(live, seen.method, seen.target, seen.headers, data)
        assert why is None, (why, seen.method, seen.target, seen.headers, data)


@given(st.data())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_only_admitted_or_bypassed_requests_reach_the_origin(
    live: LiveGate, data: st.DataObject
) -> None:
    assert live.gate is not None
    strategy = requests(live.free_token, live.gate.holder)
    pipeline = data.draw(st.lists(strategy, min_size=1, max_size=3))
    _check(live, b"".join(pipeline))
