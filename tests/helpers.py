"""Test helpers: waiting for a condition with a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kew_plug import Queue, RetryPolicy, Worker

T = TypeVar("T")

# State shared with task bodies. Tasks defined in importable test modules travel by
# reference, so the worker (in this process) and the test see the same objects.
COUNTS: Counter[str] = Counter()
NOTES: defaultdict[str, list[Any]] = defaultdict(list)


def bump(key: str) -> int:
    COUNTS[key] += 1
    return COUNTS[key]


def note(key: str, value: Any) -> None:
    NOTES[key].append(value)


def fast(queue: Queue, **options: Any) -> Worker:
    """A worker with short retry delays and wake-ups, for tests."""
    options.setdefault("retry", RetryPolicy(base=0.01))
    options.setdefault("wait_timeout", 0.1)
    options.setdefault("lease", 5.0)
    return Worker(queue, **options)


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], within: float = 5.0
) -> T:
    """Poll `probe` until `accept(value)`; fail with the last value after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s; last value: {value!r}")
        await asyncio.sleep(0.005)


def harness_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m harness` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "harness", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
