"""The worker's counters, shared by its parts (claim loop, runner, outbox, lease book)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    handed: int = 0  # of the claimed, those a submit handed straight to this worker
    completed: int = 0
    retried: int = 0
    dead: int = 0
    stale: int = 0  # settlements or renewals refused because the lease had been lost
    released: int = 0
    breaker_denied: int = 0
    vanished: int = 0  # queued ids whose record was gone when claimed
    expired_unstarted: int = 0  # claims whose lease ran out before the task could start
    store_errors: int = 0
    recovered: int = 0  # expired leases (of dead or stalled workers) this worker requeued
    recovered_dead: int = 0  # expired leases it dead-lettered: their attempts were used up
    abandoned_threads: int = 0  # sync tasks past their timeout whose thread runs on (daemon)
    killed_processes: int = 0  # task processes killed at a timeout (executor="process")
    cancelled: int = 0  # running tasks stopped because their lease was lost (or cancelled)
    lapsed: int = 0  # claims whose lease ran out by our clock before renewal (we stalled)
