"""What is legal but probably not meant: ``serve`` logs these at start and ``check-config``
prints them, in the same words (one source, so the two never disagree)."""

from __future__ import annotations

from waitroom_proxy.config.schema import Settings


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
