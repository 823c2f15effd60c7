"""Workers take hand-offs on stores that declare them (Store.hands_off): a task submitted
while a worker waits is handed straight to it, and a deferred task still starts on time
while the worker waits for hand-offs."""

from __future__ import annotations

import asyncio
import time

from kew_plug import Queue, Worker
from tests.conftest import StoreFactory


async def test_tasks_submitted_to_a_waiting_worker_are_handed_to_it(
    make_store: StoreFactory,
) -> None:
    queue = Queue(make_store(), name="handed")
    worker = Worker(queue, concurrency=4)
    run = asyncio.create_task(worker.run())
    # The first may come before the worker's first claim, which is what makes its offer.
    first = await queue.submit(abs, (0,))
    assert await queue.result(first.id, timeout=5) == 0
    for i in range(1, 21):
        handle = await queue.submit(abs, (-i,))
        assert await queue.result(handle.id, timeout=5) == i
    worker.stop()
    await run
    assert worker.stats.completed == 21
    # Each later task was submitted while the worker waited. A handed task starts inside
    # the wait that received it, so its result can be read before the worker renews an
    # offer whose slots that hand-off used up (every 4th, concurrency 4): the next submit
    # may then find no offer and be claimed instead. Every other one is handed over.
    if queue.store.hands_off:
        assert 20 - 20 // 4 <= worker.stats.handed <= 20
    else:
        assert worker.stats.handed == 0
    await queue.aclose()


async def test_a_deferred_task_starts_on_time_while_the_worker_waits_for_hand_offs(
    make_store: StoreFactory,
) -> None:
    queue = Queue(make_store(), name="due")
    worker = Worker(queue, concurrency=3, wait_timeout=5.0)
    run = asyncio.create_task(worker.run())
    due = await queue.submit(abs, (-1,), delay=0.5)
    submitted = time.monotonic()
    now = await queue.submit(abs, (-2,))  # handed over: the worker keeps waiting for more
    assert await queue.result(now.id, timeout=5) == 2
    assert await queue.result(due.id, timeout=5) == 1
    # Due after 0.5 s; a worker blind to it would wait out its 5 s wait_timeout first.
    assert time.monotonic() - submitted < 2.5
    worker.stop()
    await run
    await queue.aclose()
