"""Concurrent submits share store calls (kew_plug/group_commit.py), and each still gets the
answer it would have had alone: its id, a duplicate refused, the queue full, the store's
error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kew_plug import Queue, QueueFull, StoreUnavailable, TaskExists, TaskHandle, Worker
from kew_plug.interfaces import Store
from kew_plug.models import EnqueueReport, NewTask, TaskState
from tests.conftest import StoreFactory


class Gate:
    """Wraps a store's enqueue: records each call's size and holds each call until the test
    lets it through (`let_through`), so the test decides who is waiting when it returns."""

    def __init__(self, store: Store, fail: Exception | None = None) -> None:
        self.sizes: list[int] = []
        self.passes = asyncio.Semaphore(0)
        self.arrived = asyncio.Condition()
        self.fail = fail
        real = store.enqueue

        async def enqueue(
            queue: str, items: Sequence[NewTask], max_size: int | None = None
        ) -> EnqueueReport:
            async with self.arrived:
                self.sizes.append(len(items))
                self.arrived.notify_all()
            await self.passes.acquire()
            if self.fail is not None:
                raise self.fail
            return await real(queue, items, max_size)

        store.enqueue = enqueue  # type: ignore[method-assign]

    async def calls(self, n: int) -> None:
        """Until n calls have arrived."""
        async with self.arrived:
            await self.arrived.wait_for(lambda: len(self.sizes) >= n)

    def let_through(self, n: int = 1000) -> None:
        for _ in range(n):
            self.passes.release()


async def line_up(queue: Queue, gate: Gate, n: int) -> list[asyncio.Task[TaskHandle]]:
    """n submits: the first one's call is held at the gate while the other n-1 wait in line.
    A task runs up to its first suspension when the loop next turns, so one turn of the loop
    puts every one of them in line (they await nothing else before)."""
    first = asyncio.create_task(queue.submit(abs, (-1,)))
    await gate.calls(1)
    rest = [asyncio.create_task(queue.submit(abs, (-i,))) for i in range(2, n + 1)]
    await asyncio.sleep(0)
    return [first, *rest]


async def test_submits_waiting_during_a_call_go_in_the_next_one(make_store: StoreFactory) -> None:
    store = make_store()
    gate = Gate(store)
    queue = Queue(store, "cloudpickle", name="grouped")
    tasks = await line_up(queue, gate, 50)
    gate.let_through()
    handles = await asyncio.gather(*tasks)
    assert gate.sizes == [1, 49]
    assert len({h.id for h in handles}) == 50
    await Worker(queue).drain()
    assert sorted(await queue.wait_many([h.id for h in handles], timeout=5)) == list(range(1, 51))
    await queue.aclose()


async def test_a_duplicate_id_in_a_group_is_refused_and_the_first_kept(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    gate = Gate(store)
    queue = Queue(store, "cloudpickle", name="dups")
    first = asyncio.create_task(queue.submit(abs, (0,)))
    await gate.calls(1)
    a = asyncio.create_task(queue.submit(abs, (-1,), task_id="same"))
    b = asyncio.create_task(queue.submit(abs, (-2,), task_id="same"))
    await asyncio.sleep(0)
    gate.let_through()
    await first
    assert (await a).id == "same"
    with pytest.raises(TaskExists):
        await b
    assert gate.sizes == [1, 2]
    await Worker(queue).drain()
    assert await queue.result("same", timeout=5) == 1
    await queue.aclose()


async def test_a_full_queue_refuses_only_the_submits_that_do_not_fit(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    gate = Gate(store)
    queue = Queue(store, "cloudpickle", name="full", max_size=3)
    tasks = await line_up(queue, gate, 6)
    gate.let_through()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, QueueFull)]
    assert len(refused) == 3 and len(outcomes) - len(refused) == 3
    assert (await store.stats("full")).queued == 3
    await queue.aclose()


async def test_a_store_error_reaches_every_submit_of_the_call(make_store: StoreFactory) -> None:
    store = make_store()
    gate = Gate(store, fail=StoreUnavailable("cannot reach Redis at test: down"))
    queue = Queue(store, "cloudpickle", name="down", submit_retries=0)
    tasks = await line_up(queue, gate, 5)
    gate.let_through()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert (await store.stats("down")).queued == 0
    await queue.aclose()


async def test_a_cancelled_leader_still_gets_the_others_stored(make_store: StoreFactory) -> None:
    store = make_store()
    gate = Gate(store)
    queue = Queue(store, "cloudpickle", name="leader")
    first, second, third = await line_up(queue, gate, 3)
    gate.let_through(1)
    await first
    await gate.calls(2)  # the second submit now leads a call carrying itself and the third
    assert gate.sizes == [1, 2]
    second.cancel()
    gate.let_through(1)
    handle = await third
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await queue.status(handle.id) is TaskState.QUEUED
    assert (await store.stats("leader")).queued == 3  # the cancelled caller's call went through
    await queue.aclose()
