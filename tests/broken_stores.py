"""Deliberately broken stores: the harness must catch each one and name the right check.
Factories take the run's server `url` and `namespace`, as `--store pkg.mod:factory` offers."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence

from kew_plug.backends.memory import MemoryStore
from kew_plug.backends.redis import RedisStore
from kew_plug.backends.redis.keys import FIELD
from kew_plug.models import (
    CancelOutcome,
    Claim,
    ClaimBatch,
    EnqueueReport,
    NewTask,
    Outcome,
    OutcomeKind,
    QueueStats,
    TaskState,
)


class DoubleClaimStore(RedisStore):
    """Makes every 5th claimed task claimable again at once: two live claims, one task."""

    # Its claim is the broken part: every task must go through it, none be handed over.
    hands_off = False

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        batch = await super().claim(queue, worker, limit, lease_ms)
        k = self.keys(queue)
        for c in batch.claims:
            if c.attempt == 1 and int(c.id.rsplit("-", 1)[1]) % 5 == 0:
                await self.client.hset(k.task(c.id), FIELD.state, TaskState.QUEUED)
                await self.client.zadd(k.ready, {c.id: 0})
        return batch


class LeakyStore(RedisStore):
    """Completes tasks but writes their payload back: nothing is ever cleaned up."""

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        applied = await super().settle(queue, outcomes)
        for o in outcomes:
            payload = {FIELD.chunks: 1, f"{FIELD.chunk}1": b"x"}
            await self.client.hset(self.keys(queue).task(o.id), mapping=payload)
        return applied


class ProcessLocalPayloadStore(RedisStore):
    """kew before 0.2: the queue entry is in Redis but the payload stays in the submitting
    process, so a task popped by another process has nothing to run."""

    # Its claim is the broken part: every task must go through it, none be handed over.
    hands_off = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.local: dict[str, bytes] = {}

    async def enqueue(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        for i in items:
            self.local[i.id] = i.payload
        blank = [NewTask(i.id, b"", i.priority, i.delay_ms, i.max_attempts) for i in items]
        return await super().enqueue(queue, blank, max_size)

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        batch = await super().claim(queue, worker, limit, lease_ms)
        runnable = [
            Claim(c.id, c.token, c.attempt, c.max_attempts, self.local[c.id])
            for c in batch.claims
            if c.id in self.local
        ]
        return ClaimBatch(runnable, batch.next_due_ms)  # the others are orphaned


class DroppingStore(RedisStore):
    """Marks every 7th claimed task complete without handing it to anyone."""

    # Its claim is the broken part: every task must go through it, none be handed over.
    hands_off = False

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        batch = await super().claim(queue, worker, limit, lease_ms)
        drop = [c for c in batch.claims if int(c.id.rsplit("-", 1)[1]) % 7 == 0]
        if drop:
            await self.settle(queue, [Outcome(c.id, c.token, OutcomeKind.COMPLETE) for c in drop])
        return ClaimBatch([c for c in batch.claims if c not in drop], batch.next_due_ms)


def double_claim(url: str, namespace: str) -> RedisStore:
    return DoubleClaimStore.from_url(url, namespace=namespace)


def leaky(url: str, namespace: str) -> RedisStore:
    return LeakyStore.from_url(url, namespace=namespace)


def process_local(url: str, namespace: str) -> RedisStore:
    return ProcessLocalPayloadStore.from_url(url, namespace=namespace)


def dropping(url: str, namespace: str) -> RedisStore:
    return DroppingStore.from_url(url, namespace=namespace)


class HiddenPayloadStore(RedisStore):
    """Settles correctly, but first copies each task's payload into a side key (with a TTL
    inside result_ttl), where its own payload_ids() never looks."""

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        for o in outcomes:
            fields = await self.client.hgetall(self.keys(queue).task(o.id))  # type: ignore[misc]
            kept = {f: v for f, v in fields.items() if f.startswith(b"p") and f != b"pn"}
            if kept:
                side = f"{self.keys(queue).base}:kept:{o.id}"
                await self.client.hset(side, mapping=kept)  # type: ignore[misc]
                await self.client.pexpire(side, self.result_ttl_ms)
        return await super().settle(queue, outcomes)


class LongRecordStore(RedisStore):
    """Keeps every finished record for 30 days instead of result_ttl."""

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        applied = await super().settle(queue, outcomes)
        for o in outcomes:
            await self.client.expire(self.keys(queue).task(o.id), 30 * 86400)
        return applied


class PersistentRecordStore(RedisStore):
    """Removes the TTL of every finished record: it never expires."""

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        applied = await super().settle(queue, outcomes)
        for o in outcomes:
            await self.client.persist(self.keys(queue).task(o.id))
        return applied


class FifoStore(RedisStore):
    """Ignores priority: every task is enqueued as priority 0, so claims go oldest first."""

    async def enqueue(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        flat = [NewTask(i.id, i.payload, 0, i.delay_ms, i.max_attempts) for i in items]
        return await super().enqueue(queue, flat, max_size)


class NoRenewStore(RedisStore):
    """renew() reports success without extending the lease of a task's first attempt, so
    that attempt's lease runs out under a long task and the task is run again."""

    async def renew(self, queue: str, claims: Sequence[Claim], lease_ms: int) -> list[bool]:
        later = [c for c in claims if c.attempt > 1]
        extended = iter(await super().renew(queue, later, lease_ms))
        return [True if c.attempt == 1 else next(extended) for c in claims]


