"""The ready-set order shared by every store: higher priority first, then older first.

One float score so Redis can keep ready tasks in a sorted set. Priorities are bounded so the
score stays an exact integer in a double: (PRIORITY_MAX - priority) * 2**41 + seq is below
2**53 for priorities in [-PRIORITY_MAX, PRIORITY_MAX] and seq below 2**41."""

from __future__ import annotations

PRIORITY_MAX = 1000
SEQ_SPAN = 2**41


def ready_score(priority: int, seq: int) -> float:
    return float((PRIORITY_MAX - priority) * SEQ_SPAN + seq % SEQ_SPAN)
