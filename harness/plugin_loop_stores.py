"""The plugin's store fixtures without pytest-asyncio: sync fixtures whose stores belong to
`kew_loop`, the test's `asyncio.Runner`. Setup and teardown run on it, and so must the test:
`kew_loop.run(main(kew_memory_store))`. Registered by `harness.pytest_plugin` only when
pytest-asyncio is absent or disabled (`-p no:asyncio`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from kew_plug.interfaces import Store


@pytest.fixture
def kew_memory_store(kew_loop: asyncio.Runner) -> Iterator[Store]:
    from kew_plug.backends.memory import MemoryStore

    store = MemoryStore()
    yield store
    kew_loop.run(store.aclose())


@pytest.fixture
def kew_fakeredis_store(kew_loop: asyncio.Runner, kew_namespace: str) -> Iterator[Store]:
    from kew_plug.backends.fake import FakeRedisStore

    store = FakeRedisStore(namespace=kew_namespace)
    yield store
    kew_loop.run(store.aclose())


@pytest.fixture
def kew_redis_store(
    kew_loop: asyncio.Runner, kew_redis_url: str, kew_namespace: str
) -> Iterator[Store]:
    from kew_plug.backends.redis import RedisStore

    store = RedisStore.from_url(kew_redis_url, namespace=kew_namespace)
    yield store

    async def close() -> None:
        try:
            await store.purge_namespace()
        finally:
            await store.aclose()

    kew_loop.run(close())
