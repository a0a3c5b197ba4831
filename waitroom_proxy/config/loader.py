"""``load_settings``: TOML file + ``WAITROOM_*`` environment + CLI flags → ``Settings``.

Precedence, highest first: CLI flags, environment, the TOML file, defaults. Each value is
checked where it is given, with its field's type from the schema, and labelled by its source;
so a bad file value and a bad environment value are both reported, each naming the place to
fix, and nothing is returned half-configured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from waitroom_proxy.config.problems import Problems, show, unknown_key
from waitroom_proxy.config.schedule_value import schedule_problems
from waitroom_proxy.config.schema import (
    BYPASS_KEYS,
    PLANNED_ROOM_KEYS,
    REQUIRED_ROOM_KEYS,
    ROOM_KEYS,
    SERVER_KEYS,
    BypassModel,
    RoomModel,
    Settings,
    expected,
    field_adapter,
    field_kind,
    room_rules,
    to_bypass,
    to_policy,
)
from waitroom_proxy.config.sources import (
    ENV_PREFIX,
    ENV_VARS,
    QUICK_START_KEYS,
    flag_label,
    parse_text,
    read_toml,
)
from waitroom_proxy.errors import ConfigError

QUICK_START_ROOM = "default"
_MISSING: Any = object()
Chosen = dict[str, tuple[Any, str]]
"""Key → (checked value, label of the source that gave it)."""


def check(
    problems: Problems, label: str, schema: type[Any], key: str, value: Any, base: Path
) -> Any:
    """One value through its field's check; refused: its problems recorded, ``_MISSING``."""
    try:
        return field_adapter(schema, key).validate_python(value, context={"base": base})
    except ValidationError as exc:
        problems.add_error(label, exc)
        return _MISSING


def _layer(
    problems: Problems,
    label: str,
    schema: type[Any],
    key: str,
    raw: Any,
    base: Path,
    chosen: Chosen,
) -> None:
    """Check one value from one source; if good it overrides lower sources."""
    kind = field_kind(schema, key)
    value = parse_text(kind, raw) if isinstance(raw, str) and kind != "str" else raw
    checked = check(problems, label, schema, key, value, base)
    if checked is _MISSING:
        problems.refused.add(key)
    else:
        chosen[key] = (checked, label)


def load_settings(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    *,
    require_upstream: bool = False,
) -> Settings:
    """Build and validate the process settings.

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
    problems = Problems()
    cwd = Path.cwd()
    chosen: Chosen = {}
    quick: Chosen = {}
    rooms: list[tuple[int, dict[str, Any], bool]] = []
    file_ok = True
    room_count = 0

    if config_file is None:
        config_file = (env.get(f"{ENV_PREFIX}CONFIG") or "").strip() or None
    if config_file is not None:
        path = Path(config_file).expanduser()
        document = read_toml(path, config_file, problems)
        file_ok = document is not None
        if document is not None:
            room_count = _read_document(document, path.resolve().parent, problems, chosen, rooms)

    for var, key in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or not raw.strip() or key == "config":
            continue
        if key in QUICK_START_KEYS:
            _layer(problems, var, RoomModel, key, raw, cwd, quick)
        else:
            _layer(problems, var, Settings, key, raw, cwd, chosen)

    for key, raw in flags.items():
        label = flag_label(key)
        if raw is None:
            continue
        if key in QUICK_START_KEYS:
            _layer(problems, label, RoomModel, key, raw, cwd, quick)
        elif key in SERVER_KEYS:
            _layer(problems, label, Settings, key, raw, cwd, chosen)
        else:
            problems.lines.append(unknown_key(label, key, [*SERVER_KEYS, *QUICK_START_KEYS]))

    _check_unique(rooms, problems)
    good = [(index, values) for index, values, ok in rooms if ok]
    _apply_quick_start(good, room_count, file_ok, quick, problems)
    _check_server(chosen, problems, require_upstream=require_upstream)

    if problems.lines:
        raise ConfigError(problems.lines)
    return Settings(
        rooms=tuple(to_policy(values) for _, values in good),
        **{key: value for key, (value, _) in chosen.items()},
    )


def _read_document(
    document: dict[str, Any],
    base: Path,
    problems: Problems,
    chosen: Chosen,
    rooms: list[tuple[int, dict[str, Any], bool]],
) -> int:
    """Check the file's ``[server]`` and ``[[rooms]]`` tables; returns how many rooms."""
    room_count = 0
    for key, value in document.items():
        if key == "server":
            if not isinstance(value, dict):
                problems.add("server", f"must be a table ([server]), got {show(value)}")
                continue
            for name, raw in value.items():
                if name not in SERVER_KEYS:
                    problems.lines.append(unknown_key(f"server.{name}", name, SERVER_KEYS))
                    continue
                _layer(problems, f"server.{name}", Settings, name, raw, base, chosen)
        elif key == "rooms":
            if not isinstance(value, list):
                problems.add("rooms", f"must be an array of tables ([[rooms]]), got {show(value)}")
                continue
            room_count = len(value)
            for index, table in enumerate(value):
                room = _room_from_table(index, table, base, problems)
                if room is not None:
                    rooms.append((index, *room))
        elif key in SERVER_KEYS:
            problems.add(key, "unknown key (process settings go in the [server] table)")
        elif key in ROOM_KEYS:
            problems.add(key, "unknown key (room settings go in a [[rooms]] table)")
        else:
            problems.lines.append(unknown_key(key, key, ("server", "rooms")))
    return room_count


