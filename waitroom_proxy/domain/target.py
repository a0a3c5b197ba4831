"""One parse of a request's target and Host: what rooms, bypass rules and the origin all see.

The gate's promise (README, "What reaches the origin") only holds if the request the gate
judges is the request the origin serves. Every spelling that two parsers could read
differently is therefore either resolved here, once, into one canonical form that is then
forwarded, or refused with a 400. Pure: no I/O; ``asgi.edge`` calls it once per request and
writes the result into the ASGI scope.

**Host** (RFC 9112 §3.2, RFC 9110 §7.2):

- more than one ``Host`` → refused; none on HTTP/1.1 → refused (HTTP/1.0 may omit it);
  an empty or invalid one → refused. Valid: a DNS-like name (labels of letters, digits, ``-``
  and ``_``, one optional trailing dot), an IPv4 address, or a bracketed IPv6 literal, with an
  optional port (1-65535). No user info, no %-escapes, no spaces.
- an absolute-form target (``GET http://other.test/x HTTP/1.1``, RFC 9112 §3.2.2): its
  authority *is* the host, for matching and for forwarding; the ``Host`` header is still
  required and checked (as nginx does), then ignored. Only ``http`` and ``https``; user info
  is refused.
- ``OPTIONS *`` (asterisk-form) and authority-form targets are refused (nginx does the same).

**Path** (RFC 3986 §2, §5.2.4, §6.2.2):

- dot segments are resolved (``/a/./b/../c`` → ``/a/c``); a ``..`` above the root is refused;
  repeated slashes are merged (``//a`` → ``/a``), a trailing slash is kept.
- %-escapes of unreserved characters are decoded (``%2e`` → ``.``, ``%41`` → ``A``), so
  ``/static/%2e%2e/sale`` is ``/sale``; every other escape is kept, with upper-case hex.
- refused: ``%00`` and every other escaped control character; a ``%`` not followed by two hex
  digits; ``%25`` followed by two hex digits (a double encoding: an origin that decodes twice
  would see another path); an escaped path that is not UTF-8 (overlong forms such as
  ``%c0%ae``); a raw backslash (not a URI character; WHATWG parsers read it as ``/``); a
  fragment (``#``); a segment whose part before ``;`` is ``.`` or ``..`` (``/..;/``: Tomcat,
  Jetty and Spring strip path parameters first, then resolve the dots).
- ``%2F`` and ``%5C`` (an escaped ``/`` or ``\\``) stay escaped in the forwarded target, so
  origins that tell them apart keep working, but the gate judges them as separators, because
  many origins decode them into one (nginx does): ``/sale%2Fx`` belongs to room ``/sale``. A
  segment in which they would produce an empty, ``.`` or ``..`` part is refused
  (``/static%2F..%2Fsale``, ``/%2Fsale``): that is exactly where origins disagree.
- other characters that may not appear raw in a path (``"<>[]^`{|}`` and bytes above 0x7F)
  are %-escaped; the query string is forwarded byte for byte (nothing is judged on it).

The decoded path (``RequestTarget.path``) is what rooms and bypass rules judge and what a host
app sees as ``scope["path"]``; ``RequestTarget.raw_path`` is the same path, canonically
encoded, which is what the origin receives. ``RequestTarget.route_path`` is ``path`` without
``;parameters`` in its segments (what Servlet and Spring origins route on): rooms are matched on
it, and a bypass rule must match both forms.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "BadRequest",
    "RequestTarget",
    "normalize_path",
    "parse_host",
    "parse_target",
    "strip_parameters",
]


class BadRequest(ValueError):
    """The request is ambiguous or malformed: answer 400 with ``str(exc)`` as the reason."""


class RequestTarget(NamedTuple):
    """The one reading of a request that matching, bypass and forwarding share.

    Attributes:
        host: for matching: lower case, no port, no trailing dot; ``""`` with no Host
            (HTTP/1.0).
        authority: the ``Host`` to forward: the one received, or an absolute-form target's
            authority; ``b""`` with none.
        path: the decoded, normalised path (``scope["path"]``).
        raw_path: the same path, canonically %-encoded (what the origin receives).
        query: the query string as received, without ``?``.
        route_path: ``path`` without ``;parameters`` (``path`` itself when it has none).
    """

    host: str
    authority: bytes
    path: str
    raw_path: bytes
    query: bytes
    route_path: str


_HEX = b"0123456789ABCDEFabcdef"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Allowed raw in a path segment besides unreserved (RFC 3986 pchar): sub-delims, ":", "@".
_RAW_OK = _UNRESERVED | frozenset(b"!$&'()*+,;=:@")
# The common case: nothing to decode, resolve or escape (checked with "/." and "//" below).
_PLAIN = re.compile(rb"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_SEPARATORS = frozenset(b"/\\")
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)", re.DOTALL)
_HOST = re.compile(
    rb"(?:(?P<name>(?:[A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+\.?)|\[(?P<v6>[0-9A-Fa-f:.]+)\])"
    rb"(?::(?P<port>[0-9]{1,5}))?"
)


@functools.lru_cache(maxsize=1024)
def parse_host(value: bytes) -> str:
    """The matching form of one ``Host`` value (or an absolute-form authority).

    Memoised (a site has few host names; refusals are not cached).

    ``b"Shop.Example.com:8443"`` → ``"shop.example.com"``; ``b"[::1]:8080"`` → ``"[::1]"``.

    Raises:
        BadRequest: empty, or not a valid host[:port].
    """
    found = _HOST.fullmatch(value)
    if found is None:
        raise BadRequest("invalid Host" if value else "empty Host")
    port = found.group("port")
    if port is not None and not 0 < int(port) <= 65535:
        raise BadRequest("invalid Host port")
    v6 = found.group("v6")
    if v6 is not None:
        try:
            ipaddress.IPv6Address(v6.decode("ascii"))
        except ValueError:
            raise BadRequest("invalid IPv6 Host") from None
        return "[" + v6.decode("ascii").lower() + "]"
    return found.group("name").decode("ascii").lower().rstrip(".")


def _escape(byte: int) -> bytes:
    return b"%%%02X" % byte


def _decode_segment(raw: bytes) -> tuple[bytes, bytes]:
    """(canonical encoded form, decoded bytes) of one segment between literal slashes."""
    if b"%" not in raw and all(c in _RAW_OK for c in raw):
        return raw, raw
    encoded = bytearray()
    decoded = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25:  # "%"
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise BadRequest("bad %-escape in path")
            value = int(pair, 16)
            if value < 0x20 or value == 0x7F:
                raise BadRequest("escaped control character in path")
            if value == 0x25:
                after = raw[i + 3 : i + 5]
                if len(after) == 2 and after[0] in _HEX and after[1] in _HEX:
                    raise BadRequest("double %-encoding in path")
            if value in _UNRESERVED:
                encoded.append(value)
            else:
                encoded += _escape(value)
            decoded.append(value)
            i += 3
            continue
        if c == 0x5C:  # "\"
            raise BadRequest("backslash in path")
        if c == 0x23:  # "#"
            raise BadRequest("fragment in request target")
        if c <= 0x20 or c == 0x7F:
            raise BadRequest("control character in path")
        if c in _RAW_OK:
            encoded.append(c)
        else:
            encoded += _escape(c)
        decoded.append(c)
        i += 1
    return bytes(encoded), bytes(decoded)


def _is_dot(part: bytes) -> bool:
    """``.``/``..`` — also with path parameters (``..;x``), as Servlet containers read it."""
    return part.split(b";", 1)[0] in (b".", b"..")


def normalize_path(raw: bytes) -> tuple[str, bytes]:
    """``(decoded path, canonical encoded path)`` of a raw origin-form path (no query).

    Raises:
        BadRequest: an ambiguous or malformed path (see the module docstring).
    """
    if not raw.startswith(b"/"):
        raise BadRequest("request target must start with /")
    if _PLAIN.fullmatch(raw) and b"//" not in raw and b"/." not in raw:
        return raw.decode("ascii"), raw
    out_encoded: list[bytes] = []
    out_decoded: list[bytes] = []
    segments = raw.split(b"/")[1:]
    last = len(segments) - 1
    trailing = False
    for index, segment in enumerate(segments):
        encoded, decoded = _decode_segment(segment)
        if not decoded:
            trailing = index == last
            continue
        if _is_dot(decoded):
            if decoded.split(b";", 1)[0] != decoded:
                raise BadRequest("dot segment with parameters in path")
            if decoded == b"..":
                if not out_encoded:
                    raise BadRequest("path climbs above the root")
                out_encoded.pop()
                out_decoded.pop()
            trailing = index == last
            continue
        if any(c in _SEPARATORS for c in decoded):
            parts = re.split(rb"[/\\]", decoded)
            if any(not p or _is_dot(p) for p in parts):
                raise BadRequest("escaped slash next to an empty or dot segment in path")
        out_encoded.append(encoded)
        out_decoded.append(decoded)
        trailing = False
    tail = b"/" if trailing and out_encoded else b""
    encoded_path = b"/" + b"/".join(out_encoded) + tail
    decoded_path = b"/" + b"/".join(out_decoded) + tail
    try:
        text = decoded_path.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("path is not UTF-8") from None
    return text, encoded_path


def strip_parameters(path: str) -> str:
    """``path`` without ``;parameters`` in its segments (``/a;v=1/b;x`` → ``/a/b``)."""
    if ";" not in path:
        return path
    return "/".join(segment.split(";", 1)[0] for segment in path.split("/"))


_CACHED_TARGET_BYTES = 512
"""Targets up to this long are memoised (most requests repeat a few paths; bounded memory)."""


def parse_target(target: bytes, hosts: Sequence[bytes], http_version: str = "1.1") -> RequestTarget:
    """Parse a request target and the request's ``Host`` values into one ``RequestTarget``.

    Args:
        target: the request target as on the request line (origin- or absolute-form).
        hosts: every ``Host`` header value, in order.
        http_version: ``"1.0"``, ``"1.1"``, ...; only HTTP/1.0 may omit ``Host``.

    Raises:
        BadRequest: see the module docstring for what is refused.
    """
    if len(hosts) == 1 and len(target) <= _CACHED_TARGET_BYTES and len(hosts[0]) <= 256:
        return _parse_cached(target, hosts[0], http_version)
    return _parse(target, hosts, http_version)


@functools.lru_cache(maxsize=4096)
def _parse_cached(target: bytes, host: bytes, http_version: str) -> RequestTarget:
    """``_parse`` memoised (a pure function; refusals are not cached)."""
    return _parse(target, (host,), http_version)


def _parse(target: bytes, hosts: Sequence[bytes], http_version: str) -> RequestTarget:
    if len(hosts) > 1:
        raise BadRequest("more than one Host")
    if hosts:
        authority = hosts[0].strip(b" \t")
        host = parse_host(authority)
    elif http_version == "1.0":
        authority, host = b"", ""
    else:
        raise BadRequest("missing Host")
    if not target.startswith(b"/"):
        absolute = _ABSOLUTE.fullmatch(target)
        if absolute is None:
            raise BadRequest("request target must be a path or an absolute http(s) URL")
        if absolute.group(1).lower() not in (b"http", b"https"):
            raise BadRequest("request target must be an http or https URL")
        authority = absolute.group(2)
        if b"@" in authority:
            raise BadRequest("user info in request target")
        host = parse_host(authority)
        target = absolute.group(3)
        if not target.startswith(b"/"):
            target = b"/" + target
    path_part, question, query = target.partition(b"?")
    if b"#" in query:
        raise BadRequest("fragment in request target")
    path, raw_path = normalize_path(path_part)
    return RequestTarget(
        host=host,
        authority=authority,
        path=path,
        raw_path=raw_path,
        query=query if question else b"",
        route_path=strip_parameters(path),
    )
