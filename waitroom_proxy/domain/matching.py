"""Which room does a request belong to? ("most specific wins").

A room's ``match`` patterns have the form ``host/path-prefix``:

- host: an exact name (``shop.example.com``), a wildcard suffix (``*.example.com``: any
  subdomain at any depth, not the apex ``example.com`` itself), or ``*`` (any host). Hosts are
  compared case-insensitively, without port and without a trailing dot.
- path prefix: matches on segment boundaries. ``/shop`` matches ``/shop``, ``/shop/`` and
  ``/shop/cart`` but not ``/shopping``. A trailing slash is ignored (``/shop/`` is ``/shop``);
  ``/`` matches every path. Paths are case-sensitive, as in HTTP.

Specificity: the host decides first (exact name, then the longest wildcard suffix, then ``*``);
among patterns of the chosen host, the longest path prefix wins. If no pattern of a more
specific host matches the path, less specific hosts are tried.

:meth:`RoomMatcher.match` takes the host and path exactly as ``domain.target`` settled them
for the whole request (host lower case without port; path with dot segments, repeated slashes
and escapes resolved, ``;parameters`` removed): the room is chosen on the same reading of the
request that bypass rules judge and the origin receives. It does not normalise again.

:class:`RoomMatcher` precompiles the patterns once; :meth:`RoomMatcher.match` runs on every
request. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.target import normalize_path, strip_parameters

__all__ = ["Pattern", "RoomMatcher", "find_room", "normalize_host", "parse_pattern"]


@dataclass(frozen=True, slots=True)
class Pattern:
    """One parsed ``host/path-prefix`` pattern.

    Attributes:
        host: ``"*"``, ``"*.example.com"`` or an exact lower-case host name.
        path: The path prefix without a trailing slash (``"/"`` for the root).
    """

    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}{self.path}"


def parse_pattern(pattern: str) -> Pattern:
    """Split and normalise a ``host/path-prefix`` pattern.

    Args:
        pattern: For example ``"*/"``, ``"shop.example.com/checkout/"``, ``"*.example.com/"``.

    Returns:
        The normalised pattern (host lower-cased, trailing slash of the path dropped).

    Raises:
        ValueError: The pattern has no ``/`` or an empty host. Deeper checks (host syntax, no
            port) are done by ``waitroom_proxy.config``.
    """
    slash = pattern.find("/")
    if slash < 0:
        raise ValueError("must be host/path-prefix (no '/' found)")
    host = pattern[:slash].strip().lower().rstrip(".")
    if not host:
        raise ValueError('host part is empty (use "*" for any host)')
    path = pattern[slash:]
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return Pattern(host=host, path=path)


def normalize_host(host: str) -> str:
    """Lower-case a ``Host`` header value and drop its port and trailing dot.

    ``"Shop.Example.com:8443"`` → ``"shop.example.com"``; ``"[::1]:8080"`` → ``"[::1]"``.
    """
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    colon = host.find(":")
    if colon >= 0:
        host = host[:colon]
    return host.rstrip(".")


class _PathTable:
    """Path prefixes of one host pattern, longest first."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[tuple[str, str, RoomPolicy]] = []

    def add(self, prefix: str, room: RoomPolicy) -> None:
        with_slash = prefix if prefix.endswith("/") else prefix + "/"
        self._entries.append((prefix, with_slash, room))
        # Stable sort: for equal prefixes the room listed first keeps priority.
        self._entries.sort(key=lambda entry: len(entry[0]), reverse=True)

    def find(self, path: str) -> RoomPolicy | None:
        for prefix, with_slash, room in self._entries:
            if path == prefix or path.startswith(with_slash):
                return room
        return None


class RoomMatcher:
    """Finds the room of a request; built once from the configured rooms.

    Example:
        >>> matcher = RoomMatcher(rooms)
        >>> matcher.match("shop.example.com:443", "/checkout/pay")
    """

    __slots__ = ("_any", "_catch_all", "_exact", "_rooms", "_wildcards")

    def __init__(self, rooms: Iterable[RoomPolicy]) -> None:
        """Precompile every room's patterns.

        Args:
            rooms: The rooms, in configuration order (it breaks exact ties; validated
                configurations have none).

        Raises:
            ValueError: A pattern is malformed (see :func:`parse_pattern`).
        """
        self._rooms: tuple[RoomPolicy, ...] = tuple(rooms)
        self._exact: dict[str, _PathTable] = {}
        wildcards: dict[str, _PathTable] = {}
        self._any = _PathTable()
        for room in self._rooms:
            for raw in room.match:
                pattern = parse_pattern(raw)
                if pattern.host == "*":
                    table = self._any
                elif pattern.host.startswith("*."):
                    # Stored as ".example.com" so a suffix test excludes the apex domain.
                    table = wildcards.setdefault(pattern.host[1:], _PathTable())
                else:
                    table = self._exact.setdefault(pattern.host, _PathTable())
                table.add(pattern.path, room)
        self._wildcards: tuple[tuple[str, _PathTable], ...] = tuple(
            sorted(wildcards.items(), key=lambda item: len(item[0]), reverse=True)
        )
        # The common one-room set-up ("*/" only): every request matches it, whatever its host
        # or path, so the hot path skips normalising both.
        only = self._rooms[0] if len(self._rooms) == 1 else None
        self._catch_all = (
            only
            if only is not None
            and not self._exact
            and not self._wildcards
            and all(parse_pattern(p).path in ("", "/") for p in only.match)
            and all(parse_pattern(p).host == "*" for p in only.match)
            else None
        )

    @property
    def rooms(self) -> tuple[RoomPolicy, ...]:
        """The rooms this matcher was built from."""
        return self._rooms

    def match(self, host: str, path: str) -> RoomPolicy | None:
        """Return the most specific room for a request, or ``None`` if no room matches.

        Args:
            host: ``RequestTarget.host``: lower case, no port, no trailing dot.
            path: ``RequestTarget.route_path``: normalised, decoded, without query string.
        """
        if self._catch_all is not None:
            return self._catch_all
        table = self._exact.get(host)
        if table is not None:
            room = table.find(path)
            if room is not None:
                return room
        for suffix, table in self._wildcards:
            if host.endswith(suffix):
                room = table.find(path)
                if room is not None:
                    return room
        return self._any.find(path)


def find_room(rooms: Sequence[RoomPolicy], host: str, path: str) -> RoomPolicy | None:
    """Return the most specific room for a raw ``Host`` value and path (one-off convenience).

    Normalises both (``normalize_host``, ``domain.target.normalize_path``) and compiles the
    patterns on every call: on the request path, build a :class:`RoomMatcher` once and call
    :meth:`RoomMatcher.match` with the values of the request's ``RequestTarget``.

    Raises:
        BadRequest: the path is one the edge refuses (``domain.target``).
    """
    decoded, _ = normalize_path(path.encode("utf-8"))
    return RoomMatcher(rooms).match(normalize_host(host), strip_parameters(decoded))
