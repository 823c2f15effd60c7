"""From a settlement to the waiting caller: how long after the settle call starts does a
caller blocked in `Store.watch` (another connection) wake, on a throwaway redis-server.

    python benchmarks/notify_latency.py"""

from __future__ import annotations

import asyncio
import statistics
import time

from harness.servers import RedisServer
from kew_plug.backends.redis import RedisStore
from kew_plug.models import NewTask, Outcome, OutcomeKind


async def main(url: str) -> None:
    a = RedisStore.from_url(url, namespace="lat")
    b = RedisStore.from_url(url, namespace="lat")
    lat = []
    for n in range(300):
        tid = f"t{n}"
        await a.enqueue("q", [NewTask(tid, b"x", 0, 0, 1)])
        (c,) = (await a.claim("q", "w", 1, 30000)).claims
        waiter = asyncio.create_task(b.watch("q", [tid], 5.0))
        await asyncio.sleep(0.002)  # the watcher registers and blocks first
        t0 = time.perf_counter()
        await a.settle("q", [Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"r")])
        await waiter
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    q = statistics.quantiles(lat, n=100)
    print(f"settle call start -> watcher woken: p50 {q[49]:.2f} ms p99 {q[98]:.2f} ms")
    await a.aclose()
    await b.aclose()


if __name__ == "__main__":
    with RedisServer() as server:
        asyncio.run(main(server.url))
