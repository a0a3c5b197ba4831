"""The value types of the settings schema that name things: URLs, hosts, networks, files,
paths, patterns, HTTP methods and headers.

Like :mod:`waitroom_proxy.config.values`, each type is written once, as an ``Annotated`` type
whose check refuses with the precise message; URLs are shown redacted in every message.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import ValidationInfo

from waitroom_proxy.config.problems import refuse, show
from waitroom_proxy.config.values import Check, base_dir
from waitroom_proxy.domain.matching import parse_pattern
from waitroom_proxy.domain.policy import ROOM_NAME_RE
from waitroom_proxy.domain.redact import redact_url
from waitroom_proxy.domain.store_url import TLS_FILE_OPTIONS, StoreUrlError, parse_store_url


def _check_url(schemes: Sequence[str], value: Any) -> str:
    names = ", ".join(f"{scheme}://" for scheme in schemes[:-1])
    names = f"{names} or {schemes[-1]}://" if names else f"{schemes[-1]}://"
    desc = f"must be a {names} URL with a host"
    if not isinstance(value, str):
        refuse(f"{desc}, got {show(value)}")
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        refuse(f"{desc} and a valid port, got {show(redact_url(text))}")
    if parts.scheme.lower() not in schemes or not parts.hostname:
        refuse(f"{desc}, got {show(redact_url(text))}")
    return text


def _upstream(value: Any) -> str:
    text = _check_url(("http", "https"), value)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        refuse(f"must not have a query or fragment, got {show(redact_url(text))}")
    return text


Upstream = Annotated[str | None, Check(_upstream, "an http:// or https:// URL")]
"""The origin's base URL: ``http(s)://host[:port][/path]``."""


def _store_url(value: Any) -> str:
    """One of the topologies of ``waitroom_proxy.domain.store_url``."""
    if not isinstance(value, str):
        refuse(f"must be a store URL such as redis://host:6379/0, got {show(value)}")
    text = value.strip()
    try:
        target = parse_store_url(text)
    except StoreUrlError as exc:
        refuse(f"{exc}, got {show(redact_url(text))}")
    for key, option in target.tls_options:
        if key in TLS_FILE_OPTIONS and not Path(str(option)).expanduser().is_file():
            refuse(f"{key}: no such file {show(option)}")
    # The scheme in its canonical spelling (valkey is the same protocol as redis); the rest as
    # given, so check-config shows what the operator wrote.
    return target.scheme + "://" + text.split("://", 1)[1]


StoreUrl = Annotated[str | None, Check(_store_url, "a store URL")]


def _nats_urls(value: Any) -> str:
    """One NATS URL, or several (a cluster: a comma-separated string or a TOML array)."""
    items = value if isinstance(value, list) else None
    if items is None:
        if not isinstance(value, str):
            refuse(f"must be a nats:// or tls:// URL or a list of them, got {show(value)}")
        items = [part.strip() for part in value.split(",")]
    if not items or any(not isinstance(item, str) or not item.strip() for item in items):
        shown = show(redact_url(str(value)))
        refuse(f"must be nats:// or tls:// URLs separated by commas, got {shown}")
    urls: list[str] = []
    for item in items:
        text = item.strip()
        if any(ch.isspace() for ch in text):
            refuse(f"separate several NATS URLs with commas, got {show(redact_url(text))}")
        urls.append(_check_url(("nats", "tls"), text))
    if len(set(urls)) != len(urls):
        refuse(f"lists the same URL twice, got {show(redact_url(','.join(urls)))}")
    return ",".join(urls)


NatsUrls = Annotated[str | None, Check(_nats_urls, "nats:// or tls:// URLs")]


def _cidr(value: Any) -> str:
    desc = "must be an IP network like 10.0.0.0/8, 192.0.2.7 or ::1/128"
    if not isinstance(value, str):
        refuse(f"{desc}, got {show(value)}")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as exc:
        reason = " (host bits set)" if "host bits set" in str(exc) else ""
        refuse(f"{desc}, got {show(value)}{reason}")


Cidr = Annotated[str, Check(_cidr, "an IP network")]


