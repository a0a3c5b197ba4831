"""Store URLs: which Redis-protocol topology ``store_url`` names, parsed once.

One parse serves both ``check-config`` (every refusal is a precise message) and the adapter
that builds the client, so a URL that validates always builds, and nothing redis-py would
accept silently and fail on later (``?cluster=true`` used to pass and then 500) gets through.

==========================================================  ===================================
form                                                        topology
==========================================================  ===================================
``redis://[user:pass@]host[:6379][/db]``                    one server (Redis, Valkey,
                                                            DragonflyDB)
``rediss://...``                                            the same over TLS
``unix://[user:pass@]/path/redis.sock[?db=N]``              one server on a Unix socket
``redis+cluster://[user:pass@]h1:p1,h2:p2[/0]``             Redis/Valkey Cluster: the nodes
                                                            are where the client starts; it
                                                            discovers the rest
``redis+sentinel://[user:pass@]s1:p1,s2:p2/service[/db]``   Sentinel: the sentinels, then the
                                                            master of ``service``
``rediss+cluster://``, ``rediss+sentinel://``               TLS to the data nodes
==========================================================  ===================================

``valkey`` / ``valkeys`` may stand for ``redis`` / ``rediss`` in every scheme. The user and
password are those of the data nodes; sentinels protected by their own password take
``?sentinel_password=...`` (and ``sentinel_username``). TLS options, only with ``rediss``:
``ssl_cert_reqs`` (``none``, ``optional``, ``required``), ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile`` (file paths) and ``ssl_check_hostname`` (``true``/``false``). Timeouts are not
URL options: ``store_timeout`` applies to every client alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote

from waitroom_proxy.domain.redact import redact_url

__all__ = ["SCHEMES", "StoreTarget", "StoreUrlError", "parse_store_url"]

Topology = Literal["single", "cluster", "sentinel"]

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379

_BASE = {"redis": False, "rediss": True, "valkey": False, "valkeys": True}
SCHEMES: tuple[str, ...] = (
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)
"""The canonical schemes (``valkey`` spellings are accepted and mapped to these)."""

TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
TLS_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
_CERT_REQS = ("none", "optional", "required")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_HINTS = {
    "cluster": "for a Redis Cluster write redis+cluster://host:port,host:port/0",
    "sentinel": "for Sentinel write redis+sentinel://host:port,host:port/SERVICE/0",
    "service_name": "for Sentinel write redis+sentinel://host:port,host:port/SERVICE/0",
    "master_name": "for Sentinel write redis+sentinel://host:port,host:port/SERVICE/0",
    "socket_timeout": "set store_timeout instead (it applies to every store client)",
    "socket_connect_timeout": "set store_timeout instead (it applies to every store client)",
    "password": "put it in the URL's user information: redis://:PASSWORD@host:6379/0",
}
_SERVICE_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
_FORMS = {
    "single": "redis://host:port/DB",
    "cluster": "redis+cluster://host:port,host:port/0",
    "sentinel": "redis+sentinel://host:port,host:port/SERVICE/DB",
}


class StoreUrlError(ValueError):
    """The store URL was refused; the message says why and shows the expected form."""


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """A parsed store URL. Passwords never appear in ``repr``: use ``display()``."""

    topology: Topology
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    """The server (single), the startup nodes (cluster) or the sentinels (sentinel)."""
    path: str | None = None
    """Unix socket path (``unix://``); ``nodes`` is then empty."""
    db: int = 0
    service: str | None = None
    """Sentinel: the monitored master's name."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: tuple[tuple[str, str | bool], ...] = ()
    """``ssl_*`` options, already checked (``ssl_check_hostname`` as a bool)."""

    @property
    def scheme(self) -> str:
        if self.path is not None:
            return "unix"
        base = "rediss" if self.tls else "redis"
        return base if self.topology == "single" else f"{base}+{self.topology}"

    def url(self) -> str:
        """The canonical URL (``valkey`` spelled ``redis``), passwords included."""
        auth = ""
        if self.username is not None or self.password is not None:
            user = quote(self.username or "", safe="")
            pw = "" if self.password is None else ":" + quote(self.password, safe="")
            auth = f"{user}{pw}@"
        query: list[str] = []
        if self.path is not None:
            where = self.path
            if self.db:
                query.append(f"db={self.db}")
        else:
            where = ",".join(_join_host(host, port) for host, port in self.nodes)
            if self.service is not None:
                where += f"/{self.service}"
            where += f"/{self.db}"
        if self.sentinel_username is not None:
            query.append(f"sentinel_username={quote(self.sentinel_username, safe='')}")
        if self.sentinel_password is not None:
            query.append("sentinel_password=" + quote(self.sentinel_password, safe=""))
        for key, value in self.tls_options:
            text = ("true" if value else "false") if isinstance(value, bool) else value
            query.append(f"{key}={quote(text, safe='/')}")
        return f"{self.scheme}://{auth}{where}" + (f"?{'&'.join(query)}" if query else "")

    def display(self) -> str:
        """For logs and reprs: the canonical URL with every password replaced by ``***``."""
        return redact_url(self.url())


def _join_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_scheme(text: str) -> tuple[str, bool, Topology]:
    head, sep, _ = text.partition("://")
    if not sep:
        raise StoreUrlError(_must())
    scheme = head.lower()
    if scheme == "unix":
        return "unix", False, "single"
    base, plus, kind = scheme.partition("+")
    if base not in _BASE or (plus and kind not in ("cluster", "sentinel")):
        raise StoreUrlError(_must())
    topology: Topology = "cluster" if kind == "cluster" else "sentinel" if kind else "single"
    return scheme, _BASE[base], topology


def _must() -> str:
    names = ", ".join(f"{s}://" for s in SCHEMES[:-1])
    return f"must be a {names} or {SCHEMES[-1]}:// URL (valkey may stand for redis)"


def _port(text: str, node: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise StoreUrlError(f'node "{node}": the port must be 1-65535')
    return int(text)


def _node(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise StoreUrlError(f'node "{text}": an IPv6 address needs a closing "]"')
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise StoreUrlError(f'node "{text}": expected ":port" after "]"')
        port = _port(rest[1:], text) if rest else default_port
        if not host or not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise StoreUrlError(f'node "{text}": not an IPv6 address')
        return host, port
    host, colon, port_text = text.rpartition(":")
    if not colon:
        host, port_text = text, ""
    if ":" in host:
        raise StoreUrlError(f'node "{text}": write an IPv6 address in brackets, [::1]:6379')
    if not host or not _HOST_RE.fullmatch(host):
        raise StoreUrlError(f'node "{text}": not a host name or address')
    return host, _port(port_text, text) if colon else default_port


def _db(text: str, form: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise StoreUrlError(f'the database must be a number like 0, got "{text}" ({form})')
    return int(text)


def _options(query: str, tls: bool, topology: Topology) -> dict[str, str]:
    allowed = list(TLS_OPTIONS if tls else ())
    if topology == "sentinel":
        allowed += SENTINEL_OPTIONS
    values: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in values:
            raise StoreUrlError(f'option "{key}" is given twice')
        if key not in allowed:
            if key in TLS_OPTIONS:
                hint = "TLS options need rediss:// (or rediss+cluster://, rediss+sentinel://)"
            elif key in SENTINEL_OPTIONS:
                hint = "sentinel options need redis+sentinel://"
            else:
                known = ", ".join(allowed) if allowed else "none for this scheme"
                hint = _HINTS.get(key.lower(), f"known options: {known}")
            raise StoreUrlError(f'unknown option "{key}": {hint}')
        values[key] = value
    return values


def _tls_options(values: dict[str, str]) -> tuple[tuple[str, str | bool], ...]:
    out: list[tuple[str, str | bool]] = []
    for key in TLS_OPTIONS:
        if key not in values:
            continue
        value = values[key]
        if key == "ssl_cert_reqs":
            if value.lower() not in _CERT_REQS:
                raise StoreUrlError(
                    f'ssl_cert_reqs must be none, optional or required, got "{value}"'
                )
            out.append((key, value.lower()))
        elif key == "ssl_check_hostname":
            if value.lower() not in _BOOLEANS:
                raise StoreUrlError(f'ssl_check_hostname must be true or false, got "{value}"')
            out.append((key, _BOOLEANS[value.lower()]))
        else:
            if not value:
                raise StoreUrlError(f"{key} must be a file path")
            out.append((key, value))
    return tuple(out)


def parse_store_url(text: str) -> StoreTarget:
    """Parse and check a store URL (see the module docstring for the forms).

    Raises:
        StoreUrlError: why the URL is refused, with the expected form; never shows a password.
    """
    text = text.strip()
    scheme, tls, topology = _split_scheme(text)
    rest = text.split("://", 1)[1]
    rest, _, fragment = rest.partition("#")
    if fragment:
        raise StoreUrlError("must not have a #fragment")
    rest, _, query = rest.partition("?")
    userinfo, at, location = rest.rpartition("@")
    if not at:
        userinfo, location = "", rest
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
        if not password:
            raise StoreUrlError(
                "user information without a password: write redis://:PASSWORD@host "
                "(password only) or redis://USER:PASSWORD@host"
            )
    if scheme == "unix":
        return _unix(location, query, username, password)
    options = _options(query, tls, topology)
    form = _FORMS[topology]
    hosts, _, path = location.partition("/")
    if not hosts:
        raise StoreUrlError(f"must name a host: {form}")
    default = DEFAULT_SENTINEL_PORT if topology == "sentinel" else DEFAULT_PORT
    nodes = tuple(_node(part.strip(), default) for part in hosts.split(","))
    if topology == "single" and len(nodes) > 1:
        raise StoreUrlError(
            "lists several hosts: use redis+cluster://host:port,host:port/0 for a Redis "
            "Cluster or redis+sentinel://host:port,host:port/SERVICE/0 for Sentinel"
        )
    if len(set(nodes)) != len(nodes):
        raise StoreUrlError("lists the same node twice")
    segments = [s for s in path.split("/")] if path else []
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    service: str | None = None
    if topology == "sentinel":
        if not segments or not segments[0]:
            raise StoreUrlError(f"must name the master's service after the sentinels: {form}")
        service = unquote(segments.pop(0))
        if not _SERVICE_RE.fullmatch(service):
            raise StoreUrlError(f'service "{service}": use letters, digits, ".", "_" and "-"')
    if len(segments) > 1:
        raise StoreUrlError(f"has too many path segments: {form}")
    db = _db(segments[0], form) if segments else 0
    if topology == "cluster" and db != 0:
        raise StoreUrlError(f"a Redis Cluster has only database 0, got /{db}: {form}")
    return StoreTarget(
        topology=topology,
        tls=tls,
        nodes=nodes,
        db=db,
        service=service,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        tls_options=_tls_options(options),
    )


def _unix(location: str, query: str, username: str | None, password: str | None) -> StoreTarget:
    if not location.startswith("/") or location == "/":
        raise StoreUrlError("must name a socket path: unix:///run/redis.sock")
    db = 0
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "db":
            raise StoreUrlError(f'unknown option "{key}": unix:// takes only ?db=N')
        db = _db(value, "unix:///run/redis.sock?db=0")
    return StoreTarget(
        topology="single",
        tls=False,
        nodes=(),
        path=unquote(location),
        db=db,
        username=username,
        password=password,
    )
