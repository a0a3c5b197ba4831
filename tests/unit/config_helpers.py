"""Shared by the configuration tests: the example file, a config-file writer and the problems a load raises."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from waitroom_proxy.config import load_settings
from waitroom_proxy.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "waitroom.toml"

SECRET = "s" * 32


def write(tmp_path: Path, text: str, name: str = "waitroom.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def problems_of(*args: object, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


ONE_ROOM = """
    [[rooms]]
    name = "sale"
    capacity = 10
"""