class SlowRenewStore(RedisStore):
    """renew() answers late, past the lease, while a first attempt is among the claims: the
    leases run out and the tasks run again. No process and not the server stalls, so the
    lapses its workers hear of explain nothing."""

    async def renew(self, queue: str, claims: Sequence[Claim], lease_ms: int) -> list[bool]:
        if any(c.attempt == 1 for c in claims):
            await asyncio.sleep(lease_ms / 1000 * 1.5)
        return await super().renew(queue, claims, lease_ms)


class HidesRunningStore(RedisStore):
    """stats() never counts running tasks: a harness that trusted it would end the run while
    tasks still run, and report them lost."""

    async def stats(self, queue: str) -> QueueStats:
        s = await super().stats(queue)
        return QueueStats(queued=s.queued, scheduled=s.scheduled, running=0, dead=s.dead)


class WithholdingStore(RedisStore):
    """Never hands out every 10th task: its claims are taken and left to expire, until
    recover() dead-letters it by itself (no worker ever sees it fail)."""

    # Its claim is the broken part: every task must go through it, none be handed over.
    hands_off = False

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        batch = await super().claim(queue, worker, limit, lease_ms)
        kept = [c for c in batch.claims if int(c.id.rsplit("-", 1)[1]) % 10]
        return dataclasses.replace(batch, claims=kept)


def hidden_payload(url: str, namespace: str, result_ttl: float) -> RedisStore:
    return HiddenPayloadStore.from_url(url, namespace=namespace, result_ttl=result_ttl)


def long_record(url: str, namespace: str) -> RedisStore:
    return LongRecordStore.from_url(url, namespace=namespace)


def persistent_record(url: str, namespace: str) -> RedisStore:
    return PersistentRecordStore.from_url(url, namespace=namespace)


def fifo(url: str, namespace: str) -> RedisStore:
    return FifoStore.from_url(url, namespace=namespace)


def no_renew(url: str, namespace: str) -> RedisStore:
    return NoRenewStore.from_url(url, namespace=namespace)


def slow_renew(url: str, namespace: str) -> RedisStore:
    return SlowRenewStore.from_url(url, namespace=namespace)


def hides_running(url: str, namespace: str) -> RedisStore:
    return HidesRunningStore.from_url(url, namespace=namespace)


def withholding(url: str, namespace: str) -> RedisStore:
    return WithholdingStore.from_url(url, namespace=namespace)


def memory() -> MemoryStore:
    """The README's plugin example: a factory that returns a MemoryStore."""
    return MemoryStore()


def unchanged(url: str, namespace: str, result_ttl: float, dead_ttl: float) -> RedisStore:
    """The real store through the same factory path: it must pass every command above."""
    return RedisStore.from_url(url, namespace=namespace, result_ttl=result_ttl, dead_ttl=dead_ttl)


class CrashingStore(RedisStore):
    """enqueue() raises an error no submitter handles: the child process dies of it."""

    async def enqueue(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        raise RuntimeError("enqueue refused on purpose by CrashingStore")


def crashing(url: str, namespace: str) -> RedisStore:
    return CrashingStore.from_url(url, namespace=namespace)


class UnfencedCancelStore(RedisStore):
    """Cancels waiting tasks, but reports a running task cancelled without fencing it off:
    its worker renews and settles as if nothing happened, so it completes after the ack."""

    async def cancel(self, queue: str, task_ids: Sequence[str]) -> list[CancelOutcome]:
        records = await self.get_many(queue, task_ids)
        running = {r.id for r in records if r is not None and r.state is TaskState.RUNNING}
        waiting = [i for i in task_ids if i not in running]
        done = dict(zip(waiting, await super().cancel(queue, waiting), strict=True))
        return [CancelOutcome.CANCELLED_RUNNING if i in running else done[i] for i in task_ids]


def unfenced_cancel(url: str, namespace: str) -> RedisStore:
    return UnfencedCancelStore.from_url(url, namespace=namespace)


class NoDedupStore(RedisStore):
    """Stores a task whose id already exists under a fresh id, and reports it accepted: a
    periodic tick submitted by every worker process then runs once per process."""

    async def enqueue(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        report = await super().enqueue(queue, items, max_size)
        again = [
            dataclasses.replace(i, id=f"{i.id}~{uuid.uuid4().hex[:6]}")
            for i in items
            if i.id in report.duplicates
        ]
        if again:
            await super().enqueue(queue, again, max_size)
        return EnqueueReport([i.id for i in items], [])


def no_dedup(url: str, namespace: str) -> RedisStore:
    return NoDedupStore.from_url(url, namespace=namespace)


def elsewhere(url: str, namespace: str) -> RedisStore:
    """A store the harness cannot read on its own (its keys are not under the run's
    namespace): the leftover checks judge its `contents()` instead."""
    return RedisStore.from_url(url, namespace=f"x{namespace}")


def elsewhere_hidden(url: str, namespace: str, result_ttl: float) -> RedisStore:
    """`hidden_payload` where the harness cannot read the keys itself: its own contents
    still show the payload bytes it kept, which its payload_ids() never reports."""
    return HiddenPayloadStore.from_url(url, namespace=f"x{namespace}", result_ttl=result_ttl)
