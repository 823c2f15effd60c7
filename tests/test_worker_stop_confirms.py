"""A stopping worker confirms the results it holds as soon as the store is back, even while
its settler was pausing between failed attempts: a result left unconfirmed makes the task
run again once its lease runs out (seen when a worker was stopped right after a failover)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kew_plug import Queue, StoreUnavailable, TaskState, Worker
from kew_plug.backends.memory import MemoryStore
from kew_plug.models import Outcome

FAILURES = 5  # the pause after the fifth failure (1.6 s) outlasts the 1 s shutdown grace


class SettleOutage(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.failed = 0
        self.paused = asyncio.Event()

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        if self.failed < FAILURES:
            self.failed += 1
            if self.failed == FAILURES:
                self.paused.set()  # the settler now pauses 1.6 s before its next try
            raise StoreUnavailable("cannot reach the store: outage")
        return await super().settle(queue, outcomes)


async def test_a_stopping_worker_settles_at_once_when_the_store_is_back() -> None:
    store = SettleOutage()
    queue = Queue(store, name="outage")
    handle = await queue.submit(abs, (-3,))
    worker = Worker(queue, shutdown_timeout=0.0)
    run = asyncio.create_task(worker.run())
    await store.paused.wait()  # the outage is over from here on
    worker.stop()
    await run
    assert await queue.status(handle.id) is TaskState.COMPLETED
    assert await queue.result(handle.id, timeout=1) == 3
