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
        # One tuple, swapped whole: a thread never pairs a new prefix with an old count.
        self._state = (secrets.token_hex(8), itertools.count())

    def next(self) -> str:
        prefix, counter = self._state
        n = next(counter)  # itertools.count is atomic under the GIL
        while n >= _COUNTER_LIMIT:
            with self._lock:
                if self._state[1] is counter:
                    self._reseed()
            prefix, counter = self._state
            n = next(counter)
        return f"{prefix}{n:08x}"


_ids = _Ids()
os.register_at_fork(after_in_child=_ids._reseed)


def new_task_id() -> str:
    return _ids.next()
