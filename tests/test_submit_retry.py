"""A submit whose reply is lost (the store acted, the connection died) is retried without
storing the task twice, and a genuine duplicate id is still refused."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kew_plug import Queue, StoreUnavailable, TaskExists, TaskSpec, Worker
from kew_plug.interfaces import Store
from kew_plug.models import EnqueueReport, NewTask
from tests.conftest import StoreFactory


def lose_replies(store: Store, losses: int) -> Store:
    """The store's next `losses` enqueues act, then raise as if the connection died before
    the reply arrived."""
    real = store.enqueue
    left = [losses]

    async def enqueue(
        queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        report = await real(queue, items, max_size)
        if left[0]:
            left[0] -= 1
            raise StoreUnavailable("cannot reach Redis at test: connection lost after write")
        return report

    store.enqueue = enqueue  # type: ignore[method-assign]
    return store


async def test_lost_reply_is_retried_and_the_task_stored_once(make_store: StoreFactory) -> None:
    inner = lose_replies(make_store(), losses=2)
    queue = Queue(inner, "cloudpickle", name="lost")
    handles = await queue.submit_many([TaskSpec(abs, (-i,)) for i in range(5)])
    assert all(h.accepted for h in handles)
    stats = await inner.stats("lost")
    assert stats.queued == 5  # not 15: the retries found their own earlier writes
    await Worker(queue).drain()
    assert [await h.result() for h in handles] == [0, 1, 2, 3, 4]


async def test_too_many_lost_replies_raise(make_store: StoreFactory) -> None:
    queue = Queue(lose_replies(make_store(), losses=10), name="lost2", submit_retries=2)
    with pytest.raises(StoreUnavailable):
        await queue.submit(abs, (1,))


async def test_a_real_duplicate_is_still_refused_even_with_the_same_payload(store: Store) -> None:
    queue = Queue(store, "cloudpickle", name="dup")
    await queue.submit(abs, (-3,), task_id="same")
    with pytest.raises(TaskExists):
        await queue.submit(abs, (-3,), task_id="same")
    report = await store.enqueue("dup", [queue._encode(TaskSpec(abs, (-3,), task_id="same"))])
    assert report.duplicates == ["same"] and report.same_payload == ["same"]
    other = await store.enqueue("dup", [queue._encode(TaskSpec(abs, (-4,), task_id="same"))])
    assert other.duplicates == ["same"] and other.same_payload == []
