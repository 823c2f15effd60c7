"""What `replicas=N` costs: single and batch enqueue, and claim + settle, on a local Redis
Cluster the script starts (3 primaries, 3 replicas), with replicas=0 and replicas=1, and on a
single redis-server for reference. Medians of `--repeat` runs; one process, one queue.

    python benchmarks/cluster_cost.py [--tasks 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from harness.cluster import LocalCluster
from harness.servers import RedisServer
from kew_plug.backends.redis import RedisStore
from kew_plug.models import NewTask, Outcome, OutcomeKind

PAYLOAD = b"x" * 120


async def measure(url: str, tasks: int, replicas: int) -> dict[str, float]:
    store = RedisStore.from_url(url, namespace="cost", replicas=replicas)
    q = "cost"
    try:
        await store.purge_namespace()
        started = time.perf_counter()
        for i in range(tasks):
            await store.enqueue(q, [NewTask(f"s{i}", PAYLOAD, 0, 0, 1)])
        single = tasks / (time.perf_counter() - started)
        started = time.perf_counter()
        for b in range(0, tasks, 500):
            batch = [NewTask(f"b{i}", PAYLOAD, 0, 0, 1) for i in range(b, min(b + 500, tasks))]
            await store.enqueue(q, batch)
        batched = tasks / (time.perf_counter() - started)
        started, done = time.perf_counter(), 0
        while done < 2 * tasks:
            claims = (await store.claim(q, "w", 50, 30_000)).claims
            outcomes = [Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"") for c in claims]
            await store.settle(q, outcomes)
            done += len(claims)
        settled = done / (time.perf_counter() - started)
        return {"single enqueue/s": single, "batch enqueue/s": batched, "claim+settle/s": settled}
    finally:
        await store.purge_namespace()
        await store.aclose()


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []

    def run(label: str, url: str, replicas: int) -> None:
        runs = [asyncio.run(measure(url, a.tasks, replicas)) for _ in range(a.repeat)]
        rows.append((label, medians(runs)))

    with RedisServer() as server:
        run("single redis-server", server.url, 0)
    with LocalCluster() as cluster:
        run("cluster, replicas=0", cluster.url, 0)
        run("cluster, replicas=1", cluster.url, 1)
    names = list(rows[0][1])
    print("| setup | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, values in rows:
        print(f"| {label} | " + " | ".join(f"{values[n]:,.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()
