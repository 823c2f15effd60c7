"""Concurrent producers: 1, 10 and 50 coroutines submit at once, as the requests of a web
app do, each with `Queue.submit` (one task per call). Concurrent submits are grouped into
one store call (kew_plug/group_commit.py), so throughput should rise with concurrency.

    python benchmarks/concurrent_producers.py [--tasks 10000] [--repeat 3] [--md out.md]

Its own throwaway redis-server; signed cloudpickle payloads as in production; no workers
(submission only). Per concurrency: tasks/s (median of the repeats), the ratio to one
submitter, script calls per task (from INFO commandstats) and submit latency p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import redis.asyncio as aioredis

from harness.servers import RedisServer
from kew_plug import Queue
from kew_plug.backends.redis import RedisStore

LEVELS = (1, 10, 50)
noop = abs  # importable everywhere: the payload carries a reference, not code


async def one_run(url: str, tasks: int, producers: int) -> tuple[float, float, list[float]]:
    admin = aioredis.Redis.from_url(url)
    await admin.flushall()
    queue = Queue(RedisStore.from_url(url, namespace="bench"), name="p", secret="s" * 32)
    await queue.submit(noop, (0,))  # connections open, script loaded
    await admin.config_resetstat()
    latencies: list[float] = []
    share = tasks // producers

    async def producer(p: int) -> None:
        for i in range(share):
            t0 = time.perf_counter()
            await queue.submit(noop, (p * share + i,))
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(producer(p) for p in range(producers)))
    elapsed = time.perf_counter() - start
    stats = await admin.info("commandstats")
    calls = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    await queue.aclose()
    await admin.aclose()
    return share * producers / elapsed, calls / (share * producers), latencies


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def main(tasks: int, repeat: int) -> str:
    rows = []
    with RedisServer() as server:
        base = 0.0
        for producers in LEVELS:
            runs = [await one_run(server.url, tasks, producers) for _ in range(repeat)]
            rate = statistics.median(r[0] for r in runs)
            calls = statistics.median(r[1] for r in runs)
            lat = [x for r in runs for x in r[2]]
            base = base or rate
            rows.append(
                f"| {producers} | {rate:,.0f} | {rate / base:.2f}x | {calls:.3f} | "
                f"{pct(lat, 0.5) * 1e3:.2f} | {pct(lat, 0.99) * 1e3:.2f} |"
            )
    text = "\n".join(
        [
            f"{tasks} submits per run, medians of {repeat}; one process, one event loop",
            "",
            "| concurrent submitters | tasks/s | vs 1 | store calls per task "
            "| submit p50 ms | submit p99 ms |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    return text


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--md", default=None, help="append the table to this Markdown file")
    a = p.parse_args()
    text = asyncio.run(main(a.tasks, a.repeat))
    print(text)
    if a.md:
        with open(a.md, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")
