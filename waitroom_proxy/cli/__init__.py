"""Command line: ``waitroom-proxy`` / ``python -m waitroom_proxy``.

A thin click layer, as in uvicorn: every command parses its flags, hands them to
:func:`waitroom_proxy.config.load_settings` and calls into the package lazily, so
``--help`` and ``check-config`` stay fast and never import the server stack.

Every flag has an environment variable (shown in ``--help``). The environment itself is read by
``load_settings``, not by click, so a bad value is reported with the variable's name
(``WAITROOM_PORT: must be an integer 1-65535, got "x"``) together with every other problem.
Configuration errors exit with status 2, one problem per line on stderr, never a traceback; a
listener that cannot be opened exits with status 1 and one line naming the address.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from waitroom_proxy import __version__
from waitroom_proxy.config import Settings, config_warnings, load_settings, room_coverage
from waitroom_proxy.config.schema import LOG_LEVELS
from waitroom_proxy.config.sources import ENV_PREFIX, flag_label
from waitroom_proxy.domain.policy import ROOM_NAME_RE, Bypass, RoomPolicy
from waitroom_proxy.domain.redact import MASK, redact_url
from waitroom_proxy.errors import ConfigError, ListenError

__all__ = ["format_settings", "main"]

_F = TypeVar("_F", bound=Callable[..., Any])

CONFIG_ERROR_EXIT = 2
LISTEN_ERROR_EXIT = 1
_SECRET_FIELDS = frozenset({"secret", "previous_secrets", "admin_token"})
_URL_FIELDS = frozenset({"store_url", "nats_url", "upstream"})


def _fail(problems: list[str]) -> NoReturn:
    for problem in problems:
        click.echo(problem, err=True)
    sys.exit(CONFIG_ERROR_EXIT)


def _show(name: str, value: Any) -> str:
    if value is None or value == ():
        return "-"
    if name in _SECRET_FIELDS:
        return MASK
    if name in _URL_FIELDS:
        return redact_url(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def format_settings(settings: Settings) -> str:
    """Render resolved settings for people: every value, secrets shown as ``***``.

    Args:
        settings: Validated settings.

    Returns:
        A ``[server]`` block then one block per room, keys aligned.
    """
    lines = ["[server]"]
    for item in fields(Settings):
        if item.name == "rooms":
            continue
        lines.append(f"  {item.name:<26}{_show(item.name, getattr(settings, item.name))}")
    for room in settings.rooms:
        lines.append("")
        lines.append(f'[room "{room.name}"]')
        for item in fields(RoomPolicy):
            if item.name == "name":
                continue
            value = getattr(room, item.name)
            if isinstance(value, Bypass):
                for sub in fields(Bypass):
                    shown = getattr(value, sub.name)
                    text = MASK if sub.name == "secret" and shown else _show(sub.name, shown)
                    lines.append(f"  {'bypass.' + sub.name:<26}{text}")
                continue
            if item.name == "template" and value is None:
                value = "(built-in)"
            lines.append(f"  {item.name:<26}{_show(item.name, value)}")
    return "\n".join(lines)


def _given(ctx: click.Context, params: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the flags typed on the command line: ``load_settings`` reads the environment
    itself (with precise messages), and must rank it below real flags."""
    return {
        name: value
        for name, value in params.items()
        if value is not None and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }


def _load(
    ctx: click.Context,
    config: str | None,
    flags: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    require_upstream: bool = False,
) -> Settings:
    config_file = (
        config if ctx.get_parameter_source("config") is ParameterSource.COMMANDLINE else None
    )
    try:
        return load_settings(
            config_file,
            env=os.environ if env is None else env,
            flags=flags,
            require_upstream=require_upstream,
        )
    except ConfigError as exc:
        _fail(exc.problems)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="waitroom-proxy")
def main() -> None:
    """waitroom-proxy: a fair virtual waiting room in front of a site that must not be overrun.

    Configuration: a TOML file (--config), WAITROOM_* environment variables and flags; flags win
    over the environment, which wins over the file. See examples/waitroom.toml.
    """


@main.command("check-config")
@click.argument("config", metavar="FILE")
@click.option(
    "--ignore-env",
    is_flag=True,
    help="Check the file alone, ignoring WAITROOM_* environment variables.",
)
def check_config(config: str, ignore_env: bool) -> None:
    """Validate FILE (with the environment, as `serve` would) and print the resolved rooms.

    Exit status 0 if valid; 2 with one problem per line on stderr otherwise.
    """
    env: Mapping[str, str] = {} if ignore_env else dict(os.environ)
    env = {key: value for key, value in env.items() if key != "WAITROOM_CONFIG"}
    try:
        settings = load_settings(config, env=env, flags={})
    except ConfigError as exc:
        _fail(exc.problems)
    click.echo(format_settings(settings))
    count = len(settings.rooms)
    click.echo(f"\n{config}: OK, {count} room{'s' if count != 1 else ''}")
    # The same words `serve` logs at start (config_warnings is their one source).
    for warning in config_warnings(settings):
        click.echo(f"warning: {warning}", err=True)
    note = room_coverage(settings)
    if note:
        click.echo(f"note: {note}", err=True)


_SERVER_DEFAULTS = Settings(rooms=())


