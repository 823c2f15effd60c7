"""kew-plug adapter for ../shared/bench (run with --adapter-dir benchmarks).

Producer: `Queue.submit` (one Lua call) for single enqueue, `Queue.submit_many` (one Lua
call per batch) for batch enqueue. Workers: P processes `python -m kew_plug_bench`, each a
`Worker` with default settings, stopped by SIGTERM (graceful). Every guarantee stays on:
leases, fencing tokens, payload cleanup, and signed payloads (HMAC-SHA256, cloudpickle).
"""

import asyncio
import logging
import os
import signal
import sys

from _common import QUEUE, REDIS_URL, versions
from benchprobe import run_async

from kew_plug import Queue, TaskSpec, Worker
from kew_plug.backends.redis import RedisStore

STOP_SIGNAL = signal.SIGTERM
STOP_GRACE = 15.0
SECRET = os.environ.get("KEW_PLUG_SECRET", "bench-secret-of-at-least-16-bytes")
NAMESPACE = "kewbench"


async def noop(i):
    return await run_async(i)


def describe(cfg):
    return {
        "packages": versions("kew-plug", "redis", "hiredis", "cloudpickle"),
        "worker_model": f"{cfg.procs} processes x Worker(concurrency=10)",
        "config": "single = Queue.submit; batch = Queue.submit_many; cloudpickle, signed "
        "(HMAC-SHA256); leases, fencing and payload cleanup on; results kept 1 h; "
        "hand-offs to waiting workers on (the default)",
    }


def make_queue(url=REDIS_URL):
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    return Queue(store, "cloudpickle", name=QUEUE, secret=SECRET)


async def connect(cfg):
    return make_queue(cfg.redis_url)


async def enqueue(queue, i):
    await queue.submit(noop, (i,))


async def enqueue_batch(queue, ids):
    await queue.submit_many([TaskSpec(noop, (i,)) for i in ids])


async def queued_count(queue):
    return (await queue.store.stats(QUEUE)).queued


async def close(queue):
    await queue.aclose()


def worker_commands(cfg):
    return [[cfg.python, "-m", __name__] for _ in range(cfg.procs)]


async def _worker():
    queue = make_queue()
    worker = Worker(queue)
    worker.install_signal_handlers()
    await worker.run()
    await queue.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_worker())
