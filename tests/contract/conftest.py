"""The factories this project hands the shipped contract suites (harness.contract): the same
suites a user runs with --kew-store / --kew-serializer / --kew-breaker, here parametrized
over every implementation in this repository."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio

from harness.contract.serializer import FACTORIES
from kew_plug.backends.breakers import LocalBreaker
from kew_plug.backends.redis import RedisStore
from kew_plug.backends.redis.breaker import RedisBreaker
from kew_plug.interfaces import Breaker, Serializer, Store
from tests.conftest import CONTRACT_STORES, store_factory


@pytest.fixture(params=CONTRACT_STORES, ids=lambda p: f"store={p}")
def kew_store_factory(request: pytest.FixtureRequest, namespace: str) -> Callable[..., Store]:
    factory, _ = store_factory(request.param, request, namespace)
    return factory


@pytest.fixture(scope="module", params=list(FACTORIES), ids=list(FACTORIES))
def kew_serializer(request: pytest.FixtureRequest) -> Serializer:
    return FACTORIES[request.param]()


class OwnClientBreaker(RedisBreaker):
    """A RedisBreaker that closes its client: the suite closes breakers on its own loop."""

    async def aclose(self) -> None:
        await self.client.aclose()


@pytest.fixture(
    params=["local", "fakeredis", "redis", "redis-cluster"], ids=lambda name: f"breaker={name}"
)
def kew_breaker_factory(request: pytest.FixtureRequest) -> Callable[..., Breaker]:
    kind: str = request.param
    if kind == "local":
        return LocalBreaker
    server = fakeredis.FakeServer()
    url = None
    if kind in ("redis", "redis-cluster"):  # resolved now: a missing server skips early
        url = request.getfixturevalue("cluster_url" if kind == "redis-cluster" else "redis_url")

    def factory(name: str, **options: Any) -> Breaker:
        # One key per test: every breaker a test makes shares it, as processes would.
        key = f"{name}:{{q}}:breaker:default"
        if kind == "fakeredis":
            client: Any = fakeredis.FakeAsyncRedis(server=server)
        elif kind == "redis-cluster":
            client = RedisStore.from_url(str(url)).client
        else:
            client = redis.asyncio.Redis.from_url(str(url))
        return OwnClientBreaker(client, key, **options)

    return factory
