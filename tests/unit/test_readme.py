"""The README's configuration reference stays in step with the settings code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def table_keys(marker: str) -> set[str]:
    start = README.index(f"<!-- {marker}")
    lines = README[start:].splitlines()[1:]
    keys: set[str] = set()
    for line in lines:
        if not line.startswith("|"):
            if keys:
                break
            continue
        first = line.split("|")[1]
        keys.update(re.findall(r"`([a-z_]+)`", first))
    return keys


def test_server_keys_documented() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)} - {"rooms"}
    assert table_keys("server-keys") == fields


def test_room_keys_documented() -> None:
    fields = {f.name for f in dataclasses.fields(RoomPolicy)}
    assert table_keys("room-keys") == fields


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    assert "waitroom-proxy demo" in blocks[0]
    assert blocks[1].strip() == "scripts/test"
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci
