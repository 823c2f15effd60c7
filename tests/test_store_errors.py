"""One error family: every way a real redis-server can fail a store call reaches the caller
as a kew-plug error with one line naming the server and the cause, on both script paths
(the lean Pipe and redis-py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from harness.servers import RedisServer
from kew_plug import NewTask, StoreError, StoreUnavailable
from kew_plug.backends.redis import RedisStore
from tests.helpers import eventually

Call = Callable[[], Awaitable[Any]]
Scenario = Callable[[str, bool], contextlib.AbstractAsyncContextManager[Call]]


def enqueue(store: RedisStore) -> Call:
    return lambda: store.enqueue("q", [NewTask("a", b"payload")])


@contextlib.asynccontextmanager
async def opened(url: str, fast: bool) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(url, fast=fast, namespace="errs")
    try:
        yield store
    finally:
        await store.aclose()


@contextlib.asynccontextmanager
async def no_password(url: str, fast: bool) -> AsyncIterator[Call]:
    with RedisServer(extra_args=("--requirepass", "s3cret")) as server:
        async with opened(server.url, fast) as store:
            yield enqueue(store)


@contextlib.asynccontextmanager
async def wrong_password(url: str, fast: bool) -> AsyncIterator[Call]:
    with RedisServer(extra_args=("--requirepass", "s3cret")) as server:
        async with opened(server.url.replace("redis://", "redis://:wrong@"), fast) as store:
            yield enqueue(store)


@contextlib.asynccontextmanager
async def db_out_of_range(url: str, fast: bool) -> AsyncIterator[Call]:
    async with opened(url.rsplit("/", 1)[0] + "/99", fast) as store:
        yield enqueue(store)


@contextlib.asynccontextmanager
async def out_of_memory(url: str, fast: bool) -> AsyncIterator[Call]:
    with RedisServer(extra_args=("--maxmemory-policy", "noeviction")) as server:
        admin = aioredis.Redis.from_url(server.url)
        for i in range(8):
            await admin.set(f"filler{i}", b"x" * 256 * 1024)
        await admin.config_set("maxmemory", "1mb")  # now well under what it holds
        async with opened(server.url, fast) as store:
            yield enqueue(store)
        await admin.aclose()


@contextlib.asynccontextmanager
async def script_error(url: str, fast: bool) -> AsyncIterator[Call]:
    async with opened(url, fast) as store:
        ready = store.keys("q").ready
        await store.client.set(ready, b"not a sorted set")
        yield enqueue(store)
        await store.purge_namespace()


@contextlib.asynccontextmanager
async def read_only_replica(url: str, fast: bool) -> AsyncIterator[Call]:
    port = url.rsplit(":", 1)[1].split("/")[0]
    with RedisServer(extra_args=("--replicaof", "127.0.0.1", port)) as replica:
        admin = aioredis.Redis.from_url(replica.url)

        async def linked() -> bool:
            info = await admin.info("replication")
            return info.get("master_link_status") == "up"

        await eventually(linked, bool, within=10)
        async with opened(replica.url, fast) as store:
            yield enqueue(store)
        await admin.aclose()


@contextlib.asynccontextmanager
async def dropped_connection(url: str, fast: bool) -> AsyncIterator[Call]:
    """The connection is killed (CLIENT KILL) while a call waits on it for its reply."""
    admin = aioredis.Redis.from_url(url)
    async with opened(url, fast) as store:
        await store.ping()
        await store.enqueue("warm", [NewTask("w", b"p")])  # scripts loaded, sockets open

        async def call() -> Any:
            await admin.client_pause(10_000, all=False)  # holds writes, scripts included
            pending = asyncio.ensure_future(enqueue(store)())

            async def held() -> bool:
                clients = await admin.client_list()
                return any(c.get("cmd") == "evalsha" for c in clients)

            try:
                await eventually(held, bool)
                await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            finally:
                await admin.client_unpause()
            return await pending

        yield call
        await store.purge_namespace()
    await admin.aclose()


TABLE: list[tuple[str, Scenario, type[StoreError], str]] = [
    ("no password", no_password, StoreUnavailable, "refused the credentials: "),
    ("wrong password", wrong_password, StoreUnavailable, "refused the credentials: "),
    ("db out of range", db_out_of_range, StoreUnavailable, "no such database: .*out of range"),
    ("at maxmemory", out_of_memory, StoreUnavailable, r"out of memory \(maxmemory\): .*used"),
    ("script error", script_error, StoreError, "refused the call: .*WRONGTYPE"),
    ("read-only replica", read_only_replica, StoreUnavailable, "takes no writes now: .*read only"),
    ("dropped connection", dropped_connection, StoreUnavailable, "cannot reach Redis at .*closed"),
]


@pytest.mark.parametrize("fast", [True, False], ids=["pipe", "redis-py"])
@pytest.mark.parametrize(("case", "scenario", "error", "cause"), TABLE, ids=[r[0] for r in TABLE])
async def test_every_store_failure_is_one_kew_plug_line(
    redis_url: str,
    case: str,
    scenario: Scenario,
    error: type[StoreError],
    cause: str,
    fast: bool,
) -> None:
    async with scenario(redis_url, fast) as call:
        with pytest.raises(StoreError) as raised:
            await call()
    message = str(raised.value)
    assert type(raised.value) is error, f"{case}: {type(raised.value).__name__}: {message}"
    assert "\n" not in message
    assert "127.0.0.1:" in message and "s3cret" not in message and "wrong@" not in message
    assert re.search(cause, message), message
