"""Worker lifecycle under stalls and signals: a claim whose lease ran out before its task
started is not started; SIGTERM stops a worker process gracefully, releasing its claims."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import multiprocess
import pytest

from kew_plug import Queue, TaskState, Worker
from kew_plug.backends.memory import MemoryStore
from kew_plug.backends.redis import RedisStore
from kew_plug.models import ClaimBatch

RAN: list[int] = []


def record(i: int) -> int:
    RAN.append(i)
    return i


class StallAfterClaim(MemoryStore):
    """The process stalls right after its first claim returns (as if SIGSTOPped)."""

    stalled = False

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        batch = await super().claim(queue, worker, limit, lease_ms)
        if batch.claims and not self.stalled:
            self.stalled = True
            time.sleep(lease_ms / 1000 + 0.1)  # noqa: ASYNC251 - a stall of the whole loop
        return batch


async def test_claim_whose_lease_ran_out_before_start_is_not_started() -> None:
    RAN.clear()
    store = StallAfterClaim()
    queue = Queue(store, "cloudpickle", name="stall")
    handles = [await queue.submit(record, (i,)) for i in range(3)]
    worker = Worker(queue, lease=0.2, concurrency=3, recover_interval=0.05)
    await asyncio.wait_for(worker.drain(), 20)
    assert worker.stats.expired_unstarted == 3
    assert sorted(RAN) == [0, 1, 2]  # each ran once, after recovery, not twice
    records = [await queue.info(h.id) for h in handles]
    assert all(r is not None and r.state is TaskState.COMPLETED for r in records)
    assert all(r is not None and r.attempts == 2 for r in records)


def blocking_worker(url: str, namespace: str) -> None:
    async def main() -> None:
        store = RedisStore.from_url(url, namespace=namespace)
        worker = Worker(Queue(store, name="term"), concurrency=2, shutdown_timeout=0.2)
        worker.install_signal_handlers()
        await worker.run()
        await store.aclose()

    asyncio.run(main())


async def sleeper(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_sigterm_stops_a_worker_process_and_releases_its_claims(
    embedded_url: str, namespace: str
) -> None:
    store = RedisStore.from_url(embedded_url, namespace=namespace)
    queue = Queue(store, name="term")
    handles = [await queue.submit(sleeper, (60,)) for _ in range(2)]
    ctx = multiprocess.get_context("spawn")
    proc: Any = ctx.Process(target=blocking_worker, args=(embedded_url, namespace))
    proc.start()
    try:
        deadline = time.monotonic() + 20
        while (await store.stats("term")).running < 2:
            assert time.monotonic() < deadline, "worker never claimed"
            await asyncio.sleep(0.02)
        os.kill(proc.pid, signal.SIGTERM)
        await asyncio.to_thread(proc.join, 20)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
    stats = await store.stats("term")
    assert (stats.queued, stats.running) == (2, 0)
    for h in handles:
        record = await queue.info(h.id)
        assert record is not None and record.attempts == 0  # a release is not an attempt
    await store.aclose()


def test_install_signal_handlers_needs_a_running_loop() -> None:
    worker = Worker(Queue("memory"))
    with pytest.raises(RuntimeError):
        worker.install_signal_handlers()
