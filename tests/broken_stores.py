"""Deliberately broken stores: the harness must catch each one and name the right check.
Factories take the run's server `url` and `namespace`, as `--store pkg.mod:factory` offers."""

from __future__ import annotations

from collections.abc import Sequence

from kew_plug.backends.redis import RedisStore
from kew_plug.backends.redis.keys import FIELD
from kew_plug.models import (
    Claim,
    ClaimBatch,
    EnqueueReport,
    NewTask,
    Outcome,
    OutcomeKind,
    TaskState,
)


class DoubleClaimStore(RedisStore):
    """Makes every 5th claimed task claimable again at once: two live claims, one task."""

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
