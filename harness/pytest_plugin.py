"""pytest plugin (entry point `pytest11`), so a user's own suite can run kew-plug's proofs:

- `kew_namespace`: a Redis key namespace unique to this test and xdist worker;
- `kew_memory_store`, `kew_fakeredis_store`, `kew_redis_store`: one store per backend
  (`kew_redis_store` uses $KEW_REDIS_URL, else a throwaway redis-server, else skips);
- `kew_harness`: runs the multi-process harness, e.g. `kew_harness(store="pkg.mod:factory")`,
  and returns its report (`report.ok`, `report.data["checks"]`).

Everything is imported lazily, so the plugin costs nothing in suites that do not use it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.runner import Report
    from kew_plug.interfaces import Store


@pytest.fixture
def kew_namespace() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"kewtest-{worker}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def kew_memory_store() -> AsyncIterator[Store]:
    from kew_plug.backends.memory import MemoryStore

    async with MemoryStore() as store:
        yield store


@pytest.fixture
async def kew_fakeredis_store(kew_namespace: str) -> AsyncIterator[Store]:
    from kew_plug.backends.fake import FakeRedisStore

    async with FakeRedisStore(namespace=kew_namespace) as store:
        yield store


@pytest.fixture(scope="session")
def kew_redis_url() -> Iterator[str]:
    url = os.environ.get("KEW_REDIS_URL")
    if url:
        yield url
        return
    from harness.servers import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("no KEW_REDIS_URL and no redis-server binary")
    with RedisServer() as server:
        yield server.url


@pytest.fixture
async def kew_redis_store(kew_redis_url: str, kew_namespace: str) -> AsyncIterator[Store]:
    from kew_plug.backends.redis import RedisStore

    store = RedisStore.from_url(kew_redis_url, namespace=kew_namespace)
    try:
        yield store
    finally:
        await store.purge_namespace()
        await store.aclose()


@pytest.fixture
def kew_harness(kew_namespace: str) -> Callable[..., Report]:
    """Call with RunConfig fields (procs, tasks, store, serializer, breaker, roles, ...)."""
    from harness.runner import run

    counter = iter(range(1_000_000))

    def run_harness(**options: Any) -> Report:
        options.setdefault("namespace", f"{kew_namespace}-{next(counter)}")
        options.setdefault("progress", False)
        return run(**options)

    return run_harness