def _flag(key: str, metavar: str, help: str, *, short: str | None = None) -> Callable[[_F], _F]:
    """The option of a settings key: its flag, its environment variable and the default shown
    come from the schema. Values stay text: the loader parses them, so flags and env get the
    same messages."""
    default = getattr(_SERVER_DEFAULTS, key, None)
    shown = f" [{default}]" if default not in (None, ()) else ""
    decls = [flag_label(key), *([short] if short else []), key]
    return click.option(
        *decls,
        envvar=f"{ENV_PREFIX}{key.upper()}",
        show_envvar=True,
        default=None,
        metavar=metavar,
        help=help + shown,
    )


@main.command()
@_flag("config", "FILE", "TOML config file.", short="-c")
@_flag("upstream", "URL", "Origin base URL.")
@_flag(
    "capacity",
    "N",
    "One-room quick start: max concurrent visitors (or the capacity of the file's single room).",
)
@_flag("admit_rate", "N", "Max admissions per minute (0 = capacity only).")
@_flag(
    "upstream_ca_file",
    "FILE",
    "PEM CA certificates an https:// upstream must chain to (an internal CA).",
)
@_flag("host", "HOST", "Listen address.")
@_flag("port", "PORT", "Listen port.")
@_flag("admin_port", "PORT", "Admin API port (needs WAITROOM_ADMIN_TOKEN).")
@_flag("workers", "N", "Worker processes.")
@_flag(
    "store_url",
    "URL",
    "Store: redis://, rediss://, unix://, redis+cluster://h:p,h:p/0 or "
    "redis+sentinel://h:p,h:p/SERVICE/0 (default: in-process).",
)
@_flag("nats_url", "URLS", "NATS URL for events, or a cluster's URLs separated by commas.")
@_flag(
    "nats_stream_replicas",
    "N",
    "Replicas of the event streams the proxy creates (1-5; 3 on a NATS cluster).",
)
@_flag("log_level", "LEVEL", ", ".join(LOG_LEVELS[:-1]) + f" or {LOG_LEVELS[-1]}.")
@click.pass_context
def serve(ctx: click.Context, /, config: str | None, **params: Any) -> None:
    """Run the proxy in front of --upstream (or, without it, forward-auth mode for a load
    balancer: GET /_waitroom/auth).

    Quick start: waitroom-proxy serve --upstream http://127.0.0.1:8000 --capacity 100
    """
    flags = _given(ctx, params)
    settings = _load(ctx, config, flags)
    # With --workers N, uvicorn's worker processes rebuild the settings from the environment
    # (server.run.worker_app): hand them the flags through it so every worker sees the same
    # configuration as this check did. Flags outrank env, so this changes nothing here.
    for key, value in flags.items():
        os.environ[f"WAITROOM_{key.upper()}"] = str(value)
    if ctx.get_parameter_source("config") is ParameterSource.COMMANDLINE and config:
        os.environ["WAITROOM_CONFIG"] = config
    from waitroom_proxy import server  # lazy: the server stack is heavy

    # Ctrl-C: uvicorn has already shut down gracefully and re-raises SIGINT; without this,
    # click prints "Aborted!" and exits 1.
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run(settings)
    except ListenError as exc:
        click.echo(str(exc), err=True)
        sys.exit(LISTEN_ERROR_EXIT)


@main.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    envvar="WAITROOM_PORT",
    show_envvar=True,
    help="Port of the demo, the one port it needs (its toy origin takes a free loopback port).",
)
def demo(port: int) -> None:
    """Run a self-contained demo: a tiny origin behind a small waiting room.

    Each visitor needs its own cookies: open the page in private windows or other browsers.
    """
    from waitroom_proxy.demo import run_demo  # lazy

    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_demo(port=port)
    except ListenError as exc:
        click.echo(str(exc), err=True)
        sys.exit(LISTEN_ERROR_EXIT)


@main.group()
def events() -> None:
    """Work with the event stream (NATS JetStream)."""


@events.command()
@click.option(
    "--room",
    default=None,
    envvar="WAITROOM_ROOM",
    show_envvar=True,
    metavar="NAME",
    help="Only this room's events (default: every room and system events).",
)
@click.option(
    "--nats-url",
    default=None,
    envvar="WAITROOM_NATS_URL",
    show_envvar=True,
    metavar="URL",
    help="NATS URL, or a cluster's URLs separated by commas.",
)
def tail(room: str | None, nats_url: str | None) -> None:
    """Print events as they are published, until interrupted."""
    problems: list[str] = []
    if not nats_url:
        problems.append("--nats-url: required: pass --nats-url URL or set WAITROOM_NATS_URL")
    else:
        # The loader owns URL rules; a quick-start room keeps it from asking for one.
        try:
            load_settings(None, env={}, flags={"nats_url": nats_url, "capacity": 1})
        except ConfigError as exc:
            problems.extend(exc.problems)
    if room is not None and not ROOM_NAME_RE.fullmatch(room):
        problems.append(f'--room: must be 1-64 characters of a-z, 0-9, _ and -, got "{room}"')
    if problems:
        _fail(problems)
    from waitroom_proxy.cli.event_tail import tail as tail_events  # lazy: the NATS client

    assert nats_url is not None  # checked above: a missing URL is one of the problems
    with contextlib.suppress(KeyboardInterrupt):
        tail_events(nats_url, room)
