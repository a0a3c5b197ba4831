"""A small map bounded by entries and by bytes. Pure; O(1) per operation.

The caches of verified tokens are filled from what visitors send, so their size must not be
up to visitors: each is bounded by a number of entries and by an estimate of the bytes its keys
and values hold, and evicts the oldest entry first (``popitem(last=False)`` on an
``OrderedDict``: constant time, never a rebuild of the whole map). A lookup is one dict lookup
(no reordering: it is on the hot path of every admitted request); an evicted token that comes
back is verified again, once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

ENTRY_OVERHEAD = 320
"""Bytes an entry costs beyond its key text: the dict slot, the linked-list node, the stored
pair, the value object (a small frozen dataclass and its strings). Measured with
``tracemalloc`` on CPython 3.11 with ``Ticket`` values: ~320."""


class BoundedCache(Generic[K, V]):
    """A map holding at most ``max_entries`` entries and about ``max_bytes`` bytes, oldest
    out first."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a cache needs room for at least one entry")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.bytes = 0
        """The estimated size of what the cache holds."""

    def __repr__(self) -> str:
        return f"BoundedCache(entries={len(self._data)}, bytes={self.bytes})"

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        return None if item is None else item[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Store ``value`` under ``key``; ``size`` is the key's length in bytes (or an estimate
        of what the entry holds beyond ``ENTRY_OVERHEAD``)."""
        cost = size + ENTRY_OVERHEAD
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if cost > self.max_bytes:
            return
        self._data[key] = (value, cost)
        self.bytes += cost
        while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, dropped) = self._data.popitem(last=False)
            self.bytes -= dropped

    def pop(self, key: K) -> V | None:
        item = self._data.pop(key, None)
        if item is None:
            return None
        self.bytes -= item[1]
        return item[0]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)