def _room_from_table(
    index: int, table: Any, base: Path, problems: Problems
) -> tuple[dict[str, Any], bool] | None:
    """Check one ``[[rooms]]`` table.

    Returns:
        ``None`` if it is not a table; else the room values (refused ones as ``_MISSING``),
        and whether all of them passed (a bad room still takes part in the duplicate-name
        check, so that problem is reported in the same run).
    """
    where = f"rooms[{index}]"
    if not isinstance(table, dict):
        problems.add(where, f"must be a table ([[rooms]]), got {show(table)}")
        return None
    values, failed = _check_table(
        where, table, RoomModel, base, problems, planned=PLANNED_ROOM_KEYS, nested=_room_sub_table
    )
    for key in REQUIRED_ROOM_KEYS:
        if key not in table:
            problems.add(f"{where}.{key}", f"required ({expected(RoomModel, key)})")
            failed = True
    passed = {key: (None if value is _MISSING else value) for key, value in values.items()}
    for key, message in room_rules(passed):
        problems.add(f"{where}.{key}", message)
    return values, not failed


def _room_sub_table(path: str, raw: Any, base: Path, problems: Problems) -> Any:
    """A room's sub-table: ``schedule`` (one problem per line) or ``bypass``."""
    if path.endswith(".schedule"):
        schedule = schedule_problems(path, raw, problems)
        return _MISSING if schedule is None else schedule
    return _bypass_table(path, raw, base, problems)


def _bypass_table(path: str, raw: Any, base: Path, problems: Problems) -> Any:
    if not isinstance(raw, dict):
        problems.add(path, f"must be a table ({', '.join(BYPASS_KEYS)}), got {show(raw)}")
        return _MISSING
    values, failed = _check_table(path, raw, BypassModel, base, problems)
    return _MISSING if failed else to_bypass(values)


def _check_table(
    where: str,
    table: dict[str, Any],
    schema: type[BaseModel],
    base: Path,
    problems: Problems,
    *,
    planned: Mapping[str, str] | None = None,
    nested: Callable[[str, Any, Path, Problems], Any] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Check every key of a table with its schema: the values (refused ones ``_MISSING``)
    and whether any key failed. ``nested`` checks the key that holds a sub-table."""
    keys = tuple(schema.model_fields)
    values: dict[str, Any] = {}
    failed = False
    for key, raw in table.items():
        path = f"{where}.{key}"
        if planned is not None and key in planned:
            problems.add(path, planned[key])
            failed = True
        elif key not in keys:
            problems.lines.append(unknown_key(path, key, keys))
            failed = True
        else:
            default = schema.model_fields[key].default
            sub = nested is not None and (isinstance(default, BaseModel) or key == "schedule")
            checked = (
                nested(path, raw, base, problems)
                if sub and nested is not None
                else check(problems, path, schema, key, raw, base)
            )
            failed |= checked is _MISSING
            values[key] = checked
    return values, failed


def _check_unique(rooms: list[tuple[int, dict[str, Any], bool]], problems: Problems) -> None:
    names: dict[str, int] = {}
    patterns: dict[str, tuple[int, str]] = {}
    default_match = RoomModel.model_fields["match"].default
    for index, values, _ in rooms:
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
        match = values.get("match", default_match)
        for position, pattern in enumerate(() if match is _MISSING else match):
            if pattern in patterns and patterns[pattern][1] != name:
                other_index, other = patterns[pattern]
                problems.add(
                    f"rooms[{index}].match[{position}]",
                    f'pattern "{pattern}" is already used by room "{other}" (rooms[{other_index}])',
                )
            else:
                patterns.setdefault(pattern, (index, name))


def _apply_quick_start(
    rooms: list[tuple[int, dict[str, Any]]],
    room_count: int,
    file_ok: bool,
    quick: Chosen,
    problems: Problems,
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


_SETTINGS_DEFAULTS = Settings(rooms=())


def _check_server(chosen: Chosen, problems: Problems, *, require_upstream: bool) -> None:
    """Cross-field rules of the process settings, each on the source of the value to change."""

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
