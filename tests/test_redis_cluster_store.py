"""RedisStore on Redis Cluster beyond the contract: the URL form, queues spread over the
primaries, replicas=N (WAIT) and its one-line error, and a worker that rides through a
failover."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from harness.cluster import LocalCluster
from harness.servers import free_port
from kew_plug import InvalidArgument, Queue, StoreUnavailable, Worker
from kew_plug.backends.redis import RedisStore
from kew_plug.backends.redis.cluster import _node_url, cluster_client, parse_cluster_url
from kew_plug.backends.redis.keys import FIELD
from kew_plug.models import NewTask, TaskState
from kew_plug.queue import TaskHandle

SECRET = "cluster-test-secret-0123456789"


def test_cluster_url_names_seeds_credentials_and_options() -> None:
    seeds, options = parse_cluster_url(
        "redis+cluster://me:s%40cret@10.0.0.1:7000,10.0.0.2:7001/?replicas=1&replica_timeout=0.5"
    )
    assert seeds == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert options == {
        "username": "me",
        "password": "s@cret",
        "replicas": 1,
        "replica_timeout": 0.5,
    }


def test_node_urls_carry_credentials_with_any_characters() -> None:
    from redis.asyncio.cluster import ClusterNode
    from redis.connection import parse_url

    url = _node_url(ClusterNode("10.0.0.3", 7002), "me", "p@ss:w/rd%")
    assert parse_url(url) == {  # type: ignore[no-untyped-call]
        "username": "me",
        "password": "p@ss:w/rd%",
        "host": "10.0.0.3",
        "port": 7002,
        "db": 0,
    }


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+cluster://", "no seed node"),
        ("redis+cluster://host", "is not host:port"),
        ("redis+cluster://h:1/?replica=1", "unknown option 'replica'"),
    ],
)
def test_bad_cluster_urls_say_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(InvalidArgument, match=complaint):
        parse_cluster_url(url)


def test_replicas_need_a_connection_that_wait_can_follow() -> None:
    with pytest.raises(InvalidArgument, match="replicas=N needs"):
        RedisStore.from_url("rediss://127.0.0.1:1/0", replicas=1)


async def test_unreachable_cluster_fails_in_one_line() -> None:
    store = RedisStore.from_url(f"redis+cluster://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.ping()
        assert "\n" not in str(caught.value) and "cluster 127.0.0.1:" in str(caught.value)
    finally:
        await store.aclose()


def _tags_on_every_primary(cluster_url: str, count: int = 3) -> list[str]:
    """Queue names whose slots fall in each third of the slot space (one per primary of the
    3-primary test cluster, which `redis-cli --cluster create` splits evenly)."""
    names: list[str] = []
    for third in range(count):
        lo, hi = third * 16384 // count, (third + 1) * 16384 // count
        n = 0
        while not lo <= key_slot(f"q{third}-{n}".encode()) < hi:
            n += 1
        names.append(f"q{third}-{n}")
    return names


async def test_queues_spread_over_every_primary(cluster_url: str, namespace: str) -> None:
    store = RedisStore.from_url(cluster_url, namespace=namespace)
    try:
        for name in _tags_on_every_primary(cluster_url):
            await store.enqueue(name, [NewTask(f"{name}-t{i}", b"p", 0, 0, 1) for i in range(5)])
        counts = await store.count_keys_per_node(f"{namespace}:*")
        assert len(counts) == 3 and all(n > 0 for n in counts.values()), counts
        assert await store.queues() == sorted(_tags_on_every_primary(cluster_url))
        assert len(await store.scan(f"{namespace}:*")) == sum(counts.values())
    finally:
        await store.purge_namespace()
        await store.aclose()


async def test_a_cluster_client_passed_in_routes_scripts_per_primary(
    cluster_url: str, namespace: str
) -> None:
    seeds, _ = parse_cluster_url(cluster_url)
    client = cluster_client(seeds)
    store = RedisStore(client, namespace=namespace, owns_client=True, replicas=1)
    try:
        names = _tags_on_every_primary(cluster_url)
        for name in names:
            assert (await store.enqueue(name, [NewTask("x", b"p", 0, 0, 1)])).accepted == ["x"]
            assert [c.id for c in (await store.claim(name, "w", 5, 10_000)).claims] == ["x"]
        assert len(await store.count_keys_per_node(f"{namespace}:*")) == 3
    finally:
        await store.purge_namespace()
        await store.aclose()


async def wait_calls(store: RedisStore) -> int:
    stats = await store.client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
    return sum(node.get("cmdstat_wait", {}).get("calls", 0) for node in stats.values())


async def test_replicas_one_acknowledges_after_a_replica_holds_the_write(
    cluster_url: str, namespace: str
) -> None:
    store = RedisStore.from_url(f"{cluster_url}/?replicas=1", namespace=namespace)
    try:
        before = await wait_calls(store)
        report = await store.enqueue("durable", [NewTask("a", b"p", 0, 0, 1)])
        assert report.accepted == ["a"]
        (claim,) = (await store.claim("durable", "w", 5, 10_000)).claims
        assert await wait_calls(store) >= before + 2  # enqueue and claim each waited
        key = store.keys("durable").task("a")
        replica = own_replica_of_key(cluster_url, key)
        assert replica.hget(key, FIELD.token) == str(claim.token).encode()
    finally:
        await store.purge_namespace()
        await store.aclose()


async def test_more_replicas_than_exist_fail_in_one_line_and_keep_the_task(
    cluster_url: str, namespace: str
) -> None:
    store = RedisStore.from_url(cluster_url, namespace=namespace, replicas=2, replica_timeout=0.1)
    try:
        with pytest.raises(StoreUnavailable, match=r"reached 1 of 2 replicas within 100 ms"):
            await store.enqueue("durable", [NewTask("b", b"p", 0, 0, 1)])
        # The write is on the primary: a retry recognises it rather than storing it twice.
        record = await store.get("durable", "b")
        assert record is not None and record.has_payload
    finally:
        await store.purge_namespace()
        await store.aclose()


def own_replica_of_key(cluster_url: str, key: str) -> redis.Redis:
    """A READONLY connection to a replica of the primary that holds `key`."""
    seeds, _ = parse_cluster_url(cluster_url)
    with redis.Redis(*seeds[0]) as any_node:
        slots = any_node.execute_command("CLUSTER", "SLOTS")
    slot = key_slot(key.encode())
    row = next(r for r in slots if r[0] <= slot <= r[1])
    replica = redis.Redis(row[3][0].decode(), int(row[3][1]))
    replica.execute_command("READONLY")
    return replica


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster this test may break."""
    try:
        cluster = LocalCluster()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    with cluster:
        yield cluster


