"""The one URL redactor: store, NATS and upstream URLs may carry passwords, and none of them
may reach a log line, a ``repr`` or a configuration message.

Pure text work, on purpose: a refused URL must be shown masked too, and a URL that does not
parse still has to lose its password.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_url"]

MASK = "***"
"""What stands in for a hidden value, everywhere it is shown."""

_NEXT_URL = re.compile(r",(?=\s*[A-Za-z][A-Za-z0-9+.-]*://)")
"""A comma that starts another URL (a comma inside a password or a node list does not)."""
_PASSWORD = re.compile(r"(://[^/?#:@]*:)[^/?#]*@")
_USERINFO = re.compile(r"://[^/?#]+@")
_SENTINEL_PASSWORD = re.compile(r"(sentinel_password=)[^&#]*")


def redact_url(text: str) -> str:
    """Hide every password in a URL, or in several separated by commas.

    ``scheme://user:password@host`` keeps the user and loses the password;
    ``scheme://secret@host`` loses the user information whole (a token or a password alone);
    ``sentinel_password=`` options are masked too. Text without ``://`` is returned as it is.

    Args:
        text: A URL, or a comma-separated list of them (a Redis Cluster's nodes, a NATS
            cluster's servers); it need not parse.

    Returns:
        The text with each secret replaced by ``***``.
    """
    if "://" not in text:
        return text
    return ",".join(_redact_one(part) for part in _NEXT_URL.split(text))


def _redact_one(text: str) -> str:
    masked, found = _PASSWORD.subn(rf"\1{MASK}@", text, count=1)
    if not found:
        masked = _USERINFO.sub(f"://{MASK}@", text, count=1)
    return _SENTINEL_PASSWORD.sub(rf"\1{MASK}", masked)
