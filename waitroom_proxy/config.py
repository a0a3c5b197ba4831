"""Process settings: TOML file + ``WAITROOM_*`` environment + CLI flags (DESIGN §3).

Precedence, highest first: CLI flags, environment, the TOML file, defaults.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import ssl
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from waitroom_proxy.domain.matching import parse_pattern
from waitroom_proxy.domain.policy import ROOM_NAME_RE, Bypass, FailMode, Mode, RoomPolicy
from waitroom_proxy.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything one process needs. Secrets never appear in ``repr``."""

    rooms: tuple[RoomPolicy, ...]
    upstream: str | None = None
    """Origin base URL (``http://127.0.0.1:8000``); required by ``serve``, unused by the
    middleware. Env ``WAITROOM_UPSTREAM``; TOML ``[server] upstream``."""
    store_url: str | None = None
    """``redis://``/``rediss://``/``unix://`` URL of the Redis-protocol store; None = in-process
    store (single replica only). Env ``WAITROOM_STORE_URL``."""
    nats_url: str | None = None
    """NATS URL for events; None = events to the debug log. Env ``WAITROOM_NATS_URL``."""
    secret: str | None = field(default=None, repr=False)
    """Shared secret: signs tickets, and session JWTs with HS256. None = a random secret per
    process (fine for one process; replicas must share one). Env ``WAITROOM_SECRET``."""
    previous_secrets: tuple[str, ...] = field(default=(), repr=False)
    """Older secrets still accepted for verification (key rotation).
    Env ``WAITROOM_PREVIOUS_SECRETS`` (comma-separated)."""
    signing_key_file: str | None = None
    """PEM private key (Ed25519 or P-256) → session JWTs signed with EdDSA/ES256 and published
    at ``/_waitroom/jwks.json``. Env ``WAITROOM_SIGNING_KEY_FILE``."""
    admin_token: str | None = field(default=None, repr=False)
    """Bearer token of the admin listener; None = admin API disabled.
    Env ``WAITROOM_ADMIN_TOKEN``."""
    prefix: str = "/_waitroom"
    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    workers: int = 1
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs whose ``X-Forwarded-*`` headers are believed."""
    upstream_ca_file: str | None = None
    """PEM file of the CA certificates that an ``https://`` upstream's certificate must chain
    to (an internal CA), instead of the system's trust store. Env
    ``WAITROOM_UPSTREAM_CA_FILE``."""
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 60.0
    store_timeout: float = 0.5
    """Connect and read timeout of every store call, seconds."""
    issuer: str = "waitroom-proxy"
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    max_body_bytes: int | None = None
    """Request bodies larger than this are refused with 413 (None = no limit)."""
    max_header_bytes: int = 65_536
    """Request heads (request line + headers) larger than this get 431 and a close."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request head (from connecting, or from the request's
    first byte on a kept-alive connection); past it, 408 and a close (slowloris)."""
    body_timeout: float = 60.0
    """Seconds a client may stay silent while sending a request body (between two reads, as
    nginx's ``client_body_timeout``); past it, 408 and a close, or a cut connection once the
    response has started. Slow uploads would otherwise pin upstream connections and origin
    workers."""
    client_rate_limit: int = 600
    """Enqueue and heartbeat requests allowed per client IP per minute (sliding window in the
    store; 0 = no limit). Generous by default: many visitors can share one NAT address."""


# --------------------------------------------------------------------------------------------
# Loading: TOML file + environment + flags → Settings, every problem collected.
# --------------------------------------------------------------------------------------------

ENV_PREFIX = "WAITROOM_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
"""Python logging levels (uvicorn's extra "trace" has no ``logging`` level of its own)."""
PAGE_STATUSES = (200, 202, 429, 503)
QUICK_START_ROOM = "default"
MIN_SECRET_BYTES = 32
"""HS256 wants a 256-bit key (PyJWT warns below 32 bytes)."""
MIN_TOKEN_CHARS = 16
"""Admin token and bypass secret: long enough not to be guessed."""


class _Invalid(Exception):
    """A value was refused. ``items`` holds ``(key path suffix, message)`` pairs."""

    def __init__(self, message: str = "", items: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.items = items if items is not None else [("", message)]


Converter = Callable[[Any, Path], Any]
"""Checks one value (already typed: TOML value, or parsed env/flag text) and returns it in the
form ``Settings``/``RoomPolicy`` want. The path is the base directory of relative file paths."""


def _show(value: Any) -> str:
    """Render a refused value for a message, TOML-style and short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return text if len(text) <= 80 else "an array"
    return str(value)


def _kind(value: Any) -> str:
    """Name the type of a value without showing it (for secrets)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


MAX_SECONDS = 31_536_000
"""Upper bound of every duration: larger values overflow millisecond arithmetic downstream."""
MAX_INTEGER = 1_000_000_000
"""Upper bound of every count (capacity, rates, lengths)."""


def _integer(lo: int | None = None, hi: int | None = None) -> Converter:
    if lo is not None and hi is not None:
        desc = f"an integer {lo}-{hi}"
    elif lo is not None:
        desc = f"an integer >= {lo}"
    else:
        desc = "an integer"

    def convert(value: Any, base: Path) -> int:
        # bool is a subclass of int: `capacity = true` must not mean 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be {desc}, got {_show(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if hi is None and lo is not None:
                raise _Invalid(f"must be >= {lo}, got {value}")
            raise _Invalid(f"must be {desc}, got {value}")
        if hi is None and value > MAX_INTEGER:
            raise _Invalid(f"must be <= {MAX_INTEGER}, got {value}")
        return value

    return convert


def _seconds(value: Any, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid(f"must be a number of seconds > 0, got {_show(value)}")
    if value <= 0:
        raise _Invalid(f"must be > 0, got {_show(value)}")
    if value > MAX_SECONDS:
        raise _Invalid(f"must be <= {MAX_SECONDS} (one year), got {_show(value)}")
    return float(value)


def _boolean(value: Any, base: Path) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_show(value)}")
    return value


def _choice(options: Sequence[str]) -> Converter:
    def convert(value: Any, base: Path) -> str:
        if isinstance(value, str) and value.strip().lower() in options:
            return value.strip().lower()
        raise _Invalid(f"must be one of {', '.join(options)}, got {_show(value)}")

    return convert


def _page_status(value: Any, base: Path) -> int:
    if isinstance(value, bool) or value not in PAGE_STATUSES:
        raise _Invalid(f"must be one of {', '.join(map(str, PAGE_STATUSES))}, got {_show(value)}")
    return int(value)


def _string(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"must be a non-empty string, got {_show(value)}")
    return value.strip()


def _secret(min_chars: int, unit: str) -> Converter:
    def convert(value: Any, base: Path) -> str:
        # Never echo a secret, even a rejected one.
        if not isinstance(value, str):
            raise _Invalid(f"must be a string, got {_kind(value)}")
        size = len(value.encode()) if unit == "bytes" else len(value)
        if size < min_chars:
            raise _Invalid(
                f"must be at least {min_chars} {unit} long, got {size} "
                '(generate one: python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        return value

    return convert


def _list(item: Converter) -> Converter:
    """An array whose items are each checked; every bad item is reported."""

    def convert(value: Any, base: Path) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _Invalid(f"must be an array, got {_show(value)}")
        out: list[Any] = []
        problems: list[tuple[str, str]] = []
        for index, element in enumerate(value):
            try:
                out.append(item(element, base))
            except _Invalid as exc:
                problems.extend((f"[{index}]{suffix}", msg) for suffix, msg in exc.items)
        if problems:
            raise _Invalid(items=problems)
        return tuple(out)

    return convert


def _url(schemes: Sequence[str], need_host: bool = True) -> Converter:
    names = ", ".join(f"{scheme}://" for scheme in schemes[:-1])
    names = f"{names} or {schemes[-1]}://" if names else f"{schemes[-1]}://"
    desc = f"must be a {names} URL" + (" with a host" if need_host else "")

    def convert(value: Any, base: Path) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"{desc}, got {_show(value)}")
        text = value.strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise _Invalid(f"{desc} and a valid port, got {_show(mask_url(text))}") from None
        scheme = parts.scheme.lower()
        if scheme not in schemes:
            raise _Invalid(f"{desc}, got {_show(mask_url(text))}")
        if scheme == "unix":
            if not parts.path:
                raise _Invalid(f'must name a socket path (unix:///run/redis.sock), got "{text}"')
        elif need_host and not parts.hostname:
            raise _Invalid(f"{desc}, got {_show(mask_url(text))}")
        return text

    return convert


def mask_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host`` (store URLs may carry one).

    Args:
        url: Any URL.

    Returns:
        The URL with its password replaced by ``***``; unchanged if it has none.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


_check_upstream = _url(("http", "https"))
_check_nats = _url(("nats", "tls"))
_check_store_scheme = _url(("redis", "rediss", "unix", "valkey", "valkeys"))


def _store_url(value: Any, base: Path) -> str:
    text: str = _check_store_scheme(value, base)
    # redis-py only knows redis://, rediss:// and unix://; Valkey speaks the same protocol.
    scheme, rest = text.split(":", 1)
    return {"valkey": "redis", "valkeys": "rediss"}.get(scheme.lower(), scheme) + ":" + rest


def _upstream(value: Any, base: Path) -> str:
    text: str = _check_upstream(value, base)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise _Invalid(f"must not have a query or fragment, got {_show(text)}")
    return text


def _cidr(value: Any, base: Path) -> str:
    desc = "must be an IP network like 10.0.0.0/8, 192.0.2.7 or ::1/128"
    if not isinstance(value, str):
        raise _Invalid(f"{desc}, got {_show(value)}")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as exc:
        reason = " (host bits set)" if "host bits set" in str(exc) else ""
        raise _Invalid(f"{desc}, got {_show(value)}{reason}") from None


def _existing_file(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"must be a file path, got {_show(value)}")
    path = Path(value.strip()).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise _Invalid(f"no such file {_show(value)} (looked for {path})")
    return str(path.resolve())


def _ca_file(value: Any, base: Path) -> str:
    """A PEM file of CA certificates that an SSL context can load (checked here, so a wrong
    file fails at start-up and not as a 502 on every request)."""
    path = _existing_file(value, base)
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise _Invalid(f"not a PEM file of CA certificates {_show(value)} ({reason})") from None
    return path


_PREFIX_RE = re.compile(r"^/[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*$")


def _prefix(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not _PREFIX_RE.match(value.strip()):
        raise _Invalid(
            f'must be a path like "/_waitroom" (leading slash, no trailing slash), '
            f"got {_show(value)}"
        )
    return value.strip()


_HOST_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _is_hostname(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return len(host) <= 253 and all(_HOST_LABEL_RE.match(label) for label in labels)


def _bind_host(value: Any, base: Path) -> str:
    """A listen address, in the form ``socket.bind`` takes: ``[::1]`` (the URL spelling of an
    IPv6 address) becomes ``::1``, so what passes here also binds."""
    desc = 'must be a host name or IP address to listen on (e.g. "0.0.0.0" or "::")'
    if not isinstance(value, str):
        raise _Invalid(f"{desc}, got {_show(value)}")
    text = value.strip()
    if text.startswith("[") or text.endswith("]"):
        inner = text.removeprefix("[").removesuffix("]")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise _Invalid(
                f"{desc}: brackets only enclose an IPv6 address, got {_show(value)}"
            ) from None
        if not (text.startswith("[") and text.endswith("]")):
            raise _Invalid(f"{desc}: unbalanced brackets, got {_show(value)}")
        return inner
    if not _is_hostname(text.lower()):
        raise _Invalid(f"{desc}, got {_show(value)}")
    return text


def _origin(value: Any, base: Path) -> str:
    if value == "*":
        return "*"
    desc = 'must be "*" or an origin like "https://shop.example.com"'
    if not isinstance(value, str):
        raise _Invalid(f"{desc}, got {_show(value)}")
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _Invalid(f"{desc}, got {_show(value)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise _Invalid(f"{desc} (scheme and host, no path), got {_show(value)}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def _room_name(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not ROOM_NAME_RE.match(value):
        raise _Invalid(
            f"must be 1-64 characters of a-z, 0-9, _ and - (lower case), got {_show(value)}"
        )
    return value


def _match_pattern(value: Any, base: Path) -> str:
    desc = 'must be a "host/path-prefix" pattern like "*/", "shop.example.com/sale"'
    if not isinstance(value, str):
        raise _Invalid(f"{desc}, got {_show(value)}")
    try:
        pattern = parse_pattern(value.strip())
    except ValueError as exc:
        raise _Invalid(f"{desc}: {exc}, got {_show(value)}") from None
    host = pattern.host
    if ":" in host and not host.startswith("["):
        raise _Invalid(
            f"host must not include a port (hosts match without port), got {_show(value)}"
        )
    name = host[2:] if host.startswith("*.") else host
    if host != "*" and not _is_hostname(name):
        raise _Invalid(f'host must be "*", "*.example.com" or a host name, got {_show(value)}')
    if any(char in pattern.path for char in "?#*"):
        raise _Invalid(f"path must be a plain prefix (no ?, # or *), got {_show(value)}")
    return str(pattern)


def _match_list(value: Any, base: Path) -> tuple[str, ...]:
    if isinstance(value, str):  # a single pattern is a list of one
        value = [value]
    patterns: tuple[str, ...] = _list(_match_pattern)(value, base)
    if not patterns:
        raise _Invalid('must list at least one pattern (use ["*/"] for every request)')
    return patterns


def _bypass_path(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(
            f'must be a path prefix ("/static/") or a glob ("*.css"), got {_show(value)}'
        )
    text = value.strip()
    if not text.startswith(("/", "*")):
        raise _Invalid(f'must start with "/" or "*", got {_show(value)} (did you mean "/{text}"?)')
    return text


_METHOD_RE = re.compile(r"^[A-Za-z]{1,20}$")
_HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _method(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not _METHOD_RE.match(value.strip()):
        raise _Invalid(f'must be an HTTP method like "OPTIONS", got {_show(value)}')
    return value.strip().upper()


# Headers the proxy reads or sets itself: a bypass secret in one of them would be rewritten,
# or (the secret header never reaches the origin) would take the origin's header away.
_RESERVED_HEADERS = frozenset(
    {
        "host", "cookie", "authorization", "content-length", "transfer-encoding", "connection",
        "keep-alive", "te", "trailer", "upgrade", "proxy-connection", "expect", "accept",
        "waitroom-verified", "forwarded", "x-real-ip",
    }
)  # fmt: skip


def _header_name(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not _HEADER_RE.match(value.strip()):
        raise _Invalid(f'must be an HTTP header name like "waitroom-bypass", got {_show(value)}')
    name = value.strip().lower()
    dashed = name.replace("_", "-")
    if dashed in _RESERVED_HEADERS or dashed.startswith("x-forwarded-"):
        raise _Invalid(
            'must be a header of its own, like "waitroom-bypass" (it never reaches the origin), '
            f"got {_show(value)}, which the proxy or the origin needs"
        )
    return name


def _enum(options: type[StrEnum]) -> Converter:
    check = _choice([member.value for member in options])

    def convert(value: Any, base: Path) -> StrEnum:
        return options(check(value, base))

    return convert


# Each [server] key: (how env/flag text is parsed, converter). Env var: WAITROOM_<KEY>.
_SERVER_KEYS: dict[str, tuple[str, Converter]] = {
    "upstream": ("str", _upstream),
    "store_url": ("str", _store_url),
    "nats_url": ("str", _check_nats),
    "secret": ("str", _secret(MIN_SECRET_BYTES, "bytes")),
    "previous_secrets": ("list", _list(_secret(MIN_SECRET_BYTES, "bytes"))),
    "signing_key_file": ("str", _existing_file),
    "admin_token": ("str", _secret(MIN_TOKEN_CHARS, "characters")),
    "prefix": ("str", _prefix),
    "host": ("str", _bind_host),
    "port": ("int", _integer(1, 65535)),
    "admin_host": ("str", _bind_host),
    "admin_port": ("int", _integer(1, 65535)),
    "workers": ("int", _integer(1)),
    "trusted_proxies": ("list", _list(_cidr)),
    "upstream_ca_file": ("str", _ca_file),
    "upstream_connect_timeout": ("float", _seconds),
    "upstream_read_timeout": ("float", _seconds),
    "store_timeout": ("float", _seconds),
    "issuer": ("str", _string),
    "cors_origins": ("list", _list(_origin)),
    "log_level": ("str", _choice(LOG_LEVELS)),
    "max_body_bytes": ("int", _integer(1)),
    "max_header_bytes": ("int", _integer(1024)),
    "header_timeout": ("float", _seconds),
    "body_timeout": ("float", _seconds),
    "client_rate_limit": ("int", _integer(0)),
}

_BYPASS_KEYS: dict[str, Converter] = {
    "paths": _list(_bypass_path),
    "methods": _list(_method),
    "cidrs": _list(_cidr),
    "secret_header": _header_name,
    "secret": _secret(MIN_TOKEN_CHARS, "characters"),
}

_ROOM_KEYS: dict[str, Converter] = {
    "name": _room_name,
    "capacity": _integer(1),
    "match": _match_list,
    "admit_rate": _integer(0),
    "session_ttl": _seconds,
    "session_renewal": _boolean,
    "session_max": _seconds,
    "heartbeat_interval": _seconds,
    "abandon_after": _seconds,
    "claim_timeout": _seconds,
    "mode": _enum(Mode),
    "fail_mode": _enum(FailMode),
    "page_status": _page_status,
    "template": _existing_file,
    "max_queue_length": _integer(1),
    "activity_interval": _seconds,
}

_QUICK_START_KEYS: dict[str, tuple[str, Converter]] = {
    "capacity": ("int", _integer(1)),
    "admit_rate": ("int", _integer(0)),
}

_PLANNED_ROOM_KEYS = {"schedule": "not supported yet (planned, DESIGN §3)"}

ENV_VARS: dict[str, str] = {
    **{f"{ENV_PREFIX}{key.upper()}": key for key in _SERVER_KEYS},
    f"{ENV_PREFIX}CONFIG": "config",
    f"{ENV_PREFIX}CAPACITY": "capacity",
    f"{ENV_PREFIX}ADMIT_RATE": "admit_rate",
}
"""Every environment variable ``load_settings`` reads → the key it sets."""

SERVER_KEYS: tuple[str, ...] = tuple(_SERVER_KEYS)
"""Keys of the TOML ``[server]`` table (= the ``Settings`` fields except ``rooms``)."""
ROOM_KEYS: tuple[str, ...] = (*_ROOM_KEYS, "bypass")
"""Keys of a TOML ``[[rooms]]`` table (= the ``RoomPolicy`` fields)."""
BYPASS_KEYS: tuple[str, ...] = tuple(_BYPASS_KEYS)
"""Keys of a room's ``bypass`` sub-table (= the ``Bypass`` fields)."""


def _unknown_key(path: str, key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"{path}: unknown key{hint}"


def _parse_text(kind: str, text: str) -> Any:
    """Turn env/flag text into a typed value; unparsable text is returned for the converter to
    refuse with its usual message (which shows the text)."""
    text = text.strip()
    if kind == "int":
        try:
            return int(text, 10)
        except ValueError:
            return text
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


class _Problems:
    """Collects ``key.path: message`` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.refused: set[str] = set()
        """Keys some source gave a refused value for (so "missing" is not reported too)."""

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")

    def convert(self, path: str, converter: Converter, value: Any, base: Path) -> Any:
        """Run a converter; on refusal record its problems and return ``_MISSING``."""
        try:
            return converter(value, base)
        except _Invalid as exc:
            for suffix, message in exc.items:
                self.add(f"{path}{suffix}", message)
            return _MISSING


_MISSING: Any = object()


def _read_toml(path: Path, shown: str, problems: _Problems) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.lines.append(f"{shown}: no such file")
        return None
    except IsADirectoryError:
        problems.lines.append(f"{shown}: is a directory, not a TOML file")
        return None
    except OSError as exc:
        problems.lines.append(f"{shown}: cannot read: {exc.strerror or exc}")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.lines.append(f"{shown}: not UTF-8 text (byte {exc.start})")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.lines.append(f"{shown}: {_toml_error(str(exc), text)}")
        return None


_TOML_AT_RE = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _toml_error(message: str, text: str) -> str:
    found = _TOML_AT_RE.match(message)
    if found:
        return (
            f"invalid TOML at line {found['line']}, column {found['col']}: "
            f"{found['msg'][:1].lower()}{found['msg'][1:]}"
        )
    if message.endswith("(at end of document)"):
        lines = text.splitlines() or [""]
        msg = message.removesuffix("(at end of document)").strip()
        return (
            f"invalid TOML at end of file (line {len(lines)}, column {len(lines[-1]) + 1}): "
            f"{msg[:1].lower()}{msg[1:]}"
        )
    return f"invalid TOML: {message}"


def _room_from_table(
    index: int, table: Any, base: Path, problems: _Problems
) -> dict[str, Any] | None:
    """Check one ``[[rooms]]`` table.

    Returns:
        ``None`` if it is not a table; else the RoomPolicy keyword arguments that passed, with
        ``"_ok"`` telling whether all of them did (a bad room still takes part in the
        duplicate-name check, so that problem is reported in the same run).
    """
    where = f"rooms[{index}]"
    if not isinstance(table, dict):
        problems.add(where, f"must be a table ([[rooms]]), got {_show(table)}")
        return None
    values: dict[str, Any] = {}
    failed = False
    for key, raw in table.items():
        path = f"{where}.{key}"
        if key in _PLANNED_ROOM_KEYS:
            problems.add(path, _PLANNED_ROOM_KEYS[key])
            failed = True
        elif key not in ROOM_KEYS:
            problems.lines.append(_unknown_key(path, key, ROOM_KEYS))
            failed = True
        elif key == "bypass":
            bypass = _bypass_table(path, raw, base, problems)
            failed |= bypass is None
            values["bypass"] = bypass
        else:
            converted = problems.convert(path, _ROOM_KEYS[key], raw, base)
            failed |= converted is _MISSING
            values[key] = converted
    for key, expected in (
        ("name", "a room name of a-z, 0-9, _ and -"),
        ("capacity", "an integer >= 1"),
    ):
        if key not in table:
            problems.add(f"{where}.{key}", f"required ({expected})")
            failed = True
    _check_room_durations(where, values, problems)
    values["_ok"] = not failed
    return values


def _bypass_table(path: str, raw: Any, base: Path, problems: _Problems) -> Bypass | None:
    if not isinstance(raw, dict):
        problems.add(
            path,
            f"must be a table (paths, methods, cidrs, secret_header, secret), got {_show(raw)}",
        )
        return None
    values: dict[str, Any] = {}
    failed = False
    for key, item in raw.items():
        if key not in _BYPASS_KEYS:
            problems.lines.append(_unknown_key(f"{path}.{key}", key, _BYPASS_KEYS))
            failed = True
            continue
        converted = problems.convert(f"{path}.{key}", _BYPASS_KEYS[key], item, base)
        failed |= converted is _MISSING
        values[key] = converted
    return None if failed else Bypass(**values)


def _check_room_durations(where: str, values: dict[str, Any], problems: _Problems) -> None:
    """Cross-field rules; each reported on the key an operator most likely has to change."""

    def get(key: str) -> Any:
        value = values.get(key, getattr(_ROOM_DEFAULTS, key))
        return None if value is _MISSING else value

    ttl, session_max = get("session_ttl"), get("session_max")
    if ttl is not None and session_max is not None and ttl > session_max:
        problems.add(
            f"{where}.session_ttl",
            f"must be <= session_max ({session_max:g}), got {ttl:g}",
        )
    heartbeat = get("heartbeat_interval")
    abandon, claim = get("abandon_after"), get("claim_timeout")
    if heartbeat is not None and abandon is not None and abandon <= heartbeat:
        problems.add(
            f"{where}.abandon_after",
            f"must be greater than heartbeat_interval ({heartbeat:g}), got {abandon:g}",
        )
    if heartbeat is not None and claim is not None and claim <= heartbeat:
        # A promoted waiter claims on its next heartbeat: a shorter claim_timeout would
        # reclaim the slot before the waiter could take it.
        problems.add(
            f"{where}.claim_timeout",
            f"must be greater than heartbeat_interval ({heartbeat:g}), got {claim:g}",
        )


def _check_unique(rooms: list[tuple[int, dict[str, Any]]], problems: _Problems) -> None:
    names: dict[str, int] = {}
    patterns: dict[str, tuple[int, str]] = {}
    for index, values in rooms:
        name = values.get("name", _MISSING)
        if name is _MISSING:
            continue
        if name in names:
            problems.add(
                f"rooms[{index}].name",
                f'duplicate room name "{name}" (also rooms[{names[name]}])',
            )
            continue
        names[name] = index
        match = values.get("match", _ROOM_DEFAULTS.match)
        for position, pattern in enumerate(() if match is _MISSING else match):
            if pattern in patterns and patterns[pattern][1] != name:
                other_index, other = patterns[pattern]
                problems.add(
                    f"rooms[{index}].match[{position}]",
                    f'pattern "{pattern}" is already used by room "{other}" (rooms[{other_index}])',
                )
            else:
                patterns.setdefault(pattern, (index, name))


def _layer(
    label: str,
    key: str,
    raw: Any,
    spec: tuple[str, Converter],
    base: Path,
    problems: _Problems,
    chosen: dict[str, tuple[Any, str]],
) -> None:
    """Check one value from one source; if good it overrides lower sources."""
    kind, converter = spec
    value = _parse_text(kind, raw) if isinstance(raw, str) and kind != "str" else raw
    converted = problems.convert(label, converter, value, base)
    if converted is _MISSING:
        problems.refused.add(key)
    else:
        chosen[key] = (converted, label)


def load_settings(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    *,
    require_upstream: bool = False,
) -> Settings:
    """Build and validate the process settings (DESIGN §3).

    Sources, highest precedence first: ``flags``, ``env``, the TOML file, defaults. Every
    problem in every source is collected; nothing is returned half-configured.

    Args:
        config_file: Path of the TOML file; ``None`` = ``WAITROOM_CONFIG`` from ``env``, or no
            file. Relative paths inside the file (``template``, ``signing_key_file``) are
            resolved against the file's directory; those from env or flags against the
            working directory.
        env: Environment variables (``WAITROOM_*``, see :data:`ENV_VARS`); ``None`` =
            ``os.environ``. Empty values count as unset.
        flags: CLI flag values by key (``port``, ``upstream``, ``capacity``, ``admit_rate`` or
            any other ``[server]`` key); ``None`` values are ignored; strings are parsed like
            environment values.
        require_upstream: Also require an upstream URL (``serve`` needs one; the middleware
            does not).

    Returns:
        The settings, with at least one room.

    Raises:
        ConfigError: One message per problem, each naming its key path, env var or flag, e.g.
            ``rooms[1].capacity: must be >= 1, got 0``.
    """
    env = os.environ if env is None else env
    flags = {} if flags is None else flags
    problems = _Problems()
    cwd = Path.cwd()
    chosen: dict[str, tuple[Any, str]] = {}
    quick: dict[str, tuple[Any, str]] = {}
    checked: list[tuple[int, dict[str, Any]]] = []
    file_ok = True
    room_count = 0

    if config_file is None:
        config_file = (env.get(f"{ENV_PREFIX}CONFIG") or "").strip() or None
    if config_file is not None:
        path = Path(config_file).expanduser()
        document = _read_toml(path, config_file, problems)
        file_ok = document is not None
        if document is not None:
            base = path.resolve().parent
            for key, value in document.items():
                if key == "server":
                    if not isinstance(value, dict):
                        problems.add("server", f"must be a table ([server]), got {_show(value)}")
                        continue
                    for name, raw in value.items():
                        if name not in _SERVER_KEYS:
                            problems.lines.append(
                                _unknown_key(f"server.{name}", name, _SERVER_KEYS)
                            )
                            continue
                        _layer(
                            f"server.{name}", name, raw, _SERVER_KEYS[name], base, problems, chosen
                        )
                elif key == "rooms":
                    if not isinstance(value, list):
                        problems.add(
                            "rooms", f"must be an array of tables ([[rooms]]), got {_show(value)}"
                        )
                        continue
                    room_count = len(value)
                    for index, table in enumerate(value):
                        room = _room_from_table(index, table, base, problems)
                        if room is not None:
                            checked.append((index, room))
                elif key in _SERVER_KEYS:
                    problems.add(key, "unknown key (process settings go in the [server] table)")
                elif key in ROOM_KEYS:
                    problems.add(key, "unknown key (room settings go in a [[rooms]] table)")
                else:
                    problems.lines.append(_unknown_key(key, key, ("server", "rooms")))

    for var, key in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or not raw.strip() or key == "config":
            continue
        if key in _QUICK_START_KEYS:
            _layer(var, key, raw, _QUICK_START_KEYS[key], cwd, problems, quick)
        else:
            _layer(var, key, raw, _SERVER_KEYS[key], cwd, problems, chosen)

    for key, raw in flags.items():
        label = "--" + key.replace("_", "-")
        if raw is None:
            continue
        if key in _QUICK_START_KEYS:
            _layer(label, key, raw, _QUICK_START_KEYS[key], cwd, problems, quick)
        elif key in _SERVER_KEYS:
            _layer(label, key, raw, _SERVER_KEYS[key], cwd, problems, chosen)
        else:
            problems.lines.append(_unknown_key(label, key, [*_SERVER_KEYS, *_QUICK_START_KEYS]))

    _check_unique(checked, problems)
    rooms = [(index, values) for index, values in checked if values.pop("_ok")]
    _apply_quick_start(rooms, room_count, file_ok, quick, problems)
    _check_server(chosen, problems, require_upstream=require_upstream)

    if problems.lines:
        raise ConfigError(problems.lines)
    return Settings(
        rooms=tuple(RoomPolicy(**values) for _, values in rooms),
        **{key: value for key, (value, _) in chosen.items()},
    )


def _apply_quick_start(
    rooms: list[tuple[int, dict[str, Any]]],
    room_count: int,
    file_ok: bool,
    quick: dict[str, tuple[Any, str]],
    problems: _Problems,
) -> None:
    """``--capacity``/``--admit-rate``: make the one room, or override the file's one room."""
    overrides = {key: value for key, (value, _) in quick.items()}
    if room_count:
        if quick and room_count > 1:
            labels = " and ".join(label for _, label in quick.values())
            problems.add(
                labels,
                f"applies to a single room, but the config file has {room_count} rooms: "
                "set capacity and admit_rate per room in the file",
            )
        elif quick and rooms:
            rooms[0][1].update(overrides)
        return
    if "capacity" in overrides:
        rooms.append((0, {"name": QUICK_START_ROOM, "match": ("*/",), **overrides}))
    elif file_ok and "capacity" not in problems.refused:
        problems.add(
            "capacity",
            "no rooms configured: pass --capacity N (or WAITROOM_CAPACITY) "
            "or a config file with [[rooms]]",
        )


def _check_server(
    chosen: dict[str, tuple[Any, str]], problems: _Problems, *, require_upstream: bool
) -> None:
    def value(key: str) -> Any:
        return chosen[key][0] if key in chosen else getattr(_SETTINGS_DEFAULTS, key)

    def label(key: str) -> str:
        return chosen[key][1] if key in chosen else f"server.{key}"

    if require_upstream and value("upstream") is None and "upstream" not in problems.refused:
        problems.add(
            "upstream",
            "required to serve: pass --upstream URL, set WAITROOM_UPSTREAM or "
            "[server] upstream in the config file",
        )
    port, admin_port = value("port"), value("admin_port")
    wildcard = {"0.0.0.0", "::"}  # noqa: S104 - compared with, not bound to
    hosts = {value("host"), value("admin_host")}
    workers = value("workers")
    if admin_port == port and (len(hosts) == 1 or hosts & wildcard):
        problems.add(label("admin_port"), f"must differ from port ({port}), got {admin_port}")
    elif admin_port == port and workers > 1:
        # Every worker serves both listeners and tells them apart by their port.
        problems.add(label("admin_port"), f"must differ from port ({port}) with more than 1 worker")
    if workers > 1:
        if value("store_url") is None:
            problems.add(
                label("workers"),
                f"{workers} workers need a shared store: set store_url "
                "(WAITROOM_STORE_URL, --store-url or [server] store_url), or use 1 worker",
            )
        if value("secret") is None:
            problems.add(
                label("workers"),
                f"{workers} workers need a shared secret: set WAITROOM_SECRET "
                "(or [server] secret), or use 1 worker",
            )


_SETTINGS_DEFAULTS = Settings(rooms=())
_ROOM_DEFAULTS = RoomPolicy(name=QUICK_START_ROOM, capacity=1)


def config_warnings(settings: Settings) -> list[str]:
    """What is legal but probably not meant: ``serve`` logs these at start and
    ``check-config`` prints them, in the same words (one source, so the two never disagree).
    """
    out: list[str] = []
    if settings.admin_port is not None and not settings.admin_token:
        out.append(
            f"admin_port is {settings.admin_port} but admin_token is not set: the admin "
            "listener (metrics, admin API, dashboard) is disabled; set WAITROOM_ADMIN_TOKEN "
            "(or [server] admin_token) to enable it"
        )
    if settings.upstream_ca_file and not (settings.upstream or "").startswith("https://"):
        out.append(
            "upstream_ca_file is set but the upstream is not an https:// URL: it is not used"
        )
    if not settings.secret:
        out.append(
            "secret is not set: a random secret is used for this process only (every replica "
            "of one site must share one: set WAITROOM_SECRET)"
        )
    return out


def room_coverage(settings: Settings) -> str | None:
    """A note when no room matches every host: requests for other hosts (``localhost``
    among them) are not queued at all, which surprises whoever tries a config on their own
    machine. ``None`` when some room matches ``*`` hosts."""
    patterns = [(room.name, pattern) for room in settings.rooms for pattern in room.match]
    if any(pattern.split("/", 1)[0] == "*" for _, pattern in patterns):
        return None
    shown = "; ".join(f"{room.name}: {', '.join(room.match)}" for room in settings.rooms)
    return (
        "no room matches every host, so requests for any other host (127.0.0.1 and "
        f"localhost among them) pass to the upstream without a queue. Rooms match: {shown}"
    )
