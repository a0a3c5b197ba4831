"""Adapters: implementations of ``waitroom_proxy.ports``."""

from __future__ import annotations

from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore

__all__ = ["MemoryStore", "RedisStore"]
