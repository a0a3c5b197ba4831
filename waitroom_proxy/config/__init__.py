"""Process settings: TOML file + ``WAITROOM_*`` environment + CLI flags, checked against one
schema.

Precedence, highest first: CLI flags, environment, the TOML file, defaults.

==================  ==========================================================================
module              its job
==================  ==========================================================================
``schema``          the schema, written once: ``Settings``, ``RoomModel``, ``BypassModel``,
                    the runtime-mutable room fields, the cross-field room rules
``values``          value types: integers, durations, choices, secrets, arrays
``network``         value types that name things: URLs, hosts, networks, files, patterns
``problems``        refusals and how they read: key path, expected, got, "did you mean"
``sources``         reading the TOML file, environment and flag text
``loader``          ``load_settings``: every source checked with the schema, every problem
``notes``           warnings and notes about settings that are legal but probably not meant
==================  ==========================================================================
"""

from __future__ import annotations

from waitroom_proxy.config.loader import load_settings
from waitroom_proxy.config.notes import config_warnings, room_coverage
from waitroom_proxy.config.schema import (
    BYPASS_KEYS,
    MUTABLE_FIELDS,
    ROOM_KEYS,
    SERVER_KEYS,
    BypassModel,
    RoomModel,
    Settings,
)
from waitroom_proxy.config.sources import ENV_VARS

__all__ = [
    "BYPASS_KEYS",
    "ENV_VARS",
    "MUTABLE_FIELDS",
    "ROOM_KEYS",
    "SERVER_KEYS",
    "BypassModel",
    "RoomModel",
    "Settings",
    "config_warnings",
    "load_settings",
    "room_coverage",
]
