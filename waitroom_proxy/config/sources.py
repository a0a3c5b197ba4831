"""Where settings come from: the TOML file, ``WAITROOM_*`` environment variables and CLI
flags, each read into raw values labelled as the operator wrote them.

A source only reads; the loader checks every value with the schema, labelled by its source
(``server.port``, ``WAITROOM_PORT``, ``--port``), so a problem names the place to fix it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from waitroom_proxy.config.problems import Problems, toml_error
from waitroom_proxy.config.schema import SERVER_KEYS

ENV_PREFIX = "WAITROOM_"
MAX_CONFIG_BYTES = 4 * 2**20
"""A config file is a few kilobytes; a larger one is a mistake, read no further."""
QUICK_START_KEYS = ("capacity", "admit_rate")
"""Room keys that the environment and flags may set, for a one-room quick start."""

ENV_VARS: dict[str, str] = {
    **{f"{ENV_PREFIX}{key.upper()}": key for key in SERVER_KEYS},
    f"{ENV_PREFIX}CONFIG": "config",
    **{f"{ENV_PREFIX}{key.upper()}": key for key in QUICK_START_KEYS},
}
"""Every environment variable ``load_settings`` reads → the key it sets."""


def flag_label(key: str) -> str:
    """The command-line spelling of a key: ``admin_port`` → ``--admin-port``."""
    return "--" + key.replace("_", "-")


def parse_text(kind: str, text: str) -> Any:
    """Turn environment or flag text into a typed value (``kind`` from the field's type).

    Unparsable text is returned as it is, for the field's check to refuse with its usual
    message (which shows the text).
    """
    text = text.strip()
    if kind == "int":
        try:
            return int(text, 10)
        except ValueError:
            return text
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def read_toml(path: Path, shown: str, problems: Problems) -> dict[str, Any] | None:
    """The TOML document, or None after recording why it cannot be read (no such file, not
    UTF-8, a syntax error with its line and column)."""
    if path.exists() and not path.is_file() and not path.is_dir():
        # A device or a pipe: reading it could block, or never end (/dev/zero).
        problems.lines.append(f"{shown}: not a regular file")
        return None
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        problems.lines.append(f"{shown}: no such file")
        return None
    except IsADirectoryError:
        problems.lines.append(f"{shown}: is a directory, not a TOML file")
        return None
    except OSError as exc:
        problems.lines.append(f"{shown}: cannot read: {exc.strerror or exc}")
        return None
    if len(data) > MAX_CONFIG_BYTES:
        problems.lines.append(f"{shown}: larger than {MAX_CONFIG_BYTES // 2**20} MiB")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.lines.append(f"{shown}: not UTF-8 text (byte {exc.start})")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.lines.append(f"{shown}: {toml_error(str(exc), text)}")
        return None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        reason = str(exc).split(":", 1)[0]  # not Python's advice to raise the limit
        problems.lines.append(f"{shown}: invalid TOML: {reason[:1].lower()}{reason[1:]}")
        return None
    except RecursionError:  # arrays or inline tables nested deeper than the parser goes
        problems.lines.append(f"{shown}: invalid TOML: values nested too deeply")
        return None
