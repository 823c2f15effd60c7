"""What a trickle of tasks costs each process: one producer submitting one task at a time
(as a web app does) while worker processes (4 unless --workers) run them as they come.

    python benchmarks/trickle_cost.py [--seconds 5] [--repeat 3] [--workers 4] [--strace]

Own throwaway redis-server. Per task: CPU µs (user + sys, from /proc) of the producer, the
workers together and the Redis server, and Redis commands. With `--strace` (needs
strace), one worker is traced while the producer runs: its system calls per send, the
count that changes when a worker needs fewer turns of its event loop per task (each turn
is one epoll_wait). Only counts and same-sitting ratios mean anything on a shared VM.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

from harness.servers import RedisServer
from kew_plug import SyncQueue
from kew_plug.backends.redis import RedisStore

SECRET = "trickle-cost-secret-0123456789"
WORKER = """
import asyncio
from kew_plug import Queue, Worker
from kew_plug.backends.redis import RedisStore

async def main():
    queue = Queue(RedisStore.from_url({url!r}, namespace="trickle"), "cloudpickle",
                  name="t", secret={secret!r})
    worker = Worker(queue)
    worker.install_signal_handlers()
    await worker.run()
    await queue.aclose()

asyncio.run(main())
"""


def noop(i: int) -> int:
    return i


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_s(admin: redis.Redis) -> float:
    info = admin.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def one_run(url: str, seconds: float, trace: bool, count: int) -> dict[str, float]:
    code = WORKER.format(url=url, secret=SECRET)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(count)]
    admin = redis.Redis.from_url(url)
    queue = SyncQueue(RedisStore.from_url(url, namespace="trickle"), name="t", secret=SECRET)
    out = Path(f"/tmp/kew-trickle-{os.getpid()}.strace")
    try:
        for i in range(300):  # workers up, scripts loaded, connections open
            queue.submit(noop, (i,)).result(timeout=30)
        tracer = None
        if trace:
            cmd = ["strace", "-c", "-f", "-o", str(out), "-p", str(workers[0].pid)]
            tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # attached: strace gives no other sign
        w0, r0, p0 = [cpu_s(w.pid) for w in workers], redis_cpu_s(admin), time.process_time()
        admin.config_resetstat()
        n, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            queue.submit(noop, (n,))
            n += 1
        last = queue.submit(noop, (n,))
        last.result(timeout=30)  # every task before it was handed or claimed by now
        elapsed = time.monotonic() - start
        w1, r1, p1 = [cpu_s(w.pid) for w in workers], redis_cpu_s(admin), time.process_time()
        calls = sum(v["calls"] for k, v in admin.info("commandstats").items() if "info" not in k)
        row = {
            "tasks/s": n / elapsed,
            "producer µs": (p1 - p0) / n * 1e6,
            "workers µs": sum(b - a for a, b in zip(w0, w1, strict=True)) / n * 1e6,
            "redis µs": (r1 - r0) / n * 1e6,
            "commands": calls / n,
        }
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
            counts = {}
            for line in out.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 5 and parts[-1] in ("epoll_wait", "sendto", "recvfrom"):
                    counts[parts[-1]] = int(parts[3])
            sends = counts.get("sendto", 0) or 1
            row["epoll_wait/send"] = counts.get("epoll_wait", 0) / sends
            row["recvfrom/send"] = counts.get("recvfrom", 0) / sends
        return row
    finally:
        queue.close()
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(20)
        out.unlink(missing_ok=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--strace", action="store_true")
    p.add_argument("--workers", type=int, default=4)
    a = p.parse_args()
    rows = []
    with RedisServer() as server:
        for _ in range(a.repeat):
            rows.append(one_run(server.url, a.seconds, a.strace, a.workers))
    names = list(rows[0])
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))
    print("| " + " | ".join(f"{statistics.median(r[k] for r in rows):,.2f}" for k in names) + " |")
    print(f"(medians of {a.repeat} runs of {a.seconds:g} s)")


if __name__ == "__main__":
    main()