def double(i: int) -> int:
    return 2 * i


async def submit_until_accepted(q: Queue, i: int, within: float = 30.0) -> TaskHandle:
    """While the cluster elects a new primary, a submit fails with StoreUnavailable."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await q.submit(double, (i,))
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def unacknowledged_write(store: RedisStore, within: float = 10.0) -> str:
    """The refusal of a durable write once the client has found the new primary (the first
    attempt may still meet the old primary's closed connection)."""
    deadline = time.monotonic() + within
    for n in itertools.count():
        try:
            await store.enqueue("ride", [NewTask(f"unreplicated-{n}", b"p", 0, 0, 1)])
        except StoreUnavailable as e:
            if "replicas" in str(e) or time.monotonic() > deadline:
                return str(e)
            await asyncio.sleep(0.05)
            continue
        raise AssertionError("a write was acknowledged without any replica")
    raise AssertionError("unreachable")


async def test_worker_rides_through_a_failover_of_its_queue_primary(
    own_cluster: LocalCluster, namespace: str
) -> None:
    store = RedisStore.from_url(own_cluster.url, namespace=namespace, replicas=1)
    q = Queue(store, "cloudpickle", name="ride", secret=SECRET)
    worker = Worker(q, concurrency=4, wait_timeout=0.2)
    run = asyncio.create_task(worker.run())
    try:
        first = [await q.submit(double, (i,)) for i in range(5)]
        assert [await h.result(timeout=10) for h in first] == [0, 2, 4, 6, 8]
        per_node = await store.count_keys_per_node(f"{namespace}:*")
        owner = next(int(node.rsplit(":", 1)[1]) for node, n in per_node.items() if n)
        promoted = own_cluster.failover(owner, how="kill")
        assert promoted != owner
        # The promoted primary has no replica yet: durable writes must not be acknowledged.
        refusal = await unacknowledged_write(store)
        assert "reached 0 of 1 replicas" in refusal
        # A claim no replica confirmed is given back: not handed out, no attempt spent. (On
        # a queue of the same slot that the running worker does not serve.)
        slot = key_slot(b"ride")
        twin = next(f"t{n}" for n in itertools.count() if key_slot(f"t{n}".encode()) == slot)
        plain = RedisStore.from_url(own_cluster.url, namespace=namespace)
        await plain.enqueue(twin, [NewTask("unsure-claim", b"p", 0, 0, 1)])
        with pytest.raises(StoreUnavailable, match="replicas"):
            await store.claim(twin, "w", 100, 30_000)
        record = await plain.get(twin, "unsure-claim")
        assert record is not None and (record.state, record.attempts) == (TaskState.QUEUED, 0)
        await plain.aclose()
        own_cluster.rejoin(owner)
        later = await submit_until_accepted(q, 21)
        assert await later.result(timeout=30) == 42
        # Tasks acknowledged before the failover were replicated: still readable.
        assert [await h.result(timeout=10) for h in first] == [0, 2, 4, 6, 8]
    finally:
        worker.stop()
        await run
        await q.aclose()
