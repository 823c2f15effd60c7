"""A worker's blocking waits on the lean connections (kew_plug/backends/redis/blocking.py):
a record the server popped for a wait whose caller gave up is not lost, and a wait given up
is ended at once on the server instead of holding its connection until its timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis

from harness.servers import RedisServer
from kew_plug.backends.redis import RedisStore
from kew_plug.backends.redis.keys import OFFER_SLOTS
from kew_plug.models import Wakeup

WORKER = "w1"


@pytest.fixture
def own_redis(redis_url: str) -> Iterator[str]:
    """A redis-server of this test's own: these tests count the server's blocked and
    connected clients, which the session's shared server also gives to other tests' worker
    processes that are still winding down (seen on a loaded CI). `redis_url` first, so a
    missing redis-server skips or fails as everywhere else."""
    with RedisServer() as server:
        yield server.url


async def _blocked_until(admin: aioredis.Redis, count: int) -> None:
    """Until the server holds `count` clients blocked (INFO blocked_clients)."""
    deadline = time.monotonic() + 5
    while int((await admin.info("clients"))["blocked_clients"]) != count:
        assert time.monotonic() < deadline, f"never {count} blocked clients"
        await asyncio.sleep(0.005)


async def _given_up_with_a_record(store: RedisStore, admin: aioredis.Redis, url: str) -> None:
    """A wait of WORKER on queue "late", given up after the server popped a record for it
    (id t1, token 7, payload b"pay\\nload") and before its reply could be read."""
    batch = await store.claim_and_offer("late", WORKER, 4, 5000, 30_000)
    assert batch.claims == []
    waiting = asyncio.create_task(store.wait_handed("late", WORKER, 30.0))
    await _blocked_until(admin, 1)
    # Handed through a synchronous client: the event loop cannot read the wait's reply
    # before the task is cancelled, yet the server has popped the record by the time this
    # returns (it serves a blocked client before it replies to the write). The record is
    # what enqueue.lua writes: id, token, attempt, max attempts, lease start, payload.
    with redis.Redis.from_url(url) as sync:
        sync.zadd(store.keys("late").inbox(WORKER), {b"t1\n7\n1\n3\n0\npay\nload": 0})
    waiting.cancel()
    got: list[Wakeup] = []
    with contextlib.suppress(asyncio.CancelledError):
        got.append(await waiting)
    assert got == []  # cancelled while its reply was still unread


async def test_a_record_popped_for_a_given_up_wait_comes_with_the_next_wait(
    own_redis: str,
) -> None:
    store = RedisStore.from_url(own_redis, namespace=f"bw{uuid.uuid4().hex[:8]}")
    admin = aioredis.Redis.from_url(own_redis)
    await _given_up_with_a_record(store, admin, own_redis)
    again = await store.wait_handed("late", WORKER, 5.0)
    assert [(c.id, c.token, c.payload) for c in again.claims] == [("t1", 7, b"pay\nload")]
    nothing = await store.wait_handed("late", WORKER, 0.05)
    assert nothing.claims == []
    await store.aclose()
    await admin.aclose()


async def test_a_record_popped_for_a_given_up_wait_comes_with_the_next_claim(
    own_redis: str,
) -> None:
    store = RedisStore.from_url(own_redis, namespace=f"bw{uuid.uuid4().hex[:8]}")
    admin = aioredis.Redis.from_url(own_redis)
    await _given_up_with_a_record(store, admin, own_redis)
    batch = await store.claim_and_offer("late", WORKER, 2, 5000, 30_000)
    assert [(c.id, c.token) for c in batch.claims] == [("t1", 7)]
    # It took one of the two slots: the offer holds the other one.
    offers = await admin.zrange(store.keys("late").idle, 0, -1, withscores=True)
    assert [int(score) % OFFER_SLOTS for _, score in offers] == [1]
    nothing = await store.wait_handed("late", WORKER, 0.05)
    assert nothing.claims == []
    await store.aclose()
    await admin.aclose()


async def test_a_given_up_wait_is_ended_on_the_server_and_its_connection_reused(
    own_redis: str,
) -> None:
    store = RedisStore.from_url(own_redis, namespace=f"bw{uuid.uuid4().hex[:8]}")
    admin = aioredis.Redis.from_url(own_redis)

    clients_before = int((await admin.info("clients"))["connected_clients"])
    for _ in range(10):
        waiting = asyncio.create_task(store.wait("idle", 30.0))
        await _blocked_until(admin, 1)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await _blocked_until(admin, 0)  # a 30 s wait, ended within 5 s: unblocked, not timed out
        # The unblocked reply reaches the connection a moment later, and only then is it
        # back in the pool; a wait started before that rightly opens another one.
        deadline = time.monotonic() + 5
        while store._blocking is not None and store._blocking._busy:
            assert time.monotonic() < deadline, "the given-up wait's reply never came"
            await asyncio.sleep(0.005)
    # One blocking connection taken and given back ten times, plus the one that unblocks.
    clients_after = int((await admin.info("clients"))["connected_clients"])
    assert clients_after - clients_before <= 2
    await store.aclose()
    await admin.aclose()


async def test_a_rescued_record_arriving_as_its_next_wait_is_cancelled_is_kept() -> None:
    # The reply of a given-up wait resolves in the very turn the next wait (which was
    # collecting it) is cut by stop() or a wake-up: the record is still ours, for withdraw.
    import fakeredis

    store = RedisStore(fakeredis.FakeAsyncRedis(), namespace=f"t{uuid.uuid4().hex[:8]}")
    inbox = store.keys("q").inbox(WORKER)
    reply = asyncio.get_running_loop().create_future()
    store._abandoned[("q", WORKER)] = reply
    collecting = asyncio.ensure_future(store._late("q", WORKER))
    await asyncio.sleep(0)  # it is waiting for the reply now
    record = b"task-1\n123\n1\n3\n1000\npayload"
    reply.set_result([inbox.encode(), record])
    collecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await collecting
    assert await store._late("q", WORKER) == record
    await store.aclose()
