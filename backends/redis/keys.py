"""Every Redis key kew-plug writes is named here: `<namespace>:{<queue>}:<kind>[:<id>]`.
The braces make the queue name the hash tag, so all keys of one queue share a Cluster slot
and each script touches one slot."""

from __future__ import annotations

from dataclasses import dataclass, fields

DEFAULT_NAMESPACE = "kew"


@dataclass(frozen=True, slots=True)
class TaskFields:
    """The fields of a task hash, named once: the Lua prelude gets each as a local
    `F_<NAME>` (see scripts.py) and store.py reads records through `FIELD`."""

    state: str = "st"
    priority: str = "pr"
    seq: str = "sq"  # submission order, the tie-break of the ready score
    attempts: str = "at"
    max_attempts: str = "ma"
    token: str = "tk"  # fencing token of the current claim
    enqueued: str = "eq"  # ms, server clock
    # ms, server clock: when a task deferred, retried, recovered or requeued became ready
    # (inspection's oldest waiting task); a task ready since its submit has none.
    waiting_since: str = "ws"
    chunks: str = "pn"  # payload chunk count; present while the task holds a payload
    chunk: str = "p"  # chunk k (1-based) is the field p<k>
    result: str = "r"
    error: str = "e"
    traceback: str = "tb"
    waiters: str = "wt"  # callers watching for this task to finish (see watch.lua)
    worker: str = "wk"  # the worker that claimed it last

    def lua(self) -> str:
        """Each field as a Lua local, `local F_STATE = 'st'`, for the script prelude."""
        pairs = ((f.name.upper(), getattr(self, f.name)) for f in fields(self))
        return "\n".join(f"local F_{name} = '{value}'" for name, value in pairs)


FIELD = TaskFields()
# Payloads up to CHUNK * LISTPACK_CHUNKS bytes are stored as fields of CHUNK bytes (Redis's
# default hash-max-listpack-value), so the task hash keeps the compact listpack encoding
# (about half the memory). A bigger payload could never stay compact (hash-max-listpack-
# entries is 128), so it is stored as one field: no per-field overhead, and no script ever
# handles more than LISTPACK_CHUNKS chunk fields of a new task.
CHUNK = 64
LISTPACK_CHUNKS = 96
# The idle set (offers of waiting workers, see claim.lua) expires IDLE_TTL_MS after the last
# offer: a worker that waits longer offers again each time its wait times out.
IDLE_TTL_MS = 600_000
# An offer's score is (lapse time ms) * OFFER_SLOTS + free slots: below 2**53 (exact in a
# double) until the year 2248; a worker offers at most OFFER_SLOTS - 1 slots at once.
OFFER_SLOTS = 1024
# The wake set holds at most WAKE_MAX tokens and expires WAKE_TTL_MS after it was made.
WAKE_MAX = 64
WAKE_TTL_MS = 3_600_000
# A finished task's done list (one token per watcher) outlives the settlement this long, so
# a watcher between its registration and its BLPOP still finds its token.
DONE_TTL_MS = 60_000


def payload_chunks(payload: bytes) -> list[bytes]:
    if len(payload) > CHUNK * LISTPACK_CHUNKS:
        return [payload]
    return [payload[k : k + CHUNK] for k in range(0, len(payload), CHUNK)]


@dataclass(frozen=True, slots=True)
class QueueKeys:
    namespace: str
    queue: str

    @property
    def base(self) -> str:
        return f"{self.namespace}:{{{self.queue}}}"

    @property
    def ready(self) -> str:  # zset: id -> priority/age score
        return f"{self.base}:ready"

    @property
    def due(self) -> str:  # zset: id -> due time ms (deferred and retrying)
        return f"{self.base}:due"

    @property
    def running(self) -> str:  # zset: id -> lease deadline ms
        return f"{self.base}:running"

    @property
    def dead(self) -> str:  # zset: id -> time of death ms
        return f"{self.base}:dead"

    @property
    def wake(self) -> str:  # zset of at most 64 tokens that idle workers block on
        return f"{self.base}:wake"

    @property
    def seq(self) -> str:  # counter: submission order and fencing tokens; expires when idle
        return f"{self.base}:seq"

    @property
    def idle(self) -> str:  # zset: offers of waiting workers, "<lease ms>|<worker>" -> slots
        return f"{self.base}:idle"

    @property
    def inbox_prefix(self) -> str:
        return f"{self.base}:in:"

    def inbox(self, worker: str) -> str:  # zset: claims handed to one worker (enqueue.lua)
        return f"{self.inbox_prefix}{worker}"

    @property
    def task_prefix(self) -> str:
        return f"{self.base}:t:"

    def task(self, task_id: str) -> str:  # hash: payload, state, attempts, token, result
        return f"{self.task_prefix}{task_id}"

    @property
    def done_prefix(self) -> str:
        return f"{self.base}:d:"

    def done(self, task_id: str) -> str:  # list: a token per watcher once the task finished
        return f"{self.done_prefix}{task_id}"

    def breaker(self, name: str) -> str:  # hash: shared circuit-breaker state
        return f"{self.base}:breaker:{name}"

    @property
    def pattern(self) -> str:
        """SCAN pattern for every key of this queue (braces escaped for glob)."""
        return f"{self.namespace}:\\{{{self.queue}\\}}:*"

    @property
    def live_structures(self) -> tuple[str, ...]:
        """The only keys without a TTL: sets of live (or dead, until dead_ttl) task ids. Redis
        deletes a set when its last id leaves; the seq counter and the wake list expire."""
        return (self.ready, self.due, self.running, self.dead)


def worker_key(namespace: str, worker_id: str) -> str:  # string: a heartbeat's JSON, with PX
    return f"{namespace}:workers:{worker_id}"
