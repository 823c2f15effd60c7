"""The three swappable parts: Store (where tasks live), Serializer (objects to bytes) and
Breaker (holding off a failing downstream). Method names are fixed, so that third-party
parts can rely on them."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from kew_plug.errors import Unsupported
from kew_plug.models import (
    FINISHED,
    CancelOutcome,
    Claim,
    ClaimBatch,
    EnqueueReport,
    NewTask,
    Outcome,
    QueueStats,
    RecoverReport,
    RunningTask,
    StoredEntry,
    TaskRecord,
    Wakeup,
    WorkerInfo,
)


class _AsyncClosing:
    async def aclose(self) -> None:
        """Release connections. Idempotent; safe to call on a store that never connected."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Store(_AsyncClosing, ABC):
    """Shared task state, bytes in and bytes out. Every method is atomic with respect to
    every process sharing the store, and time (due times, lease deadlines) comes from the
    store's own clock. A missing id is never an exception: it is reported or returns None."""

    #: True when separate OS processes pointed at the same store see the same tasks. The
    #: harness does not take this on trust: it proves sharing from cross-process pickups.
    shared: bool = True
    #: True when calls cross a network, so a reply can be lost after the store acted (Queue
    #: retries submits then) and unsigned payloads are writable by others (Queue warns).
    networked: bool = False
    #: True when a submit can hand a task straight to a waiting worker, claimed for it under
    #: its lease, which saves the worker the claim's round trip (`claim_and_offer`,
    #: `wait_handed`, `withdraw`). Workers only call those on a store that declares it.
    hands_off: bool = False
    #: True when `enqueue_blocking` works: the same enqueue, from a thread with no event
    #: loop running, without one (`SyncQueue` submits through it when the store has it).
    enqueues_blocking: bool = False

    @abstractmethod
    async def enqueue(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        """Store every item whose id is new, payload included, in one step. An id the queue
        already holds (in any state until its record expires) is listed in `duplicates` and
        left untouched. If waiting tasks plus the new ones would exceed `max_size`, raise
        `QueueFull` and store nothing. Items with `delay_ms > 0` wait in a due set and never
        block ready tasks."""

    @abstractmethod
    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        """Move up to `limit` due tasks, highest priority then oldest first, to running; in
        the same step count the attempt, set the lease deadline (now + lease_ms on the store's
        clock) and a fresh fencing token. No task is held by two unexpired claims. Deferred
        tasks whose time has come are promoted first. Not safe to retry blindly: a lost reply
        leaves the claims to expire and be recovered."""

    @abstractmethod
    async def wait(self, queue: str, timeout: float) -> bool:
        """Block until work may be claimable (True) or `timeout` seconds pass (False). A
        wake-up is a hint, not a promise: the caller claims and may find nothing."""

    @abstractmethod
    async def renew(self, queue: str, claims: Sequence[Claim], lease_ms: int) -> list[bool]:
        """Extend each lease whose token is still current; per claim, False means it was
        lost (expired and recovered, or settled). Idempotent."""

    @abstractmethod
    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply each outcome only if its token is current and the task is running; per
        outcome, False means stale and nothing changed. The same outcome sent again with the
        same token (its reply was lost) reports True and changes nothing. COMPLETE stores the
        result for result_ttl and deletes the payload in the same step; RETRY schedules the
        task after `delay_ms`; DEAD moves it to the dead-letter set with its error."""

    @abstractmethod
    async def release(self, queue: str, claims: Sequence[Claim]) -> list[bool]:
        """Hand back claims a stopping worker will not finish: ready again, attempt not
        counted. Stale claims are reported False and change nothing."""

    @abstractmethod
    async def recover(self, queue: str) -> RecoverReport:
        """Move tasks whose lease expired back to ready (the attempt stays counted), or to
        dead when their attempts are exhausted. Safe for any process to call at any time."""

    @abstractmethod
    async def get(self, queue: str, task_id: str) -> TaskRecord | None:
        """The task's record, or None when unknown or expired."""

    async def get_many(self, queue: str, task_ids: Sequence[str]) -> list[TaskRecord | None]:
        """`get` for many ids; networked stores override it to cost one round trip."""
        return [await self.get(queue, i) for i in task_ids]

    @abstractmethod
    async def stats(self, queue: str) -> QueueStats:
        """Counts of queued, scheduled, running and dead tasks."""

    @abstractmethod
    async def dead_ids(self, queue: str, limit: int = 100) -> list[str]:
        """Ids in the dead-letter set, oldest first."""

    @abstractmethod
    async def requeue(self, queue: str, ids: Sequence[str]) -> list[bool]:
        """Put dead tasks back to ready with a fresh attempt count; False for ids not dead."""

    @abstractmethod
    async def payload_ids(self, queue: str) -> set[str]:
        """Ids that still hold an executable payload (queued, scheduled or running tasks).
        After a drain with no faults this is empty: the cleanup check."""

    @abstractmethod
    async def purge(self, queue: str) -> int:
        """Delete every key or entry of this queue and nothing else; returns how many."""

    # -- optional capabilities: declared here with defaults, overridden where they exist --

    async def cancel(self, queue: str, task_ids: Sequence[str]) -> list[CancelOutcome]:
        """Cancel each task in one atomic step: a waiting one leaves its ready or due set and
        never runs; a running one leaves the running set and its fencing token moves on, so
        its worker's renewal reports it lost (the worker then cancels it) and its settlement
        is refused. Either way the payload is deleted, the state becomes CANCELLED (kept for
        result_ttl) and `watch` wakes. Finished or unknown tasks are reported, unchanged."""
        raise Unsupported(f"{type(self).__name__} cannot cancel tasks")

    async def claim_and_offer(
        self, queue: str, worker: str, limit: int, lease_ms: int, offer_ms: int
    ) -> ClaimBatch:
        """`claim` for a worker taking hand-offs: first the tasks already handed to it, then
        claims as usual; the slots still unfilled are offered for `offer_ms` (or until its
        next call): a submit meanwhile may claim a task for it under `lease_ms` and hand it
        over, and `wait_handed` delivers it. Only on stores with `hands_off`."""
        raise Unsupported(f"{type(self).__name__} cannot hand tasks to workers")

    async def wait_handed(self, queue: str, worker: str, timeout: float) -> Wakeup:
        """`wait`, ending early with a task handed to this worker, if one is. Only on stores
        with `hands_off`."""
        raise Unsupported(f"{type(self).__name__} cannot hand tasks to workers")

    def enqueue_blocking(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        """`enqueue`, blocking the calling thread, safe from any thread at any time. Only on
        stores with `enqueues_blocking`."""
        raise Unsupported(f"{type(self).__name__} has no blocking enqueue")

    async def withdraw(self, queue: str, worker: str) -> list[Claim]:
        """A stopping worker withdraws its offer; returns the tasks handed to it that it has
        not taken (it releases them). Only on stores with `hands_off`."""
        raise Unsupported(f"{type(self).__name__} cannot hand tasks to workers")

    async def watch(self, queue: str, task_ids: Sequence[str], timeout: float) -> None:
        """Return once every task has finished (completed, dead or cancelled) or is unknown,
        or after `timeout` seconds, whichever comes first; the caller then reads the records.
        Stores that can be notified return within about a millisecond of the settlement;
        this default polls, backing off from 2 ms to 100 ms."""
        deadline = time.monotonic() + timeout
        pause = 0.002
        while True:
            records = await self.get_many(queue, task_ids)
            if all(r is None or r.state in FINISHED for r in records):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)

    async def ping(self) -> None:
        """Raise `StoreUnavailable`, in one line, when the store cannot be reached or refuses
        the caller. An in-process store is always reachable."""

    def shared_breaker(self, name: str, **options: Any) -> Breaker | None:
        """A breaker whose state lives in this store and is shared by every process using
        it, or None when the store cannot hold one (the `"redis"` breaker name needs it)."""
        return None

    async def queues(self) -> list[str]:
        """Names of the queues this store holds tasks for (inspection); empty if unknown."""
        return []

    async def oldest_waiting_ms(self, queue: str) -> int | None:
        """Since when (epoch ms) the longest-waiting task has waited: the enqueue time of the
        next one to be claimed, or the due time of the earliest deferred or retrying task
        once it is due, whichever is older. A task due later is not waiting yet (periodic
        ticks are submitted ahead). None when nothing waits or the store cannot tell."""
        return None

    async def running(self, queue: str, limit: int = 100) -> list[RunningTask]:
        """Running tasks with their lease deadlines and workers, soonest deadline first."""
        return []

    async def lease_deadline_ms(self, queue: str, task_id: str) -> int | None:
        """Lease deadline (epoch ms, store clock) of a running task, else None."""
        return None

    async def died_at_ms(self, queue: str, task_ids: Sequence[str]) -> list[int | None]:
        """When each task entered the dead-letter set (epoch ms), None where not dead or
        unknown to the store."""
        return [None for _ in task_ids]

    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        """Record a worker's heartbeat, to expire after `ttl` seconds unless renewed. A store
        that cannot hold heartbeats ignores it (workers then do not show as live)."""

    async def forget(self, worker_id: str) -> None:
        """Remove a stopping worker's heartbeat at once."""

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat has not expired."""
        return []

    async def contents(self) -> list[StoredEntry] | None:
        """Everything this store holds, entry by entry: what the harness judges for leftover
        payloads and lifetimes when it cannot read the store's server itself (a store not on
        Redis). The harness reports such checks as relying on the store's own report. None:
        the store cannot tell."""
        return None

    async def keys_per_node(self) -> dict[str, int]:
        """How many keys of this store's namespace each server node holds (host:port), to
        show how queues spread over a cluster; empty when the store has no servers."""
        return {}


class Serializer(ABC):
    """Objects to bytes and back. `dumps` output is framed with `name` and a format version,
    so bytes written by another serializer fail with `PayloadError`, never as garbage."""

    name: str

    @abstractmethod
    def dumps(self, obj: Any) -> bytes:
        """Serialize `obj`; raise `SerializationError` naming what could not be serialized."""

    @abstractmethod
    def loads(self, data: bytes) -> Any:
        """Deserialize; raise `PayloadError` for corrupt, foreign or refused bytes. Must not
        execute anything from bytes it refuses."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class DecisionKind(StrEnum):
    GRANTED = "granted"  # allow() said yes while closed
    PROBE = "probe"  # allow() said yes while half-open
    DENIED = "denied"  # allow() said no
    TRIPPED = "tripped"  # record_failure() opened the circuit (or reopened it)
    CLOSED = "closed"  # record_success() or reset() closed it
    RECORDED = "recorded"  # record_success() or record_failure() changed no state


