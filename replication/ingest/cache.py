"""A tiny per-process cache whose entries expire (pure: no Django, no I/O).

The ingest API reads the same few rows (ingest keys, bucket pairs) on every request; holding
them for a few seconds takes two queries off each post. Entries are never shared between
processes, so each process sees a change within ``seconds``; callers also ``clear`` on the
changes they hear about.
"""

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ExpiringCache(Generic[V]):
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, V]] = {}

    def get(self, name: Hashable, load: Callable[[], V | None]) -> V | None:
        """The cached value for ``name``, or ``load()`` when absent or expired.

        None is never cached: a miss (an unknown key id) must not fill memory or hide a row
        created a moment later.
        """
        now = self.clock()
        entry = self._entries.get(name)
        if entry is not None and now - entry[0] < self.seconds:
            return entry[1]
        value = load()
        if value is None:
            self._entries.pop(name, None)
        else:
            self._entries[name] = (now, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
