"""Queue.result, wait_many and cancel over every store: values in order, failures and
cancellations as exceptions, and a waiting caller woken by the settlement."""

from __future__ import annotations

import asyncio

import pytest

from kew_plug import Queue, TaskSpec, Worker
from kew_plug.errors import TaskCancelled, TaskFailed
from tests.conftest import StoreFactory


def square(n: int) -> int:
    return n * n


STARTED: list[asyncio.Event] = [asyncio.Event()]


async def long_running() -> str:
    STARTED[0].set()
    await asyncio.Event().wait()  # never set: only a cancellation ends it
    return "finished"


def fail(n: int) -> int:
    raise ValueError(f"no {n}")


async def test_wait_many_returns_values_in_order(make_store: StoreFactory) -> None:
    queue = Queue(make_store(), name="res", secret="s" * 32)
    handles = await queue.submit_many([TaskSpec(square, (i,)) for i in range(20)])
    handles.append(await queue.submit(fail, (7,), retries=0))
    victim = await queue.submit(square, (99,), delay=3600)
    assert await queue.cancel(victim.id)
    assert not await queue.cancel(victim.id)  # already cancelled
    worker = Worker(queue, concurrency=4)
    running = asyncio.create_task(worker.run())
    try:
        ids = [h.id for h in handles]
        values = await queue.wait_many([*ids, victim.id], timeout=30, return_exceptions=True)
        with pytest.raises(TaskFailed, match="no 7"):
            await queue.wait_many(ids, timeout=30)
    finally:
        worker.stop()
        await running
    assert values[:20] == [i * i for i in range(20)]
    assert isinstance(values[20], TaskFailed) and isinstance(values[21], TaskCancelled)
    with pytest.raises(TaskCancelled):
        await queue.result(victim.id, timeout=5)
    with pytest.raises(LookupError):
        await queue.result("no-such-task", timeout=5)
    await queue.aclose()


async def test_result_waits_for_a_task_still_to_run(make_store: StoreFactory) -> None:
    queue = Queue(make_store(), name="res", secret="s" * 32)
    handle = await queue.submit(square, (12,))
    waiting = asyncio.create_task(handle.result(timeout=30))
    worker = Worker(queue)
    running = asyncio.create_task(worker.run())
    try:
        assert await waiting == 144
    finally:
        worker.stop()
        await running
    with pytest.raises(TimeoutError):
        await queue.result((await queue.submit(square, (1,), delay=3600)).id, timeout=0.2)
    await queue.aclose()


async def test_a_running_task_cancelled_is_stopped_and_never_completes(
    make_store: StoreFactory,
) -> None:
    started = STARTED[0] = asyncio.Event()  # module state: the task travels by reference
    queue = Queue(make_store(), name="res", secret="s" * 32)
    handle = await queue.submit(long_running)
    worker = Worker(queue, lease=0.3)  # renewals every 0.1 s: the cancel is seen within one
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        assert await queue.cancel(handle.id)
        with pytest.raises(TaskCancelled):
            await handle.result(timeout=10)
        for _ in range(200):  # the worker notices at its next renewal
            if worker.stats.cancelled:
                break
            await asyncio.sleep(0.01)
    finally:
        worker.stop()
        await running
    assert worker.stats.cancelled == 1 and worker.stats.completed == 0
    assert (await queue.status(handle.id)).value == "cancelled"  # type: ignore[union-attr]
    await queue.aclose()
