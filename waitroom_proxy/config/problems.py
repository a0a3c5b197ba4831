"""Configuration problems as people read them: ``key.path: message``, one line each.

Every value type of the schema refuses with :func:`refuse`, so pydantic collects the refusals
(each with its location) and this module turns them into today's lines: the key path the
operator wrote (``rooms[1].bypass.paths[0]``, ``WAITROOM_PORT``, ``--port``), what was
expected and what was given (secrets never shown), and "did you mean" for unknown keys.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

__all__ = [
    "Problems",
    "error_messages",
    "kind_of",
    "messages",
    "refuse",
    "show",
    "toml_error",
    "unknown_key",
]

REFUSED = "refused"
"""The pydantic error type of every refusal written by this package's value types."""


def refuse(message: str) -> NoReturn:
    """Refuse a value with a message that is shown as it is (after the key path)."""
    raise PydanticCustomError(REFUSED, "{message}", {"message": message})


def show(value: Any) -> str:
    """Render a refused value for a message, TOML-style and short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        text = repr(value)  # a number of thousands of digits is shown by its head
        return text if len(text) <= 80 else f"{text[:40]}... ({len(text)} digits)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        try:
            text = json.dumps(list(value), ensure_ascii=False, default=str)
        except (RecursionError, ValueError):  # nested too deeply to render: not shown
            return "an array"
        return text if len(text) <= 80 else "an array"
    return str(value)


def kind_of(value: Any) -> str:
    """Name the type of a value without showing it (for secrets)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def unknown_key(path: str, key: str, allowed: Iterable[str]) -> str:
    """``path: unknown key (did you mean "x"?)``, the hint only when one key is close."""
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"{path}: unknown key{hint}"


def location(loc: Sequence[int | str]) -> str:
    """A pydantic location as a key path suffix: ``("paths", 0)`` → ``.paths[0]``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def messages(error: ValidationError) -> list[tuple[str, str]]:
    """``(location suffix, message)`` for each refusal in a validation error, in order."""
    return error_messages(error.errors(include_url=False, include_input=False))


def error_messages(errors: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(location suffix, message)`` for pydantic error dicts (also FastAPI's, for request
    parameters).

    Refusals carry their own message. A pydantic error of another kind can only come from a
    constraint the value types already check (kept for the JSON schema) or from a request
    parameter FastAPI checks itself; its own message is used, so nothing is ever lost.
    """
    out: list[tuple[str, str]] = []
    for item in errors:
        if item["type"] == REFUSED:
            message = str(item["ctx"]["message"])
        elif item["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = str(item["msg"])
            message = message[:1].lower() + message[1:]
        out.append((location(item["loc"]), message))
    return out


class Problems:
    """Collects ``key.path: message`` lines, in the order they are found."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.refused: set[str] = set()
        """Keys some source gave a refused value for (so "missing" is not reported too)."""

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")

    def add_error(self, path: str, error: ValidationError) -> None:
        for suffix, message in messages(error):
            self.add(path + suffix, message)


_TOML_AT_RE = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def toml_error(message: str, text: str) -> str:
    """A ``tomllib`` error as ``invalid TOML at line L, column C: what``."""
    found = _TOML_AT_RE.match(message)
    if found:
        return (
            f"invalid TOML at line {found['line']}, column {found['col']}: "
            f"{found['msg'][:1].lower()}{found['msg'][1:]}"
        )
    if message.endswith("(at end of document)"):
        lines = text.splitlines() or [""]
        msg = message.removesuffix("(at end of document)").strip()
        return (
            f"invalid TOML at end of file (line {len(lines)}, column {len(lines[-1]) + 1}): "
            f"{msg[:1].lower()}{msg[1:]}"
        )
    return f"invalid TOML: {message}"
