"""SyncQueue: submits and reads back from code with no event loop (a WSGI view, a script, a
thread), on Redis over blocking connections and on other stores through its loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from kew_plug import (
    Closed,
    InvalidArgument,
    Queue,
    QueueFull,
    StoreError,
    StoreUnavailable,
    SyncQueue,
    TaskExists,
    TaskSpec,
    TaskState,
    Worker,
)
from kew_plug.backends.fake import FakeRedisStore
from kew_plug.backends.redis import RedisStore
from kew_plug.interfaces import Store

SECRET = "sync-queue-test-secret-0123456789"


def add(a: int, b: int) -> int:
    return a + b


class WorkerThread:
    """A Worker on an event loop of its own in a thread, over a store of its own."""

    def __init__(self, make_store: Callable[[], Store], name: str) -> None:
        self.make_store, self.name = make_store, name
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        queue = Queue(self.make_store(), "cloudpickle", name=self.name, secret=SECRET)
        self.loop = asyncio.get_running_loop()
        self.worker = Worker(queue, lease=2)
        self.ready.set()
        await self.worker.run()
        await queue.aclose()

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture(params=["redis", "fakeredis"])
def stores(
    request: pytest.FixtureRequest, namespace: str
) -> Iterator[tuple[Callable[[], Store], bool]]:
    """Store factory sharing one state, and whether its submits block (no loop thread)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        yield (lambda: RedisStore.from_url(url, namespace=namespace)), True
    else:
        import fakeredis

        server = fakeredis.FakeServer()
        yield (lambda: FakeRedisStore(server, namespace=namespace)), False


def test_tasks_submitted_without_a_loop_run_and_their_results_come_back(
    stores: tuple[Callable[[], Store], bool],
) -> None:
    make, blocking = stores
    queue = SyncQueue(make(), "cloudpickle", name="sync", secret=SECRET)
    assert queue.queue.store.enqueues_blocking is blocking
    with queue, WorkerThread(make, "sync"):
        handles = [queue.submit(add, (i, 1)) for i in range(20)]
        handles += queue.submit_many([TaskSpec(add, (i, 2)) for i in range(20)])
        assert [h.result(timeout=20) for h in handles] == [i + 1 for i in range(20)] + [
            i + 2 for i in range(20)
        ]
        assert handles[0].status() is TaskState.COMPLETED
        info = queue.info(handles[0].id)
        assert info is not None and info.state is TaskState.COMPLETED
    # Submits that never started a loop thread leave none behind after close.
    assert not any(t.name == "kew-sync" and t.is_alive() for t in threading.enumerate())


def test_duplicate_ids_bad_input_and_a_full_queue_are_refused(
    stores: tuple[Callable[[], Store], bool],
) -> None:
    make, _ = stores
    with SyncQueue(make(), "cloudpickle", name="refuse", secret=SECRET, max_size=3) as queue:
        queue.submit(add, (1, 2), task_id="once")
        with pytest.raises(TaskExists, match="once"):
            queue.submit(add, (5, 5), task_id="once")
        handles = queue.submit_many([TaskSpec(add, (1, 1), task_id="once"), TaskSpec(add, (0, 0))])
        assert [h.accepted for h in handles] == [False, True]
        with pytest.raises(InvalidArgument, match="priority"):
            queue.submit(add, (1, 1), priority=10**9)
        with pytest.raises(QueueFull, match="max_size=3"):
            queue.submit_many([TaskSpec(add, (i, i)) for i in range(2)])
        assert queue.status("once") is TaskState.QUEUED
        assert queue.cancel("once") is True
        assert queue.status("once") is TaskState.CANCELLED
    with pytest.raises(Closed):
        queue.submit(add, (1, 1))
    with pytest.raises(Closed):
        queue.status("once")


def test_threads_share_one_queue(redis_url: str, namespace: str) -> None:
    """Each thread's submit gets a connection of its own; every task is stored once."""
    store = RedisStore.from_url(redis_url, namespace=namespace)
    with SyncQueue(store, "cloudpickle", name="threads", secret=SECRET) as queue:
        ids: list[str] = []
        start = threading.Barrier(8)

        def submit() -> None:
            start.wait()
            ids.extend(queue.submit(add, (i, i)).id for i in range(50))

        threads = [threading.Thread(target=submit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 400
        assert asyncio.run(_queued(redis_url, namespace, "threads")) == 400


async def _queued(url: str, namespace: str, name: str) -> int:
    async with RedisStore.from_url(url, namespace=namespace) as store:
        return (await store.stats(name)).queued


def test_lost_reply_is_retried_and_the_task_stored_once(redis_url: str, namespace: str) -> None:
    store = RedisStore.from_url(redis_url, namespace=namespace)
    real = store.enqueue_blocking
    lost = [2]

    def enqueue_blocking(*args: object, **kwargs: object) -> object:
        report = real(*args, **kwargs)  # type: ignore[arg-type]
        if lost[0]:
            lost[0] -= 1
            raise StoreUnavailable("cannot reach Redis at test: connection lost after write")
        return report

    store.enqueue_blocking = enqueue_blocking  # type: ignore[assignment,method-assign]
    with SyncQueue(store, "cloudpickle", name="lost", secret=SECRET) as queue:
        handle = queue.submit(add, (2, 2))
        assert handle.accepted and lost == [0]
        assert queue.status(handle.id) is TaskState.QUEUED
    assert asyncio.run(_queued(redis_url, namespace, "lost")) == 1


def test_an_unreachable_server_and_a_refused_call_are_kew_plug_errors(
    redis_url: str, namespace: str
) -> None:
    down = RedisStore.from_url("redis://127.0.0.1:1/0", namespace=namespace)
    queue = SyncQueue(down, "cloudpickle", name="down", secret=SECRET, submit_retries=0)
    with queue, pytest.raises(StoreUnavailable, match="cannot reach Redis"):
        queue.submit(add, (1, 1))
    store = RedisStore.from_url(redis_url, namespace=namespace)
    with SyncQueue(store, "cloudpickle", name="wrong", secret=SECRET) as queue:
        queue.submit(add, (1, 1))
        ready = store.keys("wrong").ready
        asyncio.run(_set_string(redis_url, ready))  # the ready set overwritten by a string
        with pytest.raises(StoreError, match="WRONGTYPE"):
            queue.submit(add, (2, 2))
        asyncio.run(_del(redis_url, ready))
        queue.submit(add, (3, 3))  # the connection that saw the error still serves


async def _set_string(url: str, key: str) -> None:
    async with RedisStore.from_url(url) as store:
        await store.client.set(key, "x")


async def _del(url: str, key: str) -> None:
    async with RedisStore.from_url(url) as store:
        await store.client.delete(key)


def test_sync_queue_from_env_reads_the_settings_the_workers_read(
    redis_url: str, namespace: str
) -> None:
    from kew_plug.settings import sync_queue_from_env

    env = {"KEW_PLUG_URL": redis_url, "KEW_PLUG_NAMESPACE": namespace}
    queue = sync_queue_from_env("from-env", env, secret=SECRET)
    assert isinstance(queue, SyncQueue) and queue.name == "from-env"
    with (
        queue,
        WorkerThread(lambda: RedisStore.from_url(redis_url, namespace=namespace), "from-env"),
    ):
        assert queue.submit(add, (2, 3)).result(timeout=20) == 5
