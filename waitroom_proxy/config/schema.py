"""The settings schema, written once: the process (``Settings``), each room (``RoomModel``)
and its bypass table (``BypassModel``).

Every key's type, bounds, default, check and message come from here: the loader validates
TOML, environment and flag values with these fields; the admin API validates a PATCH with the
same fields and publishes their JSON schema in its OpenAPI document; ``check-config`` and the
README's configuration tables list these keys. Which room fields may change at runtime is
declared here too (:data:`RUNTIME`), and exported as :data:`MUTABLE_FIELDS`.

``Settings`` is a plain frozen dataclass (host apps and tests build it directly, unchecked);
its field types carry the checks, which the loader applies. ``RoomPolicy`` and ``Bypass`` stay
plain values in ``domain/``: the room model builds them (:func:`to_policy`).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic.fields import FieldInfo

from waitroom_proxy.config.network import (
    BindHost,
    BypassPath,
    CaFile,
    Cidr,
    ExistingFile,
    HeaderName,
    MatchList,
    Method,
    NatsUrls,
    Origin,
    Prefix,
    RoomName,
    StoreUrl,
    Upstream,
)
from waitroom_proxy.config.page_values import (
    Colour,
    Links,
    Logo,
    PageMessage,
    PageMessages,
    PageTitle,
)
from waitroom_proxy.config.schedule_value import ScheduleValue
from waitroom_proxy.config.values import (
    ARRAY,
    MIN_SECRET_BYTES,
    MIN_TOKEN_CHARS,
    Boolean,
    Check,
    Seconds,
    Text,
    choice,
    enum,
    integer,
    one_of,
    secret,
)
from waitroom_proxy.domain.binding import MODES as BINDING_MODES
from waitroom_proxy.domain.policy import Bypass, FailMode, Mode, RoomPolicy
from waitroom_proxy.domain.pow import MAX_DIFFICULTY

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
"""Python logging levels (uvicorn's extra "trace" has no ``logging`` level of its own)."""
PAGE_STATUSES = (200, 202, 429, 503)

SECRET = secret(MIN_SECRET_BYTES, "bytes")
TOKEN = secret(MIN_TOKEN_CHARS, "characters")
Port = Annotated[int, integer(1, 65535)]
Count = Annotated[int, integer(1)]
"""A count >= 1 (capacity, workers, lengths), at most 10⁹."""
Rate = Annotated[int, integer(0)]
"""A count >= 0 (0 = none / no limit), at most 10⁹."""


Secrets = Annotated[tuple[Annotated[str, SECRET], ...], ARRAY]
Cidrs = Annotated[tuple[Cidr, ...], ARRAY]
Origins = Annotated[tuple[Origin, ...], ARRAY]
BypassPaths = Annotated[tuple[BypassPath, ...], ARRAY]
Methods = Annotated[tuple[Method, ...], ARRAY]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything one process needs. Secrets never appear in ``repr``.

    Each field but ``rooms`` is a ``[server]`` key of the TOML file and an environment variable
    ``WAITROOM_<KEY>``; its type is its check.
    """

    rooms: tuple[RoomPolicy, ...]
    upstream: Upstream = None
    """Origin base URL (``http://127.0.0.1:8000``); required by ``serve``, unused by the
    middleware."""
    store_url: StoreUrl = None
    """URL of the Redis-protocol store: ``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://h1:p1,h2:p2/0`` or ``redis+sentinel://s1:p1,s2:p2/<service>/0``
    (``waitroom_proxy.domain.store_url``); None = in-process store (single replica only)."""
    nats_url: NatsUrls = None
    """NATS URL for events, or several separated by commas (a cluster); None = events to the
    debug log."""
    nats_stream_replicas: Annotated[int, integer(1, 5)] = 1
    """Replicas of the ``WAITROOM`` and ``WAITROOM_DLQ`` streams when the publisher creates
    them (1-5; 3 on a NATS cluster, so a stream survives a node)."""
    secret: Annotated[str | None, SECRET] = field(default=None, repr=False)
    """Shared secret: signs tickets, and session JWTs with HS256. None = a random secret per
    process (fine for one process; replicas must share one)."""
    previous_secrets: Secrets = field(default=(), repr=False)
    """Older secrets still accepted for verification (key rotation); comma-separated in the
    environment."""
    signing_key_file: ExistingFile = None
    """PEM private key (Ed25519 or P-256) → session JWTs signed with EdDSA/ES256 and published
    at ``/_waitroom/jwks.json``."""
    admin_token: Annotated[str | None, TOKEN] = field(default=None, repr=False)
    """Bearer token of the admin listener; None = admin API disabled."""
    prefix: Prefix = "/_waitroom"
    host: BindHost = "127.0.0.1"
    port: Port = 8080
    admin_host: BindHost = "127.0.0.1"
    admin_port: Annotated[int | None, integer(1, 65535)] = None
    workers: Count = 1
    trusted_proxies: Cidrs = ()
    """CIDRs whose ``X-Forwarded-*`` headers are believed."""
    auth_cache_seconds: Annotated[int, integer(0, 3600)] = 5
    """Forward-auth mode: seconds a load balancer may cache a ``{prefix}/auth`` pass per
    session cookie (``Cache-Control: private, max-age``; 0 = no caching). A revoked session
    stops passing within this time."""
    upstream_ca_file: CaFile = None
    """PEM file of the CA certificates that an ``https://`` upstream's certificate must chain
    to (an internal CA), instead of the system's trust store."""
    upstream_connect_timeout: Seconds = 5.0
    upstream_read_timeout: Seconds = 60.0
    store_timeout: Seconds = 0.5
    """Connect and read timeout of every store call, seconds."""
    issuer: Text = "waitroom-proxy"
    cors_origins: Origins = ()
    log_level: Annotated[str, choice(LOG_LEVELS)] = "info"
    max_body_bytes: Annotated[int | None, integer(1)] = None
    """Request bodies larger than this are refused with 413 (None = no limit)."""
    max_header_bytes: Annotated[int, integer(1024)] = 65_536
    """Request heads (request line + headers) larger than this get 431 and a close."""
    header_timeout: Seconds = 10.0
    """Seconds a client has to send a request head (from connecting, or from the request's
    first byte on a kept-alive connection); past it, 408 and a close (slowloris)."""
    body_timeout: Seconds = 60.0
    """Seconds a client may stay silent while sending a request body (between two reads, as
    nginx's ``client_body_timeout``); past it, 408 and a close, or a cut connection once the
    response has started. Slow uploads would otherwise pin upstream connections and origin
    workers."""
    client_rate_limit: Rate = 600
    """Enqueue and heartbeat requests allowed per client IP per minute (sliding window in the
    store; 0 = no limit). Generous by default: many visitors can share one NAT address."""
    page_messages: PageMessages = None
    """TOML file of the waiting page's strings: one table per language tag (``[fr]``), keys
    as in ``waitroom_proxy/asgi/messages.py``; adds languages or replaces shipped strings
    (missing keys fall back to English). Chosen by the visitor's ``Accept-Language``."""


class _Runtime:
    """Marks a room field that the admin API may change at runtime (kept in the store's room
    meta; every replica follows)."""

    def __repr__(self) -> str:
        return "RUNTIME"


RUNTIME = _Runtime()

_BYPASS = Bypass()
_ROOM = RoomPolicy(name="default", capacity=1)
"""The domain values' own defaults: the models take theirs from them (one source)."""
_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class BypassModel(BaseModel):
    """Requests that skip the waiting room entirely (a room's ``bypass`` table)."""

    model_config = _MODEL_CONFIG | ConfigDict(title="Bypass")

    paths: BypassPaths = _BYPASS.paths
    """Path prefixes (``/static/``) or globs (``*.css``, ``/assets/*``)."""
    methods: Methods = _BYPASS.methods
    """HTTP methods (``OPTIONS``), stored upper case."""
    cidrs: Cidrs = _BYPASS.cidrs
    """Client networks (``10.0.0.0/8``, ``::1/128``)."""
    secret_header: HeaderName = _BYPASS.secret_header
    """Header name that carries the bypass secret."""
    secret: Annotated[str | None, TOKEN] = _BYPASS.secret
    """Value of the bypass header that lets a request through; unset disables it."""


class RoomModel(BaseModel):
    """One room's configuration (a ``[[rooms]]`` table). Durations are in seconds."""

    model_config = _MODEL_CONFIG | ConfigDict(title="Policy")

    name: RoomName
    """Room id: 1-64 characters of a-z, 0-9, _ and -."""
    capacity: Annotated[Count, RUNTIME]
    """Max concurrent active sessions."""
    match: MatchList = _ROOM.match
    """``host/path-prefix`` patterns (``*`` or ``*.example.com`` hosts); most specific wins."""
    admit_rate: Annotated[Rate, RUNTIME] = _ROOM.admit_rate
    """Max new admissions per minute; 0 = bounded by capacity only."""
    session_ttl: Annotated[Seconds, RUNTIME] = _ROOM.session_ttl
    """Idle time after which a session ends."""
    session_renewal: Annotated[Boolean, RUNTIME] = _ROOM.session_renewal
    """Sliding sessions; off = fixed ``session_max``."""
    session_max: Annotated[Seconds, RUNTIME] = _ROOM.session_max
    """Absolute session lifetime."""
    heartbeat_interval: Annotated[Seconds, RUNTIME] = _ROOM.heartbeat_interval
    """Waiting-page poll period."""
    abandon_after: Annotated[Seconds, RUNTIME] = _ROOM.abandon_after
    """No heartbeat for this long: the place is lost."""
    claim_timeout: Annotated[Seconds, RUNTIME] = _ROOM.claim_timeout
    """Promoted but not claimed for this long: the slot is freed."""
    mode: Annotated[Mode, enum(Mode), RUNTIME] = _ROOM.mode
    """How the room admits: fifo, random, passthrough, reject or queue_all."""
    bypass: BypassModel = BypassModel()
    """Requests that skip the waiting room."""
    fail_mode: Annotated[FailMode, enum(FailMode), RUNTIME] = _ROOM.fail_mode
    """Store unreachable: open (pass, rate-limited locally) or closed (503 page)."""
    page_status: Annotated[int, one_of(PAGE_STATUSES), RUNTIME] = _ROOM.page_status
    """HTTP status of the waiting page."""
    template: ExistingFile = _ROOM.template
    """Operator Jinja2 template for the waiting page; unset = built in."""
    max_queue_length: Annotated[Count, RUNTIME] = _ROOM.max_queue_length
    """Newcomers beyond this get "queue full" (503)."""
    activity_interval: Seconds = _ROOM.activity_interval
    """Session activity reaches the store at most this often between renewals."""
    pow_difficulty: Annotated[int, integer(0, MAX_DIFFICULTY), RUNTIME] = _ROOM.pow_difficulty
    """Proof of work before a ticket is issued, in leading zero bits (21 ≈ 1.3 s in a
    browser); 0 = off."""
    message: Annotated[PageMessage, RUNTIME] = _ROOM.message
    """A notice shown to waiters on the page and in the JSON (``message``); "" clears it."""
    page_title: PageTitle = _ROOM.page_title
    """The waiting page's title and label (the operator's brand); unset = "Waiting room"."""
    page_logo: Logo = _ROOM.page_logo
    """An image file (PNG, JPEG, GIF, WebP, SVG; at most 64 KiB) inlined in the page."""
    page_accent: Colour = _ROOM.page_accent
    """The page's accent colour (buttons, progress bar), ``#rrggbb``."""
    page_background: Colour = _ROOM.page_background
    """The page's background colour."""
    page_text: Colour = _ROOM.page_text
    """The page's text colour."""
    page_links: Links = _ROOM.page_links
    """Footer links: an array of ``{label = "...", href = "https://..." or "/path"}``."""
    session_binding: Annotated[str, choice(BINDING_MODES)] = _ROOM.session_binding
    """Bind a session to the client it was issued to: ``none``, ``ip`` (IPv4 /24, IPv6 /64),
    ``ua`` (the User-Agent) or ``ip+ua``; a session cookie used elsewhere gets a clear page."""
    schedule: ScheduleValue = _ROOM.schedule
    """A scheduled sale: prequeue_at, start_at, end_at (RFC 3339), shuffle_at_start."""


PLANNED_ROOM_KEYS: dict[str, str] = {}
"""Room keys that are known but refused until their feature ships."""

SERVER_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Settings))[1:]
"""Keys of the TOML ``[server]`` table (= the ``Settings`` fields except ``rooms``)."""
ROOM_KEYS: tuple[str, ...] = tuple(RoomModel.model_fields)
"""Keys of a TOML ``[[rooms]]`` table (= the ``RoomPolicy`` fields)."""
BYPASS_KEYS: tuple[str, ...] = tuple(BypassModel.model_fields)
"""Keys of a room's ``bypass`` sub-table (= the ``Bypass`` fields)."""
MUTABLE_FIELDS: tuple[str, ...] = tuple(
    name for name, info in RoomModel.model_fields.items() if RUNTIME in info.metadata
)
"""Room fields an operator may change at runtime (admin API); kept in the store's room meta."""


