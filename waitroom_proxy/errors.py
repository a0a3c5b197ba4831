"""The project's exceptions, as one tree.

WaitroomError
├── ConfigError        bad configuration: carries every problem found, each with its key path
├── ListenError        a listener could not be opened (the message names host and port)
├── StoreError         the Redis-protocol store failed or timed out (callers apply fail_mode)
└── TokenError         a ticket or session token is malformed, forged, expired or misused
"""

from __future__ import annotations

from collections.abc import Iterable


class WaitroomError(Exception):
    """Base class of every error raised on purpose by waitroom-proxy."""


class ConfigError(WaitroomError):
    """Configuration is invalid. ``problems`` lists one message per problem, each naming its key.

    Example message: ``rooms[1].capacity: must be >= 1, got 0``.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(WaitroomError):
    """The store could not answer (connection refused, timeout, script error).

    The one error every store adapter raises for an infrastructure failure; the gatekeeper turns
    it into the room's ``fail_mode``.
    """


class TokenError(WaitroomError):
    """A token could not be accepted. The message says why; it never contains the token."""


class ListenError(WaitroomError):
    """A listener could not be opened (address in use, not available here, unknown host).

    The message names the address and the settings it came from, e.g. ``cannot listen on
    [::1]:8080 (host, port): address already in use``.
    """
