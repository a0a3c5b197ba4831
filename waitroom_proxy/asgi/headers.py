"""Header rules of the reverse proxy, as pure functions (no I/O).

- Hop-by-hop headers (RFC 9110 §7.6.1, plus the obsolete ``Keep-Alive`` and ``Proxy-Connection``,
  plus every name listed in ``Connection``) never cross the proxy, in either direction.
- Header lists stay lists of ``(name, value)`` byte pairs, never dicts, so repeated headers such
  as ``Set-Cookie`` survive.
- ``X-Forwarded-For/-Proto/-Host`` are *appended to* (for) or *kept* (proto, host) only when the
  peer is a trusted proxy; otherwise the client's values are dropped and replaced.
- No ``Via`` is added (a client's own passes unchanged), as nginx ``proxy_pass`` does: an
  nginx origin with the default ``gzip_proxied off`` stops compressing any request carrying
  ``Via`` (6.7x more bytes on a docs page), and nothing in the room relies on it.

Header names are expected lowercased, as ASGI servers deliver them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Sequence

Header = tuple[bytes, bytes]

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

# Request headers the proxy rewrites itself. One dict lookup per header classifies it.
_DROP, _CONNECTION, _HOST, _XFF, _XFP, _XFH, _COOKIE = range(7)
_REQUEST_KINDS: dict[bytes, int] = dict.fromkeys(HOP_BY_HOP, _DROP)
_REQUEST_KINDS.update(
    {
        b"connection": _CONNECTION,
        b"host": _HOST,
        b"x-forwarded-for": _XFF,
        b"x-forwarded-proto": _XFP,
        b"x-forwarded-host": _XFH,
        b"cookie": _COOKIE,
        # The proxy always sends the body at once; an origin's interim 100 would only be skipped.
        b"expect": _DROP,
    }
)


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The header names listed in one ``Connection`` header value, lowercased."""
    return frozenset(t for t in (p.strip().lower() for p in value.split(b",")) if t)


def filter_hop_by_hop(headers: Iterable[Header]) -> list[Header]:
    """Drop hop-by-hop headers and those named in ``Connection``; keep order and repeats."""
    out: list[Header] = []
    named: set[bytes] | None = None
    for name, value in headers:
        if name in HOP_BY_HOP:
            if name == b"connection":
                named = (named or set()) | connection_tokens(value)
            continue
        out.append((name, value))
    if named:
        out = [h for h in out if h[0] not in named]
    return out


def strip_cookie_names(values: Sequence[bytes], names: Collection[str]) -> bytes | None:
    """Join ``Cookie`` header values into one, without the cookies called ``names``.

    Returns None when no cookie is left (the caller then drops the header).
    """
    kept: list[bytes] = []
    encoded = {n.encode("latin-1") for n in names}
    for value in values:
        for part in value.split(b";"):
            pair = part.strip()
            if not pair:
                continue
            if pair.split(b"=", 1)[0].strip() in encoded:
                continue
            kept.append(pair)
    return b"; ".join(kept) if kept else None


class TrustedProxies:
    """A set of CIDRs; ``addr in trusted`` says whether a peer address is a trusted proxy.

    Decisions are cached per address (bounded), so the check costs one dict lookup.
    """

    __slots__ = ("_cache", "_networks")

    _CACHE_MAX = 4096

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, addr: object) -> bool:
        if not self._networks or not isinstance(addr, str):
            return False
        hit = self._cache.get(addr)
        if hit is not None:
            return hit
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        ok = any(ip.version == n.version and ip in n for n in self._networks)
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        self._cache[addr] = ok
        return ok

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self._networks]!r})"


def upstream_request_headers(
    headers: Iterable[Header],
    *,
    peer: str | None,
    scheme: str,
    trusted: bool,
    default_host: bytes,
    add_headers: Sequence[Header] = (),
    strip_cookies: Collection[str] = (),
    strip_headers: Collection[bytes] = (),
    stripped_cookie: bytes | None = None,
) -> tuple[bytes, list[Header]]:
    """Headers to send upstream for one client request.

    Args:
        headers: the client's request headers (ASGI: lowercased names).
        peer: the client's address (the TCP peer), if known.
        scheme: ``http`` or ``https`` as the client used (``ws``/``wss`` map to these).
        trusted: the peer is a trusted proxy: its ``X-Forwarded-*`` values are kept/extended.
        default_host: Host to send when the client sent none (HTTP/1.0).
        add_headers: headers added by the proxy; client headers of the same names are removed.
        strip_cookies: cookie names removed from the ``Cookie`` header(s).
        strip_headers: header names (lower case) removed: the proxy's own, such as the bypass
            secret header, which the origin has no use for.
        stripped_cookie: the caller's own parse of the same headers, when it made one: what
            ``strip_cookie_names`` returns for them (``b""`` for None), used instead of
            parsing the cookies again.

    Returns:
        ``(host, headers)``: the Host value to send, and every other header (Host excluded).
    """
    skip: Collection[bytes] = strip_headers
    for added, _ in add_headers:
        if added.lower() not in skip:  # (the gate passes a skip set that has them already)
            skip = {n.lower() for n, _ in add_headers}.union(strip_headers)
            break
    out: list[Header] = []
    named: frozenset[bytes] | None = None
    host: bytes | None = None
    xff: list[bytes] = []
    xfp: bytes | None = None
    xfh: bytes | None = None
    cookies: list[bytes] = []
    kinds = _REQUEST_KINDS
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            if skip and name in skip:
                continue
            out.append((name, value))
        elif kind == _HOST:
            if host is None:
                host = value
        elif kind == _COOKIE:
            cookies.append(value)
        elif kind == _CONNECTION:
            named = connection_tokens(value) if named is None else named | connection_tokens(value)
        elif kind == _XFF:
            xff.append(value)
        elif kind == _XFP:
            xfp = xfp or value
        elif kind == _XFH:
            xfh = xfh or value
        # _DROP: hop-by-hop

    if named:
        out = [h for h in out if h[0] not in named]
        if b"cookie" in named:
            cookies = []
        if b"x-forwarded-for" in named:
            xff = []
        if b"x-forwarded-proto" in named:
            xfp = None
        if b"x-forwarded-host" in named:
            xfh = None

    if cookies:
        if stripped_cookie is not None:
            cookie = stripped_cookie or None
        elif strip_cookies:
            cookie = strip_cookie_names(cookies, strip_cookies)
        else:
            cookie = cookies[0] if len(cookies) == 1 else b"; ".join(cookies)
        if cookie is not None:
            out.append((b"cookie", cookie))

    client_host = host if host is not None else default_host
    if not trusted:
        xff, xfp, xfh = [], None, None
    if peer:
        xff.append(peer.encode("latin-1"))
    if xff:
        out.append((b"x-forwarded-for", b", ".join(xff)))
    out.append((b"x-forwarded-proto", xfp or _PROTO.get(scheme, b"http")))
    out.append((b"x-forwarded-host", xfh or client_host))
    for added, value in add_headers:
        out.append((added.lower(), value))
    return client_host, out


_PROTO = {"http": b"http", "https": b"https", "ws": b"http", "wss": b"https"}
