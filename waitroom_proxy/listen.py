"""Listening sockets, opened before anything is served or printed.

``serve`` and ``demo`` bind every listener first, so a port in use or an address that is not
available ends the command with one line naming the address (``cannot listen on
[::1]:8080 (host, port): address already in use``) instead of a traceback after a banner. The
sockets are then handed to uvicorn (``Server.serve(sockets=...)``, or to every worker process
with ``--workers N``).
"""

from __future__ import annotations

import errno
import socket

from waitroom_proxy.errors import ListenError

__all__ = ["bind_listener", "format_address"]

BACKLOG = 2048
"""uvicorn's default listen backlog."""


def format_address(host: str, port: int) -> str:
    """``host:port`` as in a URL: ``[::1]:8080`` for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_listener(host: str, port: int, source: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, inheritable by worker processes.

    Args:
        host: an IP address (``::1``, not ``[::1]``) or a host name that resolves to one.
        port: 1-65535 (0 picks a free port, for the demo's origin and for tests).
        source: the settings the address came from, named in the error (``"host, port"``).

    Raises:
        ListenError: the address cannot be used; the message names it and ``source``.
    """
    where = format_address(host, port)
    try:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(
            f"cannot listen on {where} ({source}): unknown host ({exc.strerror})"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = ": another process listens there; stop it or choose another port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = ": no network interface of this machine has that address"
        elif exc.errno == errno.EACCES:
            hint = ": ports below 1024 need privileges"
        raise ListenError(f"cannot listen on {where} ({source}): {reason}{hint}") from None
    sock.set_inheritable(True)
    return sock
