"""The plugin's store fixtures under pytest-asyncio (strict or auto mode): async fixtures
that pytest-asyncio runs on the test's own event loop, so a store is made, used and closed
on one loop. Registered by `harness.pytest_plugin` only when pytest-asyncio is active."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from kew_plug.interfaces import Store


@pytest_asyncio.fixture
async def kew_memory_store() -> AsyncIterator[Store]:
    from kew_plug.backends.memory import MemoryStore

    async with MemoryStore() as store:
        yield store


@pytest_asyncio.fixture
async def kew_fakeredis_store(kew_namespace: str) -> AsyncIterator[Store]:
    from kew_plug.backends.fake import FakeRedisStore

    async with FakeRedisStore(namespace=kew_namespace) as store:
        yield store


@pytest_asyncio.fixture
async def kew_redis_store(kew_redis_url: str, kew_namespace: str) -> AsyncIterator[Store]:
    from kew_plug.backends.redis import RedisStore

    store = RedisStore.from_url(kew_redis_url, namespace=kew_namespace)
    try:
        yield store
    finally:
        await store.purge_namespace()
        await store.aclose()
