"""Four OS processes claim from one queue at once: every task is claimed exactly once, on
the embedded fakeredis server and on a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import multiprocess
import pytest

from kew_plug.backends.redis import RedisStore
from kew_plug.models import NewTask

pytestmark = pytest.mark.multiprocess
TASKS, PROCS = 2000, 4


def claimer(url: str, namespace: str, start: Any, out: Any) -> None:
    async def main() -> list[str]:
        store = RedisStore.from_url(url, namespace=namespace)
        await store.ping()  # connected before the start, so every contender is at the line
        got: list[str] = []
        await asyncio.to_thread(start.wait)
        while True:
            batch = await store.claim("race", "w", 7, 60_000)
            if not batch.claims:
                break
            got += [c.id for c in batch.claims]
        await store.aclose()
        return got

    out.put(asyncio.run(main()))


@pytest.mark.parametrize("server", ["embedded", "redis"])
async def test_four_processes_claim_each_task_exactly_once(
    server: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    url = request.getfixturevalue("embedded_url" if server == "embedded" else "redis_url")
    store = RedisStore.from_url(url, namespace=namespace)
    try:
        await race(store, url, namespace)
    finally:
        await store.aclose()


async def race(store: RedisStore, url: str, namespace: str) -> None:
    await store.enqueue("race", [NewTask(f"t{i}", b"p") for i in range(TASKS)])
    ctx = multiprocess.get_context("spawn")
    start, out = ctx.Barrier(PROCS + 1), ctx.Queue()
    procs = [ctx.Process(target=claimer, args=(url, namespace, start, out)) for _ in range(PROCS)]
    for p in procs:
        p.start()
    await asyncio.to_thread(start.wait, 60)  # every claimer connected: go
    try:
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    claimed = [i for r in results for i in r]
    assert len(claimed) == TASKS
    assert set(claimed) == {f"t{i}" for i in range(TASKS)}
    assert sum(1 for r in results if r) >= 2  # the race really had several contenders
    assert (await store.stats("race")).running == TASKS
