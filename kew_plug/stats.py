"""The worker's counters, shared by its parts (claim loop, runner, outbox, lease book)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    retried: int = 0
    dead: int = 0
    stale: int = 0  # settlements or renewals refused because the lease had been lost
    released: int = 0
    breaker_denied: int = 0
    vanished: int = 0  # queued ids whose record was gone when claimed
    expired_unstarted: int = 0  # claims whose lease ran out before the task could start
    store_errors: int = 0
