"""Test helpers: waiting for a condition with a deadline instead of sleeping."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from typing import Any, TypeVar

from harness.contract import eventually
from kew_plug import Queue, RetryPolicy, Worker

__all__ = ["COUNTS", "NOTES", "bump", "eventually", "fast", "harness_cli", "note"]

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


def harness_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m harness` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "harness", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
