"""RedisStore beyond the contract: one hash slot per script, bounded key life, connection
faults, and one-line errors for unreachable or refusing servers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.crc import key_slot

from harness.servers import RedisServer, redis_server_binary
from kew_plug import InvalidArgument, Queue, RetryPolicy, StoreUnavailable, Worker
from kew_plug.backends.fake import FakeRedisStore
from kew_plug.backends.redis import RedisStore
from kew_plug.models import NewTask, Outcome, OutcomeKind
from tests.helpers import eventually

needs_redis = pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server")


class SlotRecorder(FakeRedisStore):
    """Records the slot of every key each script receives, ids resolved from the prefix."""

    calls: list[tuple[str, set[int]]]

    async def _run(self, name: str, keys: list[str], args: list[Any], again: bool = False) -> Any:
        reply = await super()._run(name, keys, args, again)
        names = list(keys)
        prefixes = [k for k in keys if k.endswith(":t:")]
        if prefixes:  # ids the script found itself come back in its reply
            names += [prefixes[0] + r.decode() for r in reply if isinstance(r, bytes)]
        self.calls.append((name, {key_slot(k.encode()) for k in names}))
        return reply


async def test_every_script_touches_one_hash_slot() -> None:
    store = SlotRecorder(result_ttl=60)
    store.calls = []
    q = "slots"
    await store.enqueue(q, [NewTask(f"t{i}", b"p", 0, 0, 2) for i in range(6)])
    await store.enqueue(q, [NewTask("later", b"p", 0, 10, 2)])
    claims = (await store.claim(q, "w", 6, 50)).claims
    await store.renew(q, claims[:2], 50)
    await store.release(q, claims[2:3])
    await store.settle(
        q,
        [
            Outcome(claims[0].id, claims[0].token, OutcomeKind.COMPLETE, b"r"),
            Outcome(claims[1].id, claims[1].token, OutcomeKind.RETRY, delay_ms=1),
            Outcome(claims[3].id, claims[3].token, OutcomeKind.DEAD, error="x"),
        ],
    )
    await store.requeue(q, [claims[3].id])
    # Wait for the 50 ms leases to run out: recover then has work to do.
    report = await eventually(lambda: store.recover(q), lambda r: bool(r.requeued or r.dead))
    assert report.requeued or report.dead
    names = {name for name, _ in store.calls}
    assert names == {"enqueue", "claim", "renew", "release", "settle", "requeue", "recover"}
    expected = key_slot(store.keys(q).ready.encode())
    for name, slots in store.calls:
        assert slots == {expected}, f"{name} touched slots {slots}"
    await store.aclose()


async def test_no_key_lacks_a_ttl_after_a_full_run() -> None:
    store = FakeRedisStore(namespace="ttl")
    queue = Queue(store, "cloudpickle", "redis", name="ttlq", retries=1)

    def fail() -> None:
        raise RuntimeError("always")

    for i in range(20):
        await queue.submit(pow, (i, 2))
    await queue.submit(fail)
    await queue.submit(pow, (2, 3), delay=0.05)
    await Worker(queue, retry=RetryPolicy(base=0.01)).drain()
    await queue.breaker.record_failure()  # type: ignore[union-attr]  # writes the breaker key
    keys = [k.decode() for k in await store.scan("ttl:*")]
    assert len(keys) > 20
    without_ttl = [k for k in keys if await store.client.pttl(k) == -1]
    # Only the dead set, holding the one dead task; the seq counter and wake list expire.
    assert without_ttl == [store.keys("ttlq").dead]
    assert await store.client.pttl(store.keys("ttlq").seq) > 0
    breaker_keys = [k for k in keys if ":breaker:" in k]
    assert breaker_keys and all([await store.client.pttl(k) > 0 for k in breaker_keys])
    await queue.aclose()


async def test_unreachable_server_fails_in_one_line_naming_the_host() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable) as err:
        await store.ping()
    message = str(err.value)
    assert "127.0.0.1:1" in message and "\n" not in message
    queue = Queue(store, name="x")
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
        await Worker(queue).drain()
    await store.aclose()


@pytest.mark.parametrize("url", ["redis://localhost:6379/abc", "rediss://:pw@host/0x"])
def test_a_database_that_is_not_a_number_is_refused_without_the_password(url: str) -> None:
    with pytest.raises(InvalidArgument, match="the database in a Redis URL is a number") as err:
        RedisStore.from_url(url)
    assert "pw" not in str(err.value)


def test_a_url_without_host_or_port_names_the_default_it_uses() -> None:
    store = RedisStore.from_url("redis://")
    assert store.target == "localhost:6379/0"


@needs_redis
async def test_wrong_password_fails_in_one_line() -> None:
    with RedisServer(extra_args=("--requirepass", "right-password")) as server:
        url = f"redis://:wrong-password@127.0.0.1:{server.port}/0"
        store = RedisStore.from_url(url)
        with pytest.raises(StoreUnavailable, match="refused the credentials") as err:
            await store.ping()
        assert f"127.0.0.1:{server.port}" in str(err.value)
        assert "wrong-password" not in str(err.value)
        await store.aclose()
        good = RedisStore.from_url(f"redis://:right-password@127.0.0.1:{server.port}/0")
        await good.ping()
        await good.aclose()


RUNS: list[int] = []
GATE = asyncio.Event()
STARTED = asyncio.Event()


async def gated_task(i: int) -> int:
    """Importable, so it travels by reference and shares RUNS and GATE with the test."""
    RUNS.append(i)
    if i == 0:
        STARTED.set()
        await GATE.wait()
    return i


@needs_redis
async def test_worker_survives_a_server_restart_without_losing_or_repeating(
    caplog: pytest.LogCaptureFixture,
) -> None:
    global GATE, STARTED
    caplog.set_level(logging.WARNING, "kew_plug.worker")
    RUNS.clear()
    GATE, STARTED = asyncio.Event(), asyncio.Event()
    with RedisServer(durable=True) as server:
        store = RedisStore.from_url(server.url, namespace="restart")
        queue = Queue(store, "cloudpickle", name="r", secret="s" * 32)
        worker = Worker(queue, concurrency=1, lease=30, shutdown_timeout=5)
        await queue.submit(gated_task, (0,))
        running = asyncio.create_task(worker.drain())
        await asyncio.wait_for(STARTED.wait(), 30)
        server.restart()  # the worker's connections die while task 0 runs
        for i in range(1, 20):
            for _ in range(100):
                try:
                    await queue.submit(gated_task, (i,))
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.05)
        GATE.set()
        await asyncio.wait_for(running, 60)
        assert sorted(RUNS) == list(range(20))  # each exactly once
        assert await store.payload_ids("r") == set()
        assert (await store.stats("r")).pending == 0
        await queue.aclose()


@pytest.mark.parametrize("server", ["embedded", "redis"])
async def test_wait_blocks_until_timeout_and_wakes_on_enqueue(
    server: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """The wake-up must really block on both servers (fakeredis's BLMOVE does not)."""
    url = request.getfixturevalue("embedded_url" if server == "embedded" else "redis_url")
    waiter = RedisStore.from_url(url, namespace=namespace)
    producer = RedisStore.from_url(url, namespace=namespace)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await waiter.wait("w", 0.3) is False
    assert loop.time() - started >= 0.25
    pending = asyncio.ensure_future(waiter.wait("w", 5.0))
    await asyncio.sleep(0.05)  # let the waiter block first; the wake must reach a blocked client
    started = loop.time()
    await producer.enqueue("w", [NewTask("x", b"p")])
    assert await asyncio.wait_for(pending, 3.0) is True
    assert loop.time() - started < 0.5
    await waiter.aclose()
    await producer.aclose()


async def test_task_hashes_keep_the_compact_encoding(redis_url: str, namespace: str) -> None:
    """Payload chunks of at most 64 bytes keep a queued task's hash in listpack encoding,
    about half the memory of a hashtable."""
    store = RedisStore.from_url(redis_url, namespace=namespace)
    queue = Queue(store, "cloudpickle", name="enc", secret="e" * 32)
    handle = await queue.submit(abs, (-(10**40),))
    encoding = await store.client.object("encoding", store.keys("enc").task(handle.id))
    assert encoding == b"listpack"
    await store.aclose()


async def test_polling_a_queue_nobody_submitted_to_creates_no_key(
    redis_url: str, namespace: str
) -> None:
    store = RedisStore.from_url(redis_url, namespace=namespace)
    try:
        for _ in range(3):
            assert (await store.claim("never", "w", 10, 1000)).claims == []
            assert await store.wait("never", 0.01) is False
            assert (await store.recover("never")).requeued == []
        assert (await store.stats("never")).pending == 0
        assert await store.get("never", "x") is None
        assert await store.scan(f"{namespace}:*") == []
        assert await store.queues() == []
    finally:
        await store.aclose()


async def test_queues_lists_every_queue_of_the_namespace_only(
    redis_url: str, namespace: str
) -> None:
    store = RedisStore.from_url(redis_url, namespace=namespace)
    other = RedisStore.from_url(redis_url, namespace=f"{namespace}x")
    try:
        for name in ("emails", "reports-2"):
            await store.enqueue(name, [NewTask("a", b"p", 0, 0, 1)])
        await other.enqueue("elsewhere", [NewTask("a", b"p", 0, 0, 1)])
        await store.claim("polled-only", "w", 10, 1000)
        assert await store.queues() == ["emails", "reports-2"]
        # A drained queue is still listed until its counter expires (idle for backstop_ttl
        # plus the longest record TTL), then it leaves no key at all.
        (claim,) = (await store.claim("emails", "w", 1, 1000)).claims
        await store.settle("emails", [Outcome(claim.id, claim.token, OutcomeKind.COMPLETE)])
        assert await store.queues() == ["emails", "reports-2"]
        assert 0 < await store.client.pttl(store.keys("emails").seq) <= store.seq_ttl_ms + 1000
        await store.purge("reports-2")
        assert await store.queues() == ["emails"]
    finally:
        for s in (store, other):
            await s.purge_namespace()
            await s.aclose()
