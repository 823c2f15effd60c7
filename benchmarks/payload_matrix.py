"""Payload sizes against every store: does a payload (and a result of the same size) come
back byte for byte, and how long do submit + claim + settle take; then Redis memory per
queued task for small and large payloads.

    python benchmarks/payload_matrix.py [--repeats 3] [--tasks 200] [--out PATH.md]

Starts its own redis-server and a local 6-node Redis Cluster; prints markdown tables (and
writes them to --out). Times are the median over --repeats rounds, one task per round, at
the Store level (the Queue adds serialization, which is not what is measured here)."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack

import redis.asyncio as aioredis

from harness.cluster import LocalCluster
from harness.servers import RedisServer
from kew_plug.backends.fake import FakeRedisStore
from kew_plug.backends.memory import MemoryStore
from kew_plug.backends.redis import RedisStore
from kew_plug.interfaces import Store
from kew_plug.models import NewTask, Outcome, OutcomeKind
from kew_plug.queue import DEFAULT_MAX_PAYLOAD

KB, MB = 1024, 1024 * 1024
SIZES = [("1 KB", KB), ("100 KB", 100 * KB), ("1 MB", MB), ("10 MB", 10 * MB)]
SIZES.append(("16 MiB (limit)", DEFAULT_MAX_PAYLOAD))


async def round_trip(store: Store, queue: str, size: int, repeats: int) -> tuple[bool, float]:
    """(every round came back byte for byte, median seconds of enqueue + claim + settle)."""
    times: list[float] = []
    ok = True
    for r in range(repeats):
        payload, result = os.urandom(size), os.urandom(size)
        start = time.perf_counter()
        await store.enqueue(queue, [NewTask(f"t{r}", payload)])
        (claim,) = (await store.claim(queue, "w", 1, 60_000)).claims
        done = Outcome(claim.id, claim.token, OutcomeKind.COMPLETE, result=result)
        applied = await store.settle(queue, [done])
        times.append(time.perf_counter() - start)
        record = await store.get(queue, f"t{r}")
        ok = ok and claim.payload == payload and applied == [True]
        ok = ok and record is not None and record.result == result
    await store.purge(queue)
    return ok, statistics.median(times)


async def memory_per_task(url: str, size: int, tasks: int) -> tuple[float, int]:
    """(used_memory growth per queued task, MEMORY USAGE of one task hash) in bytes."""
    admin = aioredis.Redis.from_url(url)
    store = RedisStore.from_url(url, namespace=f"mem{size}")
    await store.enqueue("warm", [NewTask("w", b"x")])  # scripts loaded before measuring
    before = int((await admin.info("memory"))["used_memory"])
    payload = os.urandom(size)
    for start in range(0, tasks, 50):
        batch = [NewTask(f"t{i}", payload) for i in range(start, min(start + 50, tasks))]
        await store.enqueue("q", batch)
    after = int((await admin.info("memory"))["used_memory"])
    one = int(await admin.memory_usage(store.keys("q").task("t0"), samples=0) or 0)
    encoding = await admin.object("encoding", store.keys("q").task("t0"))
    print(f"  {size} B payload: task hash encoding {encoding!r}")
    await store.purge_namespace()
    await store.aclose()
    await admin.aclose()
    return (after - before) / tasks, one


async def main(repeats: int, tasks: int) -> str:
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer())
        cluster = stack.enter_context(LocalCluster())
        makers: dict[str, Callable[[], Store]] = {
            "memory": MemoryStore,
            "fakeredis": FakeRedisStore,
            "redis": lambda: RedisStore.from_url(server.url, namespace="matrix"),
            "redis-cluster": lambda: RedisStore.from_url(cluster.url, namespace="matrix"),
        }
        admin = aioredis.Redis.from_url(server.url)
        version = (await admin.info("server"))["redis_version"]
        await admin.aclose()
        lines = [
            f"Run {time.strftime('%Y-%m-%d %H:%M')} on {platform.platform()}, "
            f"{os.cpu_count()} CPUs, redis-server {version}",
            "",
            f"Payload and result of each size: ok, and median ms of enqueue + claim + settle "
            f"(one task, {repeats} rounds)",
            "",
            "| size | " + " | ".join(makers) + " |",
            "|---|" + "---|" * len(makers),
        ]
        stores = {name: make() for name, make in makers.items()}
        for label, size in SIZES:
            cells = []
            for name, store in stores.items():
                ok, seconds = await round_trip(store, f"q{size}", size, repeats)
                cells.append(f"{'ok' if ok else 'FAIL'} {seconds * 1000:.1f} ms")
                print(f"  {label} on {name}: {cells[-1]}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for store in stores.values():
            await store.aclose()
        lines += [
            "",
            f"Redis memory per queued task ({tasks} tasks, redis-server "
            "defaults, used_memory delta / tasks; MEMORY USAGE of one task hash)",
            "",
            "| payload | used_memory per task | MEMORY USAGE of one task |",
            "|---|---|---|",
        ]
        for label, size in SIZES[:2]:
            per_task, one = await memory_per_task(server.url, size, tasks)
            lines.append(f"| {label} | {per_task:,.0f} B | {one:,} B |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    table = asyncio.run(main(a.repeats, a.tasks))
    print(table)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(table)
