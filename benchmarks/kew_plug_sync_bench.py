"""kew-plug adapter for ../shared/bench with the producer a sync app uses: `SyncQueue`.

Everything but the producer is `kew_plug_bench`'s: the same task, the same worker processes
(`python -m kew_plug_bench`), every guarantee on. Single enqueue is `SyncQueue.submit`
(a blocking connection, no event loop), batch enqueue `SyncQueue.submit_many`, both called
from the driver's thread as huey's, RQ's and dramatiq's enqueues are."""

import kew_plug_bench
from _common import QUEUE, REDIS_URL, versions
from kew_plug_bench import NAMESPACE, SECRET, STOP_GRACE, STOP_SIGNAL, noop, worker_commands

from kew_plug import SyncQueue, TaskSpec
from kew_plug.backends.redis import RedisStore

__all__ = ["STOP_GRACE", "STOP_SIGNAL", "worker_commands"]


def describe(cfg):
    info = kew_plug_bench.describe(cfg)
    info["packages"] = versions("kew-plug", "redis", "hiredis", "cloudpickle")
    info["config"] = info["config"].replace(
        "single = Queue.submit; batch = Queue.submit_many",
        "single = SyncQueue.submit; batch = SyncQueue.submit_many (blocking, no event loop)",
    )
    return info


def connect(cfg):
    store = RedisStore.from_url(cfg.redis_url or REDIS_URL, namespace=NAMESPACE)
    return SyncQueue(store, "cloudpickle", name=QUEUE, secret=SECRET)


def enqueue(queue, i):
    queue.submit(noop, (i,))


def enqueue_batch(queue, ids):
    queue.submit_many([TaskSpec(noop, (i,)) for i in ids])


def queued_count(queue):
    # Inspection is not SyncQueue's job: the store's stats on its loop thread.
    return queue._run(queue.queue.store.stats(QUEUE)).queued


def close(queue):
    queue.close()
