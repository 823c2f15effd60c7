"""The pytest plugin's fixtures, as a user's suite would use them."""

from __future__ import annotations

import os

from kew_plug import Queue, Worker
from kew_plug.interfaces import Store


async def roundtrip(store: Store) -> int:
    queue = Queue(store, "cloudpickle", name="plugin", secret="p" * 32)
    handle = await queue.submit(divmod, (17, 5))
    await Worker(queue).drain()
    result: int = (await handle.result())[0]
    return result


async def test_memory_store_fixture(kew_memory_store: Store) -> None:
    assert await roundtrip(kew_memory_store) == 3


async def test_fakeredis_store_fixture(kew_fakeredis_store: Store) -> None:
    assert await roundtrip(kew_fakeredis_store) == 3


async def test_redis_store_fixture_uses_its_own_namespace(
    kew_redis_store: Store, kew_namespace: str
) -> None:
    assert await roundtrip(kew_redis_store) == 3
    assert kew_redis_store.namespace.startswith("kewtest-")  # type: ignore[attr-defined]


def test_namespace_names_the_xdist_worker(kew_namespace: str) -> None:
    assert kew_namespace.startswith(f"kewtest-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