def _existing_file(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value.strip():
        refuse(f"must be a file path, got {show(value)}")
    path = Path(value.strip()).expanduser()
    if not path.is_absolute():
        path = base_dir(info) / path
    if not path.is_file():
        refuse(f"no such file {show(value)} (looked for {path})")
    return str(path.resolve())


ExistingFile = Annotated[str | None, Check(_existing_file, "a file path")]
"""A file that exists; a relative path is resolved against the TOML file's directory."""


def _ca_file(value: Any, info: ValidationInfo) -> str:
    """A PEM file of CA certificates that an SSL context can load (checked here, so a wrong
    file fails at start-up and not as a 502 on every request)."""
    path = _existing_file(value, info)
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        refuse(f"not a PEM file of CA certificates {show(value)} ({reason})")
    return path


CaFile = Annotated[str | None, Check(_ca_file, "a PEM file of CA certificates")]

_PREFIX_RE = re.compile(r"^/[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*$")


def _prefix(value: Any) -> str:
    if not isinstance(value, str) or not _PREFIX_RE.fullmatch(value.strip()):
        refuse(
            'must be a path like "/_waitroom" (leading slash, no trailing slash), '
            f"got {show(value)}"
        )
    return value.strip()


Prefix = Annotated[str, Check(_prefix, "a path like /_waitroom")]

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
    return len(host) <= 253 and all(_HOST_LABEL_RE.fullmatch(label) for label in labels)


def _bind_host(value: Any) -> str:
    """A listen address, in the form ``socket.bind`` takes: ``[::1]`` (the URL spelling of an
    IPv6 address) becomes ``::1``, so what passes here also binds."""
    desc = 'must be a host name or IP address to listen on (e.g. "0.0.0.0" or "::")'
    if not isinstance(value, str):
        refuse(f"{desc}, got {show(value)}")
    text = value.strip()
    if text.startswith("[") or text.endswith("]"):
        inner = text.removeprefix("[").removesuffix("]")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            refuse(f"{desc}: brackets only enclose an IPv6 address, got {show(value)}")
        if not (text.startswith("[") and text.endswith("]")):
            refuse(f"{desc}: unbalanced brackets, got {show(value)}")
        return inner
    if not _is_hostname(text.lower()):
        refuse(f"{desc}, got {show(value)}")
    return text


BindHost = Annotated[str, Check(_bind_host, "a host name or IP address")]


def _origin(value: Any) -> str:
    if value == "*":
        return "*"
    desc = 'must be "*" or an origin like "https://shop.example.com"'
    if not isinstance(value, str):
        refuse(f"{desc}, got {show(value)}")
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        refuse(f"{desc}, got {show(value)}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        refuse(f"{desc} (scheme and host, no path), got {show(value)}")
    return f"{parts.scheme}://{parts.netloc}".lower()


Origin = Annotated[str, Check(_origin, "an origin")]


def _room_name(value: Any) -> str:
    if not isinstance(value, str) or not ROOM_NAME_RE.fullmatch(value):
        refuse(f"must be 1-64 characters of a-z, 0-9, _ and - (lower case), got {show(value)}")
    return value


RoomName = Annotated[
    str, Check(_room_name, "a room name of a-z, 0-9, _ and -", pattern=ROOM_NAME_RE.pattern)
]


def _match_pattern(value: Any) -> str:
    desc = 'must be a "host/path-prefix" pattern like "*/", "shop.example.com/sale"'
    if not isinstance(value, str):
        refuse(f"{desc}, got {show(value)}")
    try:
        pattern = parse_pattern(value.strip())
    except ValueError as exc:
        refuse(f"{desc}: {exc}, got {show(value)}")
    host = pattern.host
    if ":" in host and not host.startswith("["):
        refuse(f"host must not include a port (hosts match without port), got {show(value)}")
    name = host[2:] if host.startswith("*.") else host
    if host != "*" and not _is_hostname(name):
        refuse(f'host must be "*", "*.example.com" or a host name, got {show(value)}')
    if any(char in pattern.path for char in "?#*"):
        refuse(f"path must be a plain prefix (no ?, # or *), got {show(value)}")
    return str(pattern)


def _match_list(value: Any) -> Any:
    if isinstance(value, str):  # a single pattern is a list of one
        return [value]
    if not isinstance(value, list | tuple):
        refuse(f"must be an array, got {show(value)}")
    if not value:
        refuse('must list at least one pattern (use ["*/"] for every request)')
    return value


MatchPattern = Annotated[str, Check(_match_pattern, "a host/path-prefix pattern")]
MatchList = Annotated[
    tuple[MatchPattern, ...], Check(_match_list, "patterns", json_schema_extra={"minItems": 1})
]
"""``host/path-prefix`` patterns (a single string is a list of one)."""


def _bypass_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        refuse(f'must be a path prefix ("/static/") or a glob ("*.css"), got {show(value)}')
    text = value.strip()
    if not text.startswith(("/", "*")):
        refuse(f'must start with "/" or "*", got {show(value)} (did you mean "/{text}"?)')
    return text


BypassPath = Annotated[str, Check(_bypass_path, "a path prefix or a glob")]

_METHOD_RE = re.compile(r"^[A-Za-z]{1,20}$")
_HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _method(value: Any) -> str:
    if not isinstance(value, str) or not _METHOD_RE.fullmatch(value.strip()):
        refuse(f'must be an HTTP method like "OPTIONS", got {show(value)}')
    return value.strip().upper()


Method = Annotated[str, Check(_method, "an HTTP method")]


# Headers the proxy reads or sets itself: a bypass secret in one of them would be rewritten,
# or (the secret header never reaches the origin) would take the origin's header away.
_RESERVED_HEADERS = frozenset(
    {
        "host", "cookie", "authorization", "content-length", "transfer-encoding", "connection",
        "keep-alive", "te", "trailer", "upgrade", "proxy-connection", "expect", "accept",
        "waitroom-verified", "forwarded", "x-real-ip",
    }
)  # fmt: skip


def _header_name(value: Any) -> str:
    if not isinstance(value, str) or not _HEADER_RE.fullmatch(value.strip()):
        refuse(f'must be an HTTP header name like "waitroom-bypass", got {show(value)}')
    name = value.strip().lower()
    dashed = name.replace("_", "-")
    if dashed in _RESERVED_HEADERS or dashed.startswith("x-forwarded-"):
        refuse(
            'must be a header of its own, like "waitroom-bypass" (it never reaches the origin), '
            f"got {show(value)}, which the proxy or the origin needs"
        )
    return name


HeaderName = Annotated[str, Check(_header_name, "an HTTP header name")]
