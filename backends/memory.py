"""MemoryStore: the Store contract inside one process. Honest about it: `shared` is False,
and the harness shows that separate processes cannot see each other's tasks through it."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kew_plug.errors import QueueFull
from kew_plug.interfaces import Store
from kew_plug.models import (
    FINISHED,
    STATE_AFTER,
    CancelOutcome,
    Claim,
    ClaimBatch,
    EnqueueReport,
    NewTask,
    Outcome,
    OutcomeKind,
    QueueStats,
    RecoverReport,
    RunningTask,
    StoredEntry,
    TaskRecord,
    TaskState,
    WorkerInfo,
    clip_traceback,
)
from kew_plug.ordering import ready_score


@dataclass(slots=True)
class _Task:
    id: str
    payload: bytes | None
    priority: int
    max_attempts: int
    seq: int
    enqueued_ms: int
    state: TaskState
    attempts: int = 0
    token: int = 0
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    dead_payload: bytes | None = None
    expires_ms: int | None = None
    worker: str | None = None
    waiting_since: int | None = None  # became ready after a defer, retry, recovery, requeue


class _Queue:
    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.ready: list[tuple[float, str]] = []  # heap; entries checked against state
        self.due: dict[str, int] = {}
        self.running: dict[str, int] = {}  # id -> lease deadline
        self.dead: dict[str, int] = {}  # id -> time of death, insertion-ordered
        self.counter = 0
        self.wake = asyncio.Event()
        # Set, then replaced, whenever a task of this queue finishes: what `watch` awaits.
        self.finished = asyncio.Event()

    def notify_finished(self) -> None:
        self.finished.set()
        self.finished = asyncio.Event()


class MemoryStore(Store):
    shared = False

    def __init__(
        self,
        *,
        result_ttl: float = 3600.0,
        dead_ttl: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.result_ttl_ms = int(result_ttl * 1000)
        self.dead_ttl_ms = int(dead_ttl * 1000)
        self._clock = clock
        self._queues: dict[str, _Queue] = {}
        self._beats: dict[str, tuple[WorkerInfo, int]] = {}  # id -> (info, expiry ms)

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _q(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = _Queue()
        return q

    def _live(self, q: _Queue, task_id: str, now: int) -> _Task | None:
        t = q.tasks.get(task_id)
        if t is not None and t.expires_ms is not None and t.expires_ms <= now:
            del q.tasks[task_id]
            q.dead.pop(task_id, None)
            return None
        return t

    def _push_ready(self, q: _Queue, t: _Task, since: int | None = None) -> None:
        t.state = TaskState.QUEUED
        if since is not None:
            t.waiting_since = since
        heapq.heappush(q.ready, (ready_score(t.priority, t.seq), t.id))
        q.wake.set()

    async def enqueue(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        q, now = self._q(queue), self._now()
        fresh: dict[str, NewTask] = {}
        duplicates: list[str] = []
        same: list[str] = []
        for item in items:
            existing = None if item.id in fresh else self._live(q, item.id, now)
            if item.id in fresh or existing is not None:
                duplicates.append(item.id)
                if existing is not None and existing.payload == item.payload:
                    same.append(item.id)
            else:
                fresh[item.id] = item
        waiting = sum(1 for t in q.tasks.values() if t.state in _WAITING)
        if max_size is not None and waiting + len(fresh) > max_size:
            raise QueueFull(queue, waiting, len(fresh), max_size)
        for item in fresh.values():
            q.counter += 1
            t = _Task(
                id=item.id,
                payload=item.payload,
                priority=item.priority,
                max_attempts=item.max_attempts,
                seq=q.counter,
                enqueued_ms=now,
                state=TaskState.DEFERRED,
            )
            q.tasks[item.id] = t
            if item.delay_ms > 0:
                q.due[item.id] = now + item.delay_ms
            else:
                self._push_ready(q, t)
        return EnqueueReport(accepted=list(fresh), duplicates=duplicates, same_payload=same)

    def _promote_due(self, q: _Queue, now: int) -> int | None:
        next_due: int | None = None
        for task_id, due in list(q.due.items()):
            if due <= now:
                del q.due[task_id]
                t = self._live(q, task_id, now)
                if t is not None:
                    self._push_ready(q, t, since=due)
            elif next_due is None or due < next_due:
                next_due = due
        return None if next_due is None else next_due - now

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        q, now = self._q(queue), self._now()
        next_due = self._promote_due(q, now)
        claims: list[Claim] = []
        vanished = 0
        while q.ready and len(claims) < limit:
            _, task_id = heapq.heappop(q.ready)
            t = self._live(q, task_id, now)
            if t is None:
                vanished += 1
                continue
            if t.state is not TaskState.QUEUED or t.payload is None:
                continue
            q.counter += 1
            t.state, t.token, t.attempts = TaskState.RUNNING, q.counter, t.attempts + 1
            t.worker = worker
            q.running[task_id] = now + lease_ms
            claims.append(Claim(task_id, t.token, t.attempts, t.max_attempts, t.payload))
        if not q.ready:
            q.wake.clear()
        return ClaimBatch(claims, next_due, vanished, len(q.ready))

    async def wait(self, queue: str, timeout: float) -> bool:
        q = self._q(queue)
        if q.ready:
            return True
        try:
            await asyncio.wait_for(q.wake.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _current(self, q: _Queue, task_id: str, token: int, now: int) -> _Task | None:
        t = self._live(q, task_id, now)
        if t is None or t.token != token or t.state is not TaskState.RUNNING:
            return None
        return t

    async def renew(self, queue: str, claims: Sequence[Claim], lease_ms: int) -> list[bool]:
        q, now = self._q(queue), self._now()
        held = []
        for c in claims:
            ok = self._current(q, c.id, c.token, now) is not None
            if ok:
                q.running[c.id] = now + lease_ms
            held.append(ok)
        return held

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        q, now = self._q(queue), self._now()
        applied = []
        for o in outcomes:
            t = self._current(q, o.id, o.token, now)
            if t is None:
                # The same settlement again (its reply was lost): applied, nothing changes.
                done = self._live(q, o.id, now)
                again = done is not None and done.token == o.token
                applied.append(again and done is not None and done.state is STATE_AFTER[o.kind])
                continue
            applied.append(True)
            del q.running[o.id]
            if o.kind is OutcomeKind.COMPLETE:
                t.state, t.payload, t.result, t.error = TaskState.COMPLETED, None, o.result, None
                t.traceback = None
                t.expires_ms = now + self.result_ttl_ms
            elif o.kind is OutcomeKind.RETRY:
                t.state, t.error = TaskState.RETRYING, o.error
                t.traceback = clip_traceback(o.traceback)
                q.due[o.id] = now + max(0, o.delay_ms)
            else:
                self._kill(q, t, o.error, now, clip_traceback(o.traceback))
            if o.kind is not OutcomeKind.RETRY:
                q.notify_finished()
        return applied

    def _kill(
        self, q: _Queue, t: _Task, error: str | None, now: int, trace: str | None = None
    ) -> None:
        t.state, t.error, t.traceback = TaskState.DEAD, error, trace
        t.dead_payload, t.payload = t.payload, None
        t.expires_ms = now + self.dead_ttl_ms
        q.dead[t.id] = now

    async def release(self, queue: str, claims: Sequence[Claim]) -> list[bool]:
        q, now = self._q(queue), self._now()
        released = []
        for c in claims:
            t = self._current(q, c.id, c.token, now)
            released.append(t is not None)
            if t is not None:
                del q.running[c.id]
                t.attempts -= 1
                self._push_ready(q, t)
        return released

    async def recover(self, queue: str) -> RecoverReport:
        q, now = self._q(queue), self._now()
        report = RecoverReport()
        for task_id, deadline in list(q.running.items()):
            if deadline > now:
                continue
            del q.running[task_id]
            t = self._live(q, task_id, now)
            if t is None:
                continue
            if t.attempts >= t.max_attempts:
                self._kill(q, t, f"lease expired on attempt {t.attempts} of {t.max_attempts}", now)
                report.dead.append(task_id)
                q.notify_finished()
            else:
                self._push_ready(q, t, since=now)
                report.requeued.append(task_id)
        return report

    async def get(self, queue: str, task_id: str) -> TaskRecord | None:
        q = self._queues.get(queue)
        t = None if q is None else self._live(q, task_id, self._now())
        if t is None:
            return None
        return TaskRecord(
            id=t.id,
            queue=queue,
            state=t.state,
            priority=t.priority,
            attempts=t.attempts,
            max_attempts=t.max_attempts,
            token=t.token,
            enqueued_ms=t.enqueued_ms,
            result=t.result,
            error=t.error,
            has_payload=t.payload is not None,
            traceback=t.traceback,
            worker=t.worker,
        )

    async def stats(self, queue: str) -> QueueStats:
        q = self._q(queue)
        self._expire(q)
        counts = {s: 0 for s in TaskState}
        for t in q.tasks.values():
            counts[t.state] += 1
        return QueueStats(
            queued=counts[TaskState.QUEUED],
            scheduled=counts[TaskState.DEFERRED] + counts[TaskState.RETRYING],
            running=counts[TaskState.RUNNING],
            dead=counts[TaskState.DEAD],
        )

    def _expire(self, q: _Queue) -> None:
        now = self._now()
        for task_id in list(q.tasks):
            self._live(q, task_id, now)

    async def dead_ids(self, queue: str, limit: int = 100) -> list[str]:
        q = self._q(queue)
        self._expire(q)
        return list(q.dead)[:limit]

    async def requeue(self, queue: str, ids: Sequence[str]) -> list[bool]:
        q, now = self._q(queue), self._now()
        done = []
        for task_id in ids:
            t = self._live(q, task_id, now)
            ok = t is not None and t.state is TaskState.DEAD and t.dead_payload is not None
            done.append(ok)
            if t is not None and ok:
                del q.dead[task_id]
                t.payload, t.dead_payload, t.expires_ms = t.dead_payload, None, None
                t.attempts, t.error, t.traceback = 0, None, None
                self._push_ready(q, t, since=now)
        return done

    async def payload_ids(self, queue: str) -> set[str]:
        q = self._q(queue)
        self._expire(q)
        return {t.id for t in q.tasks.values() if t.payload is not None}

    async def purge(self, queue: str) -> int:
        q = self._queues.pop(queue, None)
        return 0 if q is None else len(q.tasks)

    async def cancel(self, queue: str, task_ids: Sequence[str]) -> list[CancelOutcome]:
        q, now = self._q(queue), self._now()
        done: list[CancelOutcome] = []
        for task_id in task_ids:
            t = self._live(q, task_id, now)
            if t is None:
                done.append(CancelOutcome.UNKNOWN)
                continue
            if t.state in FINISHED:
                done.append(CancelOutcome.FINISHED)
                continue
            running = q.running.pop(task_id, None) is not None
            q.due.pop(task_id, None)  # a ready heap entry is skipped once the state moved on
            q.counter += 1
            t.token = q.counter  # fences off the running claim, if any
            t.state, t.payload, t.result = TaskState.CANCELLED, None, None
            t.expires_ms = now + self.result_ttl_ms
            done.append(CancelOutcome.CANCELLED_RUNNING if running else CancelOutcome.CANCELLED)
            q.notify_finished()
        return done

    async def watch(self, queue: str, task_ids: Sequence[str], timeout: float) -> None:
        q = self._q(queue)
        deadline = time.monotonic() + timeout
        while True:
            now = self._now()
            live = (self._live(q, i, now) for i in task_ids)
            if all(t is None or t.state in FINISHED for t in live):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(q.finished.wait(), left)

    async def contents(self) -> list[StoredEntry]:
        now, out = self._now(), []
        for name, q in self._queues.items():
            for task_id in list(q.tasks):
                t = self._live(q, task_id, now)
                if t is None:
                    continue
                held = (t.payload, t.dead_payload, t.result, (t.error or "").encode())
                ttl = -1 if t.expires_ms is None else max(0, t.expires_ms - now)
                data = b"\x00".join(b for b in held if b)
                out.append(StoredEntry(f"{name}:task:{task_id}", data, ttl))
            for kind, ids in (("ready", [i for _, i in q.ready]), ("due", list(q.due)),
                              ("running", list(q.running)), ("dead", list(q.dead))):  # fmt: skip
                if ids:
                    out.append(StoredEntry(f"{name}:{kind}", " ".join(ids).encode(), -1))
        return out

    async def queues(self) -> list[str]:
        return sorted(name for name, q in self._queues.items() if q.tasks)

    async def oldest_waiting_ms(self, queue: str) -> int | None:
        q, now = self._q(queue), self._now()
        waiting = [
            t.enqueued_ms if t.waiting_since is None else t.waiting_since
            for t in q.tasks.values()
            if t.state is TaskState.QUEUED
        ]
        for task_id, at in q.due.items():
            task = q.tasks.get(task_id)
            if at <= now and task is not None and task.state in _WAITING:
                waiting.append(at)
        return min(waiting, default=None)

    async def running(self, queue: str, limit: int = 100) -> list[RunningTask]:
        q = self._q(queue)
        soonest = sorted(q.running.items(), key=lambda item: item[1])[:limit]
        return [RunningTask(i, deadline, q.tasks[i].worker) for i, deadline in soonest]

    async def lease_deadline_ms(self, queue: str, task_id: str) -> int | None:
        return self._q(queue).running.get(task_id)

    async def died_at_ms(self, queue: str, task_ids: Sequence[str]) -> list[int | None]:
        dead = self._q(queue).dead
        return [dead.get(i) for i in task_ids]

    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        self._beats[worker.id] = (worker, self._now() + int(ttl * 1000))

    async def forget(self, worker_id: str) -> None:
        self._beats.pop(worker_id, None)

    async def workers(self) -> list[WorkerInfo]:
        now = self._now()
        for wid in [w for w, (_, until) in self._beats.items() if until <= now]:
            del self._beats[wid]
        return [info for info, _ in self._beats.values()]


_WAITING = frozenset({TaskState.QUEUED, TaskState.DEFERRED, TaskState.RETRYING})
