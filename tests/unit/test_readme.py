"""The README's configuration reference stays in step with the settings schema: every key,
and every default the tables show."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from waitroom_proxy.config import ROOM_KEYS, SERVER_KEYS, RoomModel, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
UNSET = {"none", "random", "no limit", "built-in"}
"""How the tables spell a default of "not set"."""


def table_rows(marker: str) -> list[tuple[list[str], str]]:
    """(keys of the first column, the last column) of each row of a marked table."""
    start = README.index(f"<!-- {marker}")
    rows: list[tuple[list[str], str]] = []
    for line in README[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        keys = re.findall(r"`([a-z_]+)`", cells[0])
        if keys:
            rows.append((keys, cells[-1]))
    return rows


def table_keys(marker: str) -> set[str]:
    return {key for keys, _ in table_rows(marker) for key in keys}


def shown(value: Any) -> str:
    """A default as the tables write it (TOML-like)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(getattr(value, "value", value))


def check_defaults(marker: str, defaults: dict[str, Any], required: set[str]) -> None:
    for keys, cell in table_rows(marker):
        parts = [part.strip() for part in cell.split(", ")] if len(keys) > 1 else [cell]
        assert len(parts) == len(keys), (keys, cell)
        for key, part in zip(keys, parts, strict=True):
            value = re.fullmatch(r"`([^`]*)`", part)
            if value is not None:
                assert value[1] == shown(defaults[key]), (key, part, defaults[key])
            elif key in required:
                assert part == "required", (key, part)
            elif key != "bypass":  # a sub-table: its keys are listed in the meaning column
                assert part in UNSET and defaults[key] in (None, ()), (key, part)


def test_server_keys_documented() -> None:
    assert table_keys("server-keys") == set(SERVER_KEYS)


def test_room_keys_documented() -> None:
    assert table_keys("room-keys") == set(ROOM_KEYS)


def test_documented_defaults_are_the_schema_defaults() -> None:
    server = Settings(rooms=())
    check_defaults("server-keys", {key: getattr(server, key) for key in SERVER_KEYS}, set())
    fields = RoomModel.model_fields
    check_defaults(
        "room-keys",
        {key: info.default for key, info in fields.items() if not info.is_required()},
        {key for key, info in fields.items() if info.is_required()},
    )


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    assert "waitroom-proxy demo" in blocks[0]
    assert blocks[1].strip() == "scripts/test"
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci
