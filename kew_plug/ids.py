"""Task ids: a random 64-bit prefix per process and a counter, 24 hex characters in all.

As unique as 96 random bits for any practical purpose (two processes collide only if their
random prefixes do), without a getrandom() call per task. A forked child draws a new prefix,
so it never repeats its parent's ids."""

from __future__ import annotations

import itertools
import os
import secrets
import threading

_COUNTER_LIMIT = 1 << 32


class _Ids:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reseed()

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def next(self) -> str:
        n = next(self._counter)  # itertools.count is atomic under the GIL
        if n >= _COUNTER_LIMIT:
            with self._lock:
                self._reseed()
                n = next(self._counter)
        return f"{self._prefix}{n:08x}"


_ids = _Ids()
os.register_at_fork(after_in_child=_ids._reseed)


def new_task_id() -> str:
    return _ids.next()