# --------------------------------------------------------------------------- field access
@functools.cache
def _settings_hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings, include_extras=True)


_ADAPTERS: dict[tuple[type[Any], str], TypeAdapter[Any]] = {}


def field_adapter(schema: type[Any], key: str) -> TypeAdapter[Any]:
    """The validator of one field of ``Settings``, ``RoomModel`` or ``BypassModel`` (built on
    first use: a process that never sees a key never pays for its validator)."""
    adapter = _ADAPTERS.get((schema, key))
    if adapter is None:
        if schema is Settings:
            hint = _settings_hints()[key]
        else:
            info: FieldInfo = schema.model_fields[key]
            hint = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        adapter = _ADAPTERS[(schema, key)] = TypeAdapter(hint)
    return adapter


def field_kind(schema: type[Any], key: str) -> str:
    """How environment and flag text for a key is parsed: ``int``, ``float``, ``list`` or
    ``str`` (the field's type says; strings then go through the field's check unchanged)."""
    hint = _settings_hints()[key] if schema is Settings else schema.model_fields[key].annotation
    kinds = {int: "int", float: "float", tuple: "list"}
    for part in _flatten(hint):
        if part in kinds:
            return kinds[part]
    return "str"


def _flatten(hint: Any) -> list[Any]:
    """The plain types inside ``Annotated``/``Optional`` wrappers, outermost first."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _flatten(typing.get_args(hint)[0])
    if origin is tuple:
        return [tuple]
    if origin is not None:  # a union: every member
        return [part for arg in typing.get_args(hint) for part in _flatten(arg)]
    return [hint]


def expected(schema: type[BaseModel], key: str) -> str:
    """What a required field expects, for "required (...)"."""
    for item in schema.model_fields[key].metadata:
        if isinstance(item, Check):
            return item.expect
    return "a value"


REQUIRED_ROOM_KEYS: tuple[str, ...] = tuple(
    name for name, info in RoomModel.model_fields.items() if info.is_required()
)


# --------------------------------------------------------------------------- rules and values
class _Durations(Protocol):
    @property
    def session_ttl(self) -> float: ...
    @property
    def session_max(self) -> float: ...
    @property
    def heartbeat_interval(self) -> float: ...
    @property
    def abandon_after(self) -> float: ...
    @property
    def claim_timeout(self) -> float: ...


def room_rules(room: _Durations | Mapping[str, Any]) -> list[tuple[str, str]]:
    """The cross-field rules of a room, as ``(field, message)``: the config file and the admin
    API apply the same ones, each reported on the key an operator most likely has to change.

    Args:
        room: a policy, or the values that passed (missing ones take the defaults; a value
            that is None was refused, and the rules that need it are skipped).
    """

    def get(key: str) -> Any:
        if isinstance(room, Mapping):
            return room.get(key, getattr(_ROOM, key))
        return getattr(room, key)

    out: list[tuple[str, str]] = []
    ttl, session_max = get("session_ttl"), get("session_max")
    if ttl is not None and session_max is not None and ttl > session_max:
        out.append(("session_ttl", f"must be <= session_max ({session_max:g}), got {ttl:g}"))
    heartbeat = get("heartbeat_interval")
    for key in ("abandon_after", "claim_timeout"):
        # A promoted waiter claims on its next heartbeat: a shorter claim_timeout would
        # reclaim the slot before the waiter could take it.
        value = get(key)
        if heartbeat is not None and value is not None and value <= heartbeat:
            out.append(
                (key, f"must be greater than heartbeat_interval ({heartbeat:g}), got {value:g}")
            )
    return out


def to_bypass(values: Bypass | BypassModel | Mapping[str, Any]) -> Bypass:
    """The domain's ``Bypass`` from a validated bypass table."""
    if isinstance(values, Bypass):
        return values
    data = values.model_dump() if isinstance(values, BypassModel) else dict(values)
    return Bypass(**data)


def to_policy(values: Mapping[str, Any]) -> RoomPolicy:
    """The domain's ``RoomPolicy`` from validated room values (missing ones: defaults)."""
    data = dict(values)
    if "bypass" in data:
        data["bypass"] = to_bypass(data["bypass"])
    return RoomPolicy(**data)
