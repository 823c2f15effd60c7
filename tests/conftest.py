"""Shared fixtures: throwaway servers, per-test namespaces, and the store matrix.

A real redis-server is started when the binary exists. Without it, real-Redis cases skip,
unless KEW_REQUIRE_REDIS=1 (set by CI), which turns the absence into a failure."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from harness.servers import EmbeddedServer, RedisServer, redis_server_binary
from kew_plug.backends.fake import FakeRedisStore
from kew_plug.backends.memory import MemoryStore
from kew_plug.backends.redis import RedisStore
from kew_plug.interfaces import Store

REQUIRE_REDIS = os.environ.get("KEW_REQUIRE_REDIS") == "1"
STORE_PARAMS = ["memory", "fakeredis", "redis"]
# The contract suites also run on a local 6-node Redis Cluster (3 primaries, 3 replicas).
CONTRACT_STORES = [*STORE_PARAMS, "redis-cluster"]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a throwaway real redis-server for this session (per xdist worker)."""
    if redis_server_binary() is None:
        if REQUIRE_REDIS:
            pytest.fail("KEW_REQUIRE_REDIS=1 but redis-server is not installed")
        pytest.skip("redis-server not installed")
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """Seed URL of a throwaway local Redis Cluster for this session (per xdist worker)."""
    if redis_server_binary() is None:
        if REQUIRE_REDIS:
            pytest.fail("KEW_REQUIRE_REDIS=1 but redis-server is not installed")
        pytest.skip("redis-server not installed")
    from harness.cluster import LocalCluster

    try:
        cluster = LocalCluster()
    except FileNotFoundError as e:  # redis-cli missing
        if REQUIRE_REDIS:
            pytest.fail(f"KEW_REQUIRE_REDIS=1 but {e}")
        pytest.skip(str(e))
    with cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def embedded_url() -> Iterator[str]:
    """URL of an embedded fakeredis TCP server, shareable by spawned processes."""
    with EmbeddedServer() as server:
        yield server.url


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


StoreFactory = Callable[..., Store]


def store_factory(
    kind: str, request: pytest.FixtureRequest, namespace: str
) -> tuple[StoreFactory, list[Store]]:
    """A factory of stores of one kind that all share state (same server, same namespace;
    the memory store hands out one object), and the list of stores it made. It takes the
    shipped contract suite's arguments too (`namespace=`, which it ignores: it has one)."""
    made: list[Store] = []
    fixed = namespace  # the factories' own `namespace` argument is ignored
    if kind == "memory":
        shared: list[MemoryStore] = []

        def factory(namespace: str | None = None, **options: float) -> Store:
            if not shared:
                shared.append(MemoryStore(**options))
            return shared[0]
    elif kind == "fakeredis":
        import fakeredis

        server = fakeredis.FakeServer()

        def factory(namespace: str | None = None, **options: float) -> Store:
            store = FakeRedisStore(server, namespace=fixed, **options)
            made.append(store)
            return store
    else:
        fixture = "cluster_url" if kind == "redis-cluster" else "redis_url"
        url = request.getfixturevalue(fixture)

        def factory(namespace: str | None = None, **options: float) -> Store:
            store = RedisStore.from_url(url, namespace=fixed, **options)
            made.append(store)
            return store

    return factory, made


@pytest.fixture(params=STORE_PARAMS, ids=lambda p: f"store={p}")
async def make_store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[StoreFactory]:
    """Builds stores of one kind that all share state (same server, same namespace)."""
    factory, made = store_factory(request.param, request, namespace)
    yield factory
    for store in made:
        await store.aclose()


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return make_store()


@pytest.fixture
def key() -> str:
    """A unique key for state a test shares with its task bodies."""
    return uuid.uuid4().hex


@pytest.fixture
def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"
