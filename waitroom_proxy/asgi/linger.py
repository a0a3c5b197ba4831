"""Lingering close for the hardened uvicorn protocols (``asgi.hardening``).

uvicorn closes the socket as soon as a ``Connection: close`` response is written, also when the
client is still sending a request body that nobody read: a 413 for a body past
``max_body_bytes``, a 408, an origin that answered early. The kernel then answers the client's
next bytes with a reset, and the client's next write fails: most clients (asyncio streams,
many HTTP libraries) then report "connection reset" and drop the response they had received
but not yet read. So, as nginx does (``lingering_close``), the connection half-closes after
the response (FIN), reads and drops whatever the client still sends, and closes once the
client has been silent for ``LINGER_SECONDS`` (or closed its side), at the latest after
``LINGER_MAX_SECONDS``. The protocols' own refusals of a request head (408, 431) end the
same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

LINGER_SECONDS = 2.0
"""A lingering close ends once the client sent nothing for this long (nginx: 5 s)."""
LINGER_MAX_SECONDS = 10.0
"""... and at the latest after this long, however much it still sends (nginx: 30 s)."""


class LingeringTransport(asyncio.Transport):
    """The connection's transport as uvicorn sees it: every call goes to the real one, except
    ``close()``, which the protocol may turn into a lingering close (``Lingering._close``)."""

    def __init__(self, real: asyncio.Transport, close: Callable[[], None]) -> None:
        super().__init__()
        self.real = real
        self.lingering = False
        """Set by a lingering close: closed for uvicorn, still reading (and dropping)."""
        self._close = close

    def close(self) -> None:
        self._close()

    def abort(self) -> None:
        self.real.abort()

    def is_closing(self) -> bool:
        return self.lingering or self.real.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.real.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.real.get_protocol()

    def is_reading(self) -> bool:
        return self.real.is_reading()

    def pause_reading(self) -> None:
        self.real.pause_reading()

    def resume_reading(self) -> None:
        self.real.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.real.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.real.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.real.get_write_buffer_limits()

    def write(self, data: Any) -> None:
        self.real.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.real.writelines(list_of_data)

    def write_eof(self) -> None:
        self.real.write_eof()

    def can_write_eof(self) -> bool:
        return self.real.can_write_eof()


class Lingering:
    """Mixin for a uvicorn protocol: the lingering close of its connection.

    The protocol hands uvicorn ``_wrap(transport)``; its ``data_received`` drops input while
    ``_refused`` and calls ``_dropped()``; its ``connection_lost`` calls ``_linger_stop()``.
    """

    loop: asyncio.AbstractEventLoop
    _refused: bool

    def _linger_init(self) -> None:
        self._refused = False
        self._wrapped: LingeringTransport | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._linger_last = 0.0
        self._linger_end = 0.0

    def _wrap(self, transport: asyncio.Transport) -> asyncio.Transport:
        """The transport to hand uvicorn: its ``close()`` goes through ``_close``."""
        self._wrapped = LingeringTransport(transport, self._close)
        return self._wrapped

    def _body_pending(self) -> bool:
        """True while the current request's body has not been received to its end."""
        return False

    def _close(self) -> None:
        """uvicorn closes: at once, unless the client may still be sending a request body."""
        wrapped = self._wrapped
        if wrapped is None or wrapped.real.is_closing():
            return
        if self._refused or not self._body_pending():
            wrapped.real.close()
            return
        self._linger_on()

    def _linger_on(self) -> None:
        """Half-close after what was written, drop further input, close when it stops."""
        wrapped = self._wrapped
        assert wrapped is not None
        real = wrapped.real
        self._refused = True
        if not real.can_write_eof():
            real.close()
            return
        wrapped.lingering = True  # closed, as far as uvicorn can tell
        real.write_eof()
        real.resume_reading()  # flow control may have paused reading: read, and drop
        now = self.loop.time()
        self._linger_last = now
        self._linger_end = now + LINGER_MAX_SECONDS
        self._linger = self.loop.call_later(LINGER_SECONDS, self._linger_check)

    def _dropped(self) -> None:
        """Input arrived while lingering (and was dropped)."""
        self._linger_last = self.loop.time()

    def _linger_check(self) -> None:
        wrapped = self._wrapped
        assert wrapped is not None
        now = self.loop.time()
        quiet_at = self._linger_last + LINGER_SECONDS
        if now >= quiet_at or now >= self._linger_end:
            self._linger = None
            wrapped.real.close()
            return
        self._linger = self.loop.call_at(min(quiet_at, self._linger_end), self._linger_check)

    def _linger_stop(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
