"""Closed is closed: after `aclose()` a Queue, and a Redis store, refuse every call with
`Closed` instead of quietly reconnecting and storing the task."""

from __future__ import annotations

import pytest

from kew_plug import Closed, NewTask, Queue
from kew_plug.backends.redis import RedisStore
from tests.conftest import StoreFactory


async def test_every_call_on_a_closed_queue_raises_closed(make_store: StoreFactory) -> None:
    queue = Queue(make_store(), name="closing")
    handle = await queue.submit(abs, (-1,))
    await queue.aclose()
    calls = [
        queue.submit(abs, (-2,)),
        queue.submit_many([]),
        queue.info(handle.id),
        queue.status(handle.id),
        queue.result(handle.id, timeout=1),
        queue.dead(),
        queue.requeue([handle.id]),
    ]
    for call in calls:
        with pytest.raises(Closed, match="queue 'closing' is closed"):
            await call
    await queue.aclose()  # idempotent


async def test_a_closed_redis_store_does_not_reconnect(redis_url: str, namespace: str) -> None:
    store = RedisStore.from_url(redis_url, namespace=namespace)
    other = RedisStore.from_url(redis_url, namespace=namespace)
    await store.enqueue("q", [NewTask("before", b"p")])
    await store.aclose()
    with pytest.raises(Closed, match=r"Redis store at 127\.0\.0\.1:\d+/0 is closed"):
        await store.enqueue("q", [NewTask("after", b"p")])
    for call in (store.claim("q", "w", 1, 1000), store.get("q", "before"), store.wait("q", 0.01)):
        with pytest.raises(Closed):
            await call
    assert await other.get("q", "after") is None
    assert (await other.stats("q")).queued == 1
    await other.purge_namespace()
    await other.aclose()
