"""Configuration keys: the key tables stay in step with the dataclasses, and the example file
uses them all."""

from __future__ import annotations

import dataclasses

from tests.unit.config_helpers import EXAMPLE
from waitroom_proxy.config import (
    BYPASS_KEYS,
    ENV_VARS,
    ROOM_KEYS,
    SERVER_KEYS,
    Settings,
    load_settings,
)
from waitroom_proxy.domain.policy import Bypass, FailMode, Mode, RoomPolicy

# --- the key tables stay in step with the dataclasses ----------------------------------------


def test_every_settings_field_is_a_server_key() -> None:
    names = {f.name for f in dataclasses.fields(Settings)} - {"rooms"}
    assert set(SERVER_KEYS) == names


def test_every_room_policy_field_is_a_room_key() -> None:
    assert set(ROOM_KEYS) == {f.name for f in dataclasses.fields(RoomPolicy)}
    assert set(BYPASS_KEYS) == {f.name for f in dataclasses.fields(Bypass)}


def test_every_server_key_has_an_env_var() -> None:
    for key in SERVER_KEYS:
        assert ENV_VARS[f"WAITROOM_{key.upper()}"] == key
    for extra in ("WAITROOM_CONFIG", "WAITROOM_CAPACITY", "WAITROOM_ADMIT_RATE"):
        assert extra in ENV_VARS


# --- the example file -------------------------------------------------------------------------


def test_example_file_is_valid_and_complete() -> None:
    settings = load_settings(str(EXAMPLE), env={})
    sale, lottery = settings.rooms
    assert sale.name == "ticket-sale"
    assert sale.capacity == 500 and sale.admit_rate == 300 and sale.mode is Mode.FIFO
    assert "/static/" in sale.bypass.paths and "/robots.txt" in sale.bypass.paths
    assert sale.bypass.methods == ("OPTIONS",)
    assert lottery.mode is Mode.RANDOM and lottery.fail_mode is FailMode.CLOSED
    assert lottery.page_status == 503 and lottery.session_renewal is False
    assert settings.upstream == "http://127.0.0.1:8000"
    # Every room key is written (set or commented) in the example.
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in (*ROOM_KEYS, *SERVER_KEYS, *BYPASS_KEYS):
        assert f"{key} =" in text or f"[rooms.{key}]" in text, key
