"""Bad input the other suites do not cover: each gets a clear error, and nothing already
stored is lost or corrupted."""

from __future__ import annotations

import pytest

from kew_plug import Queue, SerializationError, TaskFailed, Worker
from kew_plug.interfaces import Store
from tests.conftest import StoreFactory


def defined_in_main(x: int) -> int:
    return x


defined_in_main.__module__ = "__main__"  # as if the user's script defined it


async def test_pickle_refuses_a_function_from_main_that_workers_cannot_import() -> None:
    queue = Queue("memory", "pickle", name="main")
    with pytest.raises(SerializationError, match=r"__main__.*cannot be imported") as err:
        await queue.submit(defined_in_main, (1,))
    assert "'pickle'" in str(err.value)
    assert (await queue.store.stats("main")).pending == 0
    # cloudpickle carries it by value instead, so the same function is accepted.
    await Queue("memory", "cloudpickle", name="main").submit(defined_in_main, (1,))


def big_result() -> bytes:
    return b"x" * 5000


async def test_result_over_the_size_limit_dead_letters_that_task_only(store: Store) -> None:
    queue = Queue(store, "cloudpickle", name="big", max_payload_bytes=2000)
    big = await queue.submit(big_result)
    small = await queue.submit(len, ("abc",))
    await Worker(queue).drain()
    assert await small.result() == 3
    with pytest.raises(TaskFailed, match="over the limit of 2000"):
        await big.result()


@pytest.mark.parametrize("make_store", ["fakeredis", "redis"], indirect=True)
async def test_records_deleted_by_someone_else_are_reported_and_the_worker_survives(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    queue = Queue(store, "cloudpickle", name="gone")
    handles = [await queue.submit(abs, (-i,)) for i in range(5)]
    client = store.client  # type: ignore[attr-defined]
    await client.delete(*(store.keys("gone").task(h.id) for h in handles[:2]))  # type: ignore[attr-defined]
    worker = Worker(queue)
    await worker.drain()
    assert worker.stats.vanished == 2
    assert [await h.result() for h in handles[2:]] == [2, 3, 4]
    assert await queue.status(handles[0].id) is None
