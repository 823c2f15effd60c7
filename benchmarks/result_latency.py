"""Submit-to-result latency with an idle worker: how long `await handle.result()` takes
from just before the submit, one task at a time, on a throwaway redis-server. The worker is
a separate OS process (the `kew-plug worker` command), so the time includes its wake-up,
the claim, the run, the settlement and the caller's wake-up.

    python benchmarks/result_latency.py [--tasks 500] [--warmup 50]

Prints p50, p90, p99 and max in ms, first with results woken by the settlement (the
store's watch), then, for comparison in the same run, with the Store interface's default
polling watch (2 ms doubling to 100 ms, what `result()` did before)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from harness.servers import RedisServer
from kew_plug.interfaces import Store
from kew_plug.settings import queue_from_url

SECRET = "latency-bench-secret-0123456789ab"
APP = """
from kew_plug.settings import queue_from_env
queue = queue_from_env("latency")
"""


async def measure(url: str, tasks: int, warmup: int, poll: bool) -> list[float]:
    queue = queue_from_url(url, name="latency", namespace="bench", secret=SECRET)
    if poll:  # this queue's store waits the way every store did before: by polling
        queue.store.watch = partial(Store.watch, queue.store)  # type: ignore[method-assign]
    samples = []
    for n in range(warmup + tasks):
        started = time.perf_counter()
        handle = await queue.submit(abs, (-n,))
        assert await handle.result(timeout=10) == n
        if n >= warmup:
            samples.append((time.perf_counter() - started) * 1000)
    await queue.aclose()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    with RedisServer() as server:
        folder = Path(server.dir)
        (folder / "latency_app.py").write_text(APP)
        env = {
            **os.environ,
            "KEW_PLUG_URL": server.url,
            "KEW_PLUG_NAMESPACE": "bench",
            "KEW_PLUG_SECRET": SECRET,
            "PYTHONPATH": str(folder),
        }
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kew_plug",
                "worker",
                "latency_app:queue",
                "--log-level",
                "WARNING",
            ],
            env=env,
            cwd=folder,
        )
        try:
            time.sleep(1.5)  # the worker process starts and blocks in its wait
            results = {
                how: sorted(asyncio.run(measure(server.url, args.tasks, args.warmup, poll)))
                for how, poll in (("woken", False), ("polling", True))
            }
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    print(f"submit-to-result, {args.tasks} tasks one at a time, idle worker process, real Redis:")
    print("| result() | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    for how, samples in results.items():
        q = statistics.quantiles(samples, n=100)
        print(f"| {how} | {q[49]:.2f} | {q[89]:.2f} | {q[98]:.2f} | {samples[-1]:.2f} |")


if __name__ == "__main__":
    main()
