"""LocalCluster: a real 3-primary Redis Cluster comes up settled, spreads hash tags over
every primary, and survives a forced and a killed failover without losing a replicated key."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import ClusterNode as Seed
from redis.cluster import RedisCluster
from redis.crc import key_slot

from harness.cluster import HOST, LocalCluster

pytestmark = [pytest.mark.redis, pytest.mark.multiprocess]


def _cluster() -> Iterator[LocalCluster]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if os.environ.get("KEW_REQUIRE_REDIS") == "1":
            pytest.fail("KEW_REQUIRE_REDIS=1 but redis-server or redis-cli is not installed")
        pytest.skip("redis-server or redis-cli not installed")
    with LocalCluster(primaries=3, replicas_per_primary=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Shared by the tests that leave the topology as they found it."""
    yield from _cluster()


@pytest.fixture(scope="module")
def failover_cluster() -> Iterator[LocalCluster]:
    """Failovers reshape the topology, so they get a cluster of their own."""
    yield from _cluster()


def _client(cluster: LocalCluster) -> RedisCluster:
    seeds = [Seed(host, port) for host, port in cluster.primaries()]
    return RedisCluster(startup_nodes=seeds, decode_responses=True)


def _owner(port: int, slot: int) -> int:
    """Port of the primary that owns `slot`, as the node on `port` sees it."""
    with redis.Redis(HOST, port, decode_responses=True) as r:
        ranges = r.execute_command("CLUSTER", "SLOTS")
    return next(int(e[2][1]) for e in ranges if e[0] <= slot <= e[1])


def _key_on(cluster: LocalCluster, primary: int) -> str:
    """A fresh key whose hash slot `primary` serves."""
    while True:
        key = f"{{{uuid.uuid4().hex[:8]}}}k"
        if _owner(primary, key_slot(key.encode())) == primary:
            return key


def test_comes_up_with_three_primaries_each_with_one_replica(cluster: LocalCluster) -> None:
    primaries = [port for _, port in cluster.primaries()]
    assert len(primaries) == 3
    assert len(cluster.ports) == len(cluster.pids) == 6
    replicas = {port: cluster.replicas_of(port) for port in primaries}
    assert all(len(r) == 1 for r in replicas.values()), replicas
    assert set(primaries) | {r[0] for r in replicas.values()} == set(cluster.ports)
    for port in cluster.ports:
        with redis.Redis(HOST, port, decode_responses=True) as r:
            assert "cluster_state:ok" in r.execute_command("CLUSTER", "INFO")
    assert cluster.url == "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in primaries)


def test_hash_tags_spread_over_every_primary(cluster: LocalCluster) -> None:
    primaries = [port for _, port in cluster.primaries()]
    # Tags chosen by slot, so each primary is bound to receive some keys.
    tags: dict[int, list[str]] = {port: [] for port in primaries}
    i = 0
    while any(len(t) < 2 for t in tags.values()):
        tag = f"q{uuid.uuid4().hex[:6]}{i}"
        tags[_owner(primaries[0], key_slot(tag.encode()))].append(tag)
        i += 1
    before = cluster.key_counts()
    client = _client(cluster)
    try:
        for owned in tags.values():
            for tag in owned[:2]:
                assert client.set(f"{{{tag}}}x", tag)
    finally:
        client.close()
    after = cluster.key_counts()
    assert {port: after[port] - before[port] for port in primaries} == dict.fromkeys(primaries, 2)


@pytest.mark.parametrize("how", ["force", "kill"])
def test_failover_promotes_a_replica_that_kept_the_key(
    failover_cluster: LocalCluster, how: str
) -> None:
    cluster = failover_cluster
    old = next(p for _, p in cluster.primaries() if cluster.replicas_of(p))
    replicas = cluster.replicas_of(old)
    key = _key_on(cluster, old)
    client = _client(cluster)
    try:
        assert client.set(key, how)
        with redis.Redis(HOST, old) as direct:
            # Only a write the replica acknowledged is sure to survive the promotion.
            assert direct.execute_command("WAIT", 1, 5000) >= 1
        new = cluster.failover(old, how="kill" if how == "kill" else "force")
        assert new in replicas
        primaries = [p for _, p in cluster.primaries()]
        assert new in primaries and old not in primaries
        if how == "kill":
            assert old not in cluster.pids
        else:
            assert cluster.replicas_of(new) == [old]
        for port in cluster.pids:
            with redis.Redis(HOST, port, decode_responses=True) as r:
                assert "cluster_state:ok" in r.execute_command("CLUSTER", "INFO")
        assert _owner(new, key_slot(key.encode())) == new
        # The client still has the old slot map: it must follow the redirect to `new`.
        assert client.get(key) == how
    finally:
        client.close()
