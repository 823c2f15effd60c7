"""What draining a backlog costs each process, in the steady state: 4 worker processes (or
--workers) take a queue of no-op tasks filled beforehand, and the CPU of the workers and of
Redis is read between two points of the drain (after every worker is up, before the end),
so neither start-up nor the last idle claims count.

    python benchmarks/drain_cost.py [--tasks 40000] [--repeat 3] [--workers 4]

Own throwaway redis-server. Per task: the workers' CPU µs (user + sys, from /proc), Redis's
CPU µs (INFO cpu) and the Redis commands run (scripts and the commands inside them), and
the rate over that stretch. Compare with benchmarks/trickle_cost.py: the same tasks, one at
a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time

import redis

from harness.servers import RedisServer
from kew_plug import Queue, TaskSpec
from kew_plug.backends.redis import RedisStore

SECRET = "drain-cost-secret-0123456789"
NAMESPACE = "drain"
WORKER = """
import asyncio
from kew_plug import Queue, Worker
from kew_plug.backends.redis import RedisStore

async def main():
    queue = Queue(RedisStore.from_url({url!r}, namespace={ns!r}), "cloudpickle", name="d",
                  secret={secret!r})
    worker = Worker(queue)
    worker.install_signal_handlers()
    await worker.run()
    await queue.aclose()

asyncio.run(main())
"""


async def noop(i: int) -> int:
    return i


async def fill(url: str, tasks: int) -> None:
    queue = Queue(RedisStore.from_url(url, namespace=NAMESPACE), name="d", secret=SECRET)
    for start in range(0, tasks, 1000):
        specs = [TaskSpec(noop, (i,)) for i in range(start, min(tasks, start + 1000))]
        await queue.submit_many(specs)
    await queue.aclose()


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(url: str, tasks: int, count: int) -> dict[str, float]:
    admin = redis.Redis.from_url(url)
    admin.flushall()
    asyncio.run(fill(url, tasks))
    (ready,) = admin.keys(f"{NAMESPACE}:*:ready")
    code = WORKER.format(url=url, ns=NAMESPACE, secret=SECRET)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(count)]

    def snapshot() -> tuple[float, float, float, int, int]:
        info = admin.info("cpu")
        calls = sum(v["calls"] for k, v in admin.info("commandstats").items() if "info" not in k)
        return (
            time.monotonic(),
            sum(cpu_s(w.pid) for w in workers),
            float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            calls,
            int(admin.zcard(ready)),
        )

    try:
        # Past the first eighth: every worker has started (they take tasks from the first).
        while admin.zcard(ready) > tasks * 7 // 8:
            time.sleep(0.005)
        admin.config_resetstat()
        a = snapshot()
        while admin.zcard(ready) > tasks // 8:
            time.sleep(0.005)
        b = snapshot()
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
    done = a[4] - b[4]
    return {
        "tasks/s": done / (b[0] - a[0]),
        "workers µs": (b[1] - a[1]) / done * 1e6,
        "redis µs": (b[2] - a[2]) / done * 1e6,
        "commands": (b[3] - a[3]) / done,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=40_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=4)
    a = p.parse_args()
    with RedisServer() as server:
        rows = [one_run(server.url, a.tasks, a.workers) for _ in range(a.repeat)]
    names = list(rows[0])
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))
    print("| " + " | ".join(f"{statistics.median(r[k] for r in rows):,.2f}" for k in names) + " |")
    print(f"(medians of {a.repeat} drains of {a.tasks:,} tasks by {a.workers} workers)")


if __name__ == "__main__":
    main()
