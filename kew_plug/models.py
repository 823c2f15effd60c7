"""Plain records passed between Queue, Worker and Store. Stores see bytes, never objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TaskState(StrEnum):
    QUEUED = "queued"  # ready to be claimed
    DEFERRED = "deferred"  # waiting for its due time before the first attempt
    RUNNING = "running"  # claimed under a lease
    RETRYING = "retrying"  # failed an attempt, waiting for its backoff to pass
    COMPLETED = "completed"  # terminal: result kept for result_ttl
    DEAD = "dead"  # terminal: attempts exhausted or unreadable; kept for dead_ttl, requeueable
    CANCELLED = "cancelled"  # terminal: cancelled by a caller; payload gone, kept for result_ttl


#: States a task never leaves (until its record expires; a dead one may be requeued).
FINISHED = frozenset({TaskState.COMPLETED, TaskState.DEAD, TaskState.CANCELLED})


class CancelOutcome(StrEnum):
    """What `Store.cancel` did to one task."""

    CANCELLED = "cancelled"  # it was waiting (queued, deferred or retrying): it never runs
    CANCELLED_RUNNING = "cancelled_running"  # it was running: its worker's claim is fenced off
    FINISHED = "finished"  # it had already completed, died or been cancelled: unchanged
    UNKNOWN = "unknown"  # no such task (or its record expired)


class OutcomeKind(StrEnum):
    COMPLETE = "complete"
    RETRY = "retry"
    DEAD = "dead"


#: The state a running task moves to when settled with each outcome (every store; the Lua
#: prelude is generated from it).
STATE_AFTER = {
    OutcomeKind.COMPLETE: TaskState.COMPLETED,
    OutcomeKind.RETRY: TaskState.RETRYING,
    OutcomeKind.DEAD: TaskState.DEAD,
}
#: Stores keep at most this many bytes of a traceback: its end, where the error is.
TRACEBACK_LIMIT = 8192


def clip_traceback(text: str | None) -> str | None:
    """The last TRACEBACK_LIMIT bytes of `text` (UTF-8), or None for none or empty."""
    if not text:
        return None
    data = text.encode("utf-8", "replace")
    if len(data) <= TRACEBACK_LIMIT:
        return text
    return data[-TRACEBACK_LIMIT:].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True)
class NewTask:
    """One item of `Store.enqueue`: an id the caller chose, the payload bytes, scheduling."""

    id: str
    payload: bytes
    priority: int = 0
    delay_ms: int = 0
    max_attempts: int = 1
    #: The id was generated for this item and never sent before, so no stored task can
    #: hold it: a store may skip its existence check. False on every retry of a send.
    new_id: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """A task handed to one worker under a lease. `token` fences every later write."""

    id: str
    token: int
    attempt: int
    max_attempts: int
    payload: bytes
    #: How long (ms) the lease had already run at the reference moment of the call that
    #: returned it: 0 for a claim made by that call; more for a task handed to the worker
    #: earlier (see `Store.hands_off`); negative when it was handed after that moment.
    age_ms: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claim ended. Applied by `Store.settle` only while `token` is still current."""

    id: str
    token: int
    kind: OutcomeKind
    result: bytes | None = None
    error: str | None = None
    delay_ms: int = 0
    #: The failed attempt's formatted traceback, bounded in size (RETRY and DEAD).
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class EnqueueReport:
    accepted: list[str]
    duplicates: list[str]
    #: Duplicates whose stored payload is byte-for-byte the one submitted: after a lost
    #: reply, the caller's own earlier attempt (lets a retried submit stay exactly-once).
    same_payload: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Wakeup:
    """How a worker's wait ended (`Store.wait_handed`): with tasks handed to it, with a hint
    that work may be claimable (`woken`), or with neither once the timeout passed. `at` is
    the caller's `time.monotonic()` that the claims' `age_ms` count from."""

    woken: bool
    claims: list[Claim] = field(default_factory=list)
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    """Claims plus the store's hint of when the next deferred task is due (ms, or None), and
    how many ready ids it found without a record (deleted by someone else, or expired)."""

    claims: list[Claim]
    next_due_ms: int | None = None
    vanished: int = 0
    ready_left: int | None = None  # ready tasks still waiting after this claim, if known


@dataclass(frozen=True, slots=True)
class RecoverReport:
    requeued: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    queue: str
    state: TaskState
    priority: int
    attempts: int
    max_attempts: int
    token: int
    enqueued_ms: int
    result: bytes | None = None
    error: str | None = None
    has_payload: bool = False
    #: The last failed attempt's formatted traceback, if any.
    traceback: str | None = None
    #: The id of the worker that claimed it last (None before its first claim).
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One thing a store holds, as `Store.contents` reports it: a name (holding the task
    id when the entry belongs to a task), every byte stored under it, and its time left to
    live in ms (-1: none)."""

    name: str
    data: bytes
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class RunningTask:
    """A running task as inspection sees it: its lease deadline (epoch ms, store clock) and
    the worker holding it."""

    id: str
    deadline_ms: int
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process's heartbeat, kept in the store with a TTL: while it is fresh, the
    worker is live. `counters` are its WorkerStats; times are epoch seconds."""

    id: str
    host: str
    pid: int
    queues: list[str]
    started_at: float
    seen_at: float
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueStats:
    queued: int = 0
    scheduled: int = 0  # deferred + retrying
    running: int = 0
    dead: int = 0

    @property
    def pending(self) -> int:
        """Tasks not yet finished: what a drain waits for."""
        return self.queued + self.scheduled + self.running
