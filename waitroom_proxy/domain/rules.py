"""Per-request rules: bypass, safe return URLs, limits for the store, poll intervals. Pure."""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from waitroom_proxy.domain.lifecycle import spent_for
from waitroom_proxy.domain.policy import Mode, RoomPolicy
from waitroom_proxy.ports import RoomLimits

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FAR_BACK = 1_000
"""Waiters with this many ahead or more poll less often (``refresh_seconds``)."""


@dataclass(frozen=True, slots=True)
class BypassRules:
    """A room's bypass rules, compiled once."""

    prefixes: tuple[str, ...]
    globs: tuple[str, ...]
    methods: frozenset[str]
    networks: tuple[IPNetwork, ...]
    secret_header: bytes
    secret: bytes | None

    @classmethod
    def compile(cls, policy: RoomPolicy) -> BypassRules:
        b = policy.bypass
        globs = tuple(p for p in b.paths if any(c in p for c in "*?["))
        prefixes = tuple(p for p in b.paths if p not in globs)
        return cls(
            prefixes=prefixes,
            globs=globs,
            methods=frozenset(m.upper() for m in b.methods),
            networks=tuple(ipaddress.ip_network(c, strict=False) for c in b.cidrs),
            secret_header=b.secret_header.lower().encode("latin-1"),
            secret=b.secret.encode() if b.secret else None,
        )

    def matches(
        self,
        path: str,
        method: str,
        client_ip: str | None,
        header_value: bytes | None,
        route_path: str | None = None,
    ) -> bool:
        """True when the request skips the waiting room.

        Args:
            path: the normalised decoded path (``domain.target``: dot segments and escapes
                already resolved, so ``/static/../sale`` arrives here as ``/sale``).
            method: the request method.
            client_ip: the client's address (forwarded headers believed from trusted
                proxies only).
            header_value: the value of the bypass secret header, if sent (once).
            route_path: ``path`` without ``;parameters``. A path rule must match both forms:
                ``/sale;x.css`` matches ``*.css``, but Servlet and Spring origins serve it as
                ``/sale``.
        """
        if (
            (self.prefixes or self.globs)
            and self._path_matches(path)
            and (route_path is None or route_path == path or self._path_matches(route_path))
        ):
            return True
        if method in self.methods:
            return True
        if self.networks and client_ip:
            try:
                addr = ipaddress.ip_address(client_ip)
            except ValueError:
                addr = None
            if addr is not None and any(addr in n for n in self.networks):
                return True
        if self.secret is not None and header_value is not None:
            return hmac.compare_digest(header_value, self.secret)
        return False

    def _path_matches(self, path: str) -> bool:
        if self.prefixes and path.startswith(self.prefixes):
            return True
        return any(fnmatch.fnmatchcase(path, g) for g in self.globs)


_SAFE_PATH = re.compile(r"^/(?![/\\])[^\x00-\x20\x7f\\]*$")


def is_safe_return_to(value: object) -> bool:
    """Whether ``value`` is a same-site path to send a visitor back to (the one rule: the
    redirect after admission, the waiting page's continue link, the "back" buttons).

    Only absolute paths on this site: ``//host``, ``/\\host``, schemes (``https:``,
    ``javascript:``), control characters, whitespace and backslashes are refused (browsers drop
    tabs and newlines from URLs, which would turn ``/\\t/evil.example`` into ``//evil.example``),
    and so is anything over 2,048 characters.
    """
    if not isinstance(value, str) or len(value) > 2048 or not _SAFE_PATH.fullmatch(value):
        return False
    parts = urlsplit(value)
    return not (parts.scheme or parts.netloc)


def safe_return_to(value: str | None, default: str = "/") -> str:
    """``value`` when it is a safe return URL (:func:`is_safe_return_to`), else ``default``."""
    return value if value and is_safe_return_to(value) else default


def limits_for(policy: RoomPolicy, *, paused: bool = False, marker: str = "") -> RoomLimits:
    """What the store needs to know of a room's policy (``marker``: see ``RoomLimits``)."""
    queue_only = paused or policy.mode in (Mode.QUEUE_ALL, Mode.REJECT)
    if policy.session_renewal:
        ttl = policy.session_ttl + policy.session_grace
    else:
        ttl = policy.session_max + policy.session_grace
    return RoomLimits(
        capacity=policy.capacity,
        admit_rate=policy.admit_rate,
        abandon_after_ms=int(policy.abandon_after * 1000),
        claim_timeout_ms=int(policy.claim_timeout * 1000),
        session_ttl_ms=int(ttl * 1000),
        max_queue_length=policy.max_queue_length,
        direct_admit=not queue_only,
        promote=not queue_only,
        count_only=policy.mode is Mode.PASSTHROUGH and not paused,
        spent_for_ms=int(spent_for(policy) * 1000),
        marker=marker,
    )


def refresh_seconds(policy: RoomPolicy, ahead: int) -> float:
    """How long the waiting page waits between heartbeats: twice as long from ``FAR_BACK``.

    Never more than a third of ``abandon_after``, so two missed polls don't lose the place.
    Not longer farther back: far back most polls are answered without the store, and a
    shorter poll lets a store touch come every more polls (``domain.pacing``: fewer touches
    per waiter, the room's store core holds more waiters, for more polls on the replicas).
    """
    factor = 2.0 if ahead >= FAR_BACK else 1.0
    return max(0.2, min(policy.heartbeat_interval * factor, policy.abandon_after / 3))
