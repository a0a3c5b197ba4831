"""Process settings: TOML file + ``WAITROOM_*`` environment + CLI flags (DESIGN §3).

Precedence, highest first: CLI flags, environment, the TOML file, defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from waitroom_proxy.domain.policy import RoomPolicy


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
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 60.0
    store_timeout: float = 0.5
    """Connect and read timeout of every store call, seconds."""
    issuer: str = "waitroom-proxy"
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    max_body_bytes: int | None = None
    """Request bodies larger than this are refused with 413 (None = no limit)."""
