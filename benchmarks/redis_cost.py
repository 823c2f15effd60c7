"""What kew-plug costs a Redis server: round trips and commands per task for enqueue,
claim and settle in steady state, and memory per queued no-op task.

    python benchmarks/redis_cost.py [--tasks 10000] [--batch 1000] [--concurrency 100]

Starts its own throwaway redis-server; prints a table. Signing is on (as in production)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import redis.asyncio as aioredis

from harness.servers import RedisServer
from kew_plug import Queue, TaskSpec, Worker
from kew_plug.backends.redis import RedisStore

# A function importable everywhere, so the payload carries a reference, not code.
noop = abs


async def commandstats(client: aioredis.Redis) -> dict[str, int]:
    info: dict[str, Any] = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


SCRIPTED = {"evalsha", "eval"}
CLIENT_SIDE = {"blpop", "hgetall", "zcard", "ping", "info", "zrange", "scan", "hexists"}


def summarize(name: str, d: dict[str, int], tasks: int) -> str:
    trips = sum(v for k, v in d.items() if k in SCRIPTED | CLIENT_SIDE)
    total = sum(d.values())
    detail = ", ".join(f"{k}={v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:8])
    return f"| {name} | {trips / tasks:.3f} | {total / tasks:.2f} | {detail} |"


async def main(tasks: int, batch: int, concurrency: int) -> None:
    with RedisServer() as server:
        admin = aioredis.Redis.from_url(server.url)
        store = RedisStore.from_url(server.url, namespace="cost")
        queue = Queue(store, "cloudpickle", name="cost", secret="k" * 32)
        await queue.submit(noop, (0,))  # warm-up: scripts loaded, connections open
        await Worker(queue).drain()
        mem0 = int((await admin.info("memory"))["used_memory"])
        before = await commandstats(admin)
        for start in range(0, tasks, batch):
            await queue.submit_many(
                TaskSpec(noop, (i,)) for i in range(start, min(start + batch, tasks))
            )
        after_enqueue = await commandstats(admin)
        mem1 = int((await admin.info("memory"))["used_memory"])
        worker = Worker(queue, concurrency=concurrency)
        await worker.drain()
        after_drain = await commandstats(admin)
        await queue.aclose()
        await admin.aclose()
    print(f"{tasks} no-op tasks, submit_many batches of {batch}, one worker of {concurrency}")
    print(f"Redis memory per queued task: {(mem1 - mem0) / tasks:.0f} bytes")
    print("| phase | round trips/task | commands/task (incl. in Lua) | commands |")
    print("|---|---|---|---|")
    skip = {"info", "config|resetstat"}
    enq = {k: v for k, v in delta(after_enqueue, before).items() if k not in skip}
    drain = {k: v for k, v in delta(after_drain, after_enqueue).items() if k not in skip}
    print(summarize("enqueue", enq, tasks))
    print(summarize("claim + settle (drain)", drain, tasks))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=100)
    a = p.parse_args()
    asyncio.run(main(a.tasks, a.batch, a.concurrency))