@dataclass(frozen=True, slots=True)
class BreakerDecision:
    """What one breaker call decided, when, on the breaker's own clock. `at_us` is the time
    the decision was taken in microseconds on that clock (the server's for a shared breaker,
    the process's for a local one); `opened` is how many times the circuit had opened as
    the decision saw it (after the trip, for TRIPPED). The harness orders decisions by these
    two numbers and judges each grant against the trips, never by the `kind` alone."""

    kind: DecisionKind
    at_us: int
    opened: int


class Breaker(_AsyncClosing, ABC):
    """A circuit breaker. Closed until `failure_threshold` consecutive failures, then open for
    `reset_timeout` seconds, then half-open: at most `half_open_max_calls` probes are allowed;
    a probe's success closes it, a failure reopens it. Each method is one atomic step."""

    failure_threshold: int
    reset_timeout: float
    half_open_max_calls: int
    #: True when every process using the breaker shares its state and its clock (decision
    #: times from different processes can be compared); False for per-process state.
    shared: bool = False
    #: The decision of this object's last allow(), record_success(), record_failure() or
    #: reset(), or None for a breaker that does not report them (the harness then cannot
    #: check it). Set before the method returns and after its last await, so a caller
    #: reading it right after awaiting the method sees its own call's decision.
    last_decision: BreakerDecision | None = None

    @abstractmethod
    async def allow(self) -> bool:
        """May a call start now? True in closed; False while open; in half-open True for at
        most `half_open_max_calls` callers per episode (across all sharers of the state)."""

    @abstractmethod
    async def record_success(self) -> None:
        """A call succeeded: resets the failure count; a half-open probe's success closes."""

    @abstractmethod
    async def record_failure(self) -> None:
        """A call failed: counts toward the threshold; a half-open failure reopens."""

    @abstractmethod
    async def state(self) -> BreakerState:
        """The current state, open turning half-open once reset_timeout has passed."""

    @abstractmethod
    async def reset(self) -> None:
        """Force closed with zero counts."""

    async def retry_after(self) -> float:
        """Seconds until an open breaker may half-open (0 when not open). A hint for waiting."""
        return 0.0

    async def opened_count(self) -> int:
        """How many times the circuit has gone to open (reopens from half-open included);
        `reset()` does not clear it. By default the count seen by this object's last
        decision (0 before any), which the shipped breakers replace with their own."""
        return self.last_decision.opened if self.last_decision is not None else 0
