"""kew-plug on uvloop, the event loop of uvicorn and of many web apps: its transports are
not asyncio.Transport subclasses, and the lean connections once refused them (every script
call failed with "Connection closed")."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kew_plug import Queue, Worker
from kew_plug.backends.redis import RedisStore

uvloop = pytest.importorskip("uvloop")


async def _round_trip(url: str) -> tuple[int, int]:
    queue = Queue(RedisStore.from_url(url, namespace=f"uv{uuid.uuid4().hex[:8]}"), name="uv")
    worker = Worker(queue, concurrency=2)
    run = asyncio.create_task(worker.run())
    results = []
    try:
        async with asyncio.timeout(20):
            for i in range(5):  # the first is claimed; the later ones are handed over
                handle = await queue.submit(abs, (-i,))
                results.append(await queue.result(handle.id, timeout=10))
    finally:
        worker.stop()
        await run
        await queue.aclose()
    assert results == [0, 1, 2, 3, 4]
    return worker.stats.completed, worker.stats.handed


def test_submit_work_and_results_on_uvloop(redis_url: str) -> None:
    completed, handed = uvloop.run(_round_trip(redis_url))
    assert completed == 5
    assert handed >= 1  # through the blocking connections, on uvloop's transports
