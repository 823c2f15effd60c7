"""How cost grows with depth: enqueue N no-op tasks in batches, record Redis bytes per
queued task, then drain them with P worker processes; per-task times and bytes should stay
flat as N grows from 1k to 1M.

    python benchmarks/growth.py [--sizes 1000,10000,100000,1000000] [--procs 4]
        [--out benchmarks/results/growth]

Starts its own redis-server; writes <out>.md (table) and <out>.png (plot, needs
matplotlib: pip install -e ".[bench]")."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import multiprocess
import redis.asyncio as aioredis

from harness.servers import RedisServer
from kew_plug import Queue, TaskSpec, Worker
from kew_plug.backends.redis import RedisStore

SECRET = "growth-benchmark-secret-0123456789"
noop = abs  # importable everywhere: the payload carries a reference, not code


def make_queue(url: str) -> Queue:
    store = RedisStore.from_url(url, namespace="growth")
    return Queue(store, "cloudpickle", name="g", secret=SECRET)


def drain_worker(url: str, start: Any) -> None:
    async def main() -> None:
        queue = make_queue(url)
        await queue.store.ping()  # type: ignore[attr-defined]
        await asyncio.to_thread(start.wait)
        await Worker(queue, concurrency=32).drain()
        await queue.aclose()

    asyncio.run(main())


async def used_memory(admin: aioredis.Redis) -> int:
    return int((await admin.info("memory"))["used_memory"])


async def one_size(url: str, n: int, procs: int) -> dict[str, float]:
    admin = aioredis.Redis.from_url(url)
    await admin.flushall()
    queue = make_queue(url)
    await queue.submit(noop, (0,))  # warm-up: scripts loaded, connections open
    await Worker(queue).drain()
    before = await used_memory(admin)
    started = time.perf_counter()
    for first in range(0, n, 1000):
        await queue.submit_many(TaskSpec(noop, (-i,)) for i in range(first, min(first + 1000, n)))
    enqueue_s = time.perf_counter() - started
    bytes_per_task = (await used_memory(admin) - before) / n
    ctx = multiprocess.get_context("spawn")
    start = ctx.Barrier(procs + 1)
    workers = [ctx.Process(target=drain_worker, args=(url, start)) for _ in range(procs)]
    for w in workers:
        w.start()
    await asyncio.to_thread(start.wait, 120)
    started = time.perf_counter()
    # Done when the store holds nothing unfinished (the workers' own exit adds an idle tail).
    while (await queue.store.stats("g")).pending:  # noqa: ASYNC110 - polls another process
        await asyncio.sleep(0.002)
    drain_s = time.perf_counter() - started
    for w in workers:
        await asyncio.to_thread(w.join, 60)
    left = (await queue.store.stats("g")).pending
    await queue.aclose()
    await admin.aclose()
    if left:
        raise RuntimeError(f"{left} tasks left after the drain of {n}")
    return {
        "n": n,
        "enqueue_us": enqueue_s / n * 1e6,
        "drain_us": drain_s / n * 1e6,
        "bytes": bytes_per_task,
    }


def write(rows: list[dict[str, float]], out: Path, procs: int) -> None:
    lines = [
        f"Batch enqueue (submit_many, 1,000 per call), then drain by {procs} worker processes "
        "(Worker(concurrency=32)); signed cloudpickle payloads; one redis-server.",
        "",
        "| tasks queued | enqueue µs/task | drain µs/task | Redis bytes/task |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['n']):,} | {r['enqueue_us']:.1f} | {r['drain_us']:.1f} | {r['bytes']:.0f} |"
        )
    base = rows[0]
    spread = {
        k: max(r[k] for r in rows) / min(r[k] for r in rows)
        for k in ("enqueue_us", "drain_us", "bytes")
    }
    lines += [
        "",
        "max/min over sizes: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in spread.items())
        + f" (first size {int(base['n']):,})",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install -e '.[bench]')")
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    ns = [r["n"] for r in rows]
    a1.plot(ns, [r["enqueue_us"] for r in rows], "o-", label="enqueue")
    a1.plot(ns, [r["drain_us"] for r in rows], "s-", label="drain")
    a1.set(xscale="log", xlabel="tasks queued", ylabel="µs per task", ylim=(0, None))
    a1.legend()
    a2.plot(ns, [r["bytes"] for r in rows], "o-", color="C2")
    a2.set(xscale="log", xlabel="tasks queued", ylabel="Redis bytes per task", ylim=(0, None))
    fig.suptitle("kew-plug: cost per task as the queue grows")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)


async def main(sizes: list[int], procs: int, out: Path) -> None:
    rows = []
    with RedisServer() as server:
        # Not recorded: the first pass in a fresh process and server pays one-off costs
        # (imports, script loading, allocator growth) that belong to no size.
        await one_size(server.url, 2000, procs)
        for n in sizes:
            row = await one_size(server.url, n, procs)
            print(row, flush=True)
            rows.append(row)
    write(rows, out, procs)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="1000,10000,100000,1000000")
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--out", default="benchmarks/results/growth")
    a = p.parse_args()
    asyncio.run(main([int(x) for x in a.sizes.split(",")], a.procs, Path(a.out)))
