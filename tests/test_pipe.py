"""The lean script connection: replies matched to callers under concurrency, errors typed
like redis-py's, scripts reloaded after a flush, reconnection after a drop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rex

from harness.servers import RedisServer, redis_server_binary
from kew_plug import StoreUnavailable
from kew_plug.backends.redis.pipe import Pipe, PipeScript, _Protocol
from kew_plug.backends.redis.replication import ReplicaWait
from tests.helpers import eventually


@pytest.fixture(params=["embedded", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue("embedded_url" if request.param == "embedded" else "redis_url")
    )


async def test_concurrent_calls_each_get_their_own_reply(url: str, namespace: str) -> None:
    pipe = Pipe(url)
    key = f"{namespace}:n"
    replies = await asyncio.gather(*(pipe.execute("INCR", key) for _ in range(200)))
    assert sorted(replies) == list(range(1, 201))
    echoes = await asyncio.gather(*(pipe.execute("ECHO", f"m{i}") for i in range(50)))
    assert echoes == [f"m{i}".encode() for i in range(50)]
    await pipe.aclose()


async def test_server_errors_are_response_errors_and_the_pipe_stays_usable(
    url: str, namespace: str
) -> None:
    pipe = Pipe(url)
    await pipe.execute("SET", f"{namespace}:s", "text")
    with pytest.raises(rex.ResponseError):
        await pipe.execute("INCR", f"{namespace}:s")
    assert await pipe.execute("ECHO", "still here") == b"still here"
    await pipe.aclose()


async def test_a_cancelled_caller_does_not_shift_the_replies(url: str) -> None:
    pipe = Pipe(url)
    slow = asyncio.ensure_future(pipe.execute("ECHO", "first"))
    await asyncio.sleep(0)
    slow.cancel()
    assert await pipe.execute("ECHO", "second") == b"second"
    await pipe.aclose()


async def test_script_is_loaded_again_after_a_flush(url: str, namespace: str) -> None:
    pipe = Pipe(url)
    client = aioredis.Redis.from_url(url)
    registered = client.register_script("return ARGV[1] .. KEYS[1]")
    script = PipeScript(pipe, "return ARGV[1] .. KEYS[1]", registered.sha)
    assert await script(keys=[f"{namespace}k"], args=["v"]) == f"v{namespace}k".encode()
    await client.script_flush()
    assert await script(keys=["k2"], args=["w"]) == b"wk2"
    await client.aclose()
    await pipe.aclose()


@pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server")
async def test_a_dropped_connection_reconnects_with_auth_and_database() -> None:
    with RedisServer(extra_args=("--requirepass", "secret-password")) as server:
        pipe = Pipe(f"redis://:secret-password@127.0.0.1:{server.port}/3")
        assert await pipe.execute("SET", "k", "v") == b"OK"
        admin = aioredis.Redis.from_url(f"redis://:secret-password@127.0.0.1:{server.port}/0")
        await admin.client_kill_filter(_type="normal", skipme=True)
        errors = 0
        for _ in range(20):  # a call in flight when the socket dies fails; later ones reconnect
            try:
                await pipe.execute("PING")
            except rex.ConnectionError:
                errors += 1
        assert errors <= 1
        assert await pipe.execute("GET", "k") == b"v"  # reconnected, AUTH and SELECT 3 again
        assert await pipe.execute("CLIENT", "GETNAME") is None
        await admin.aclose()
        await pipe.aclose()
        bad = Pipe(f"redis://:wrong-password@127.0.0.1:{server.port}/0")
        with pytest.raises(rex.AuthenticationError):
            await bad.execute("PING")
        await bad.aclose()


async def test_a_server_that_stops_answering_fails_the_call_within_the_timeout() -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server")
    with RedisServer() as server:
        pipe = Pipe(server.url, timeout=0.3)
        assert await pipe.execute("PING") == b"PONG"
        server.signal(signal.SIGSTOP)  # alive, connected, silent: no reset ever comes
        try:
            started = time.monotonic()
            with pytest.raises(rex.ConnectionError, match=r"no reply within 0.3 s"):
                await pipe.execute("PING")
            assert time.monotonic() - started < 2.0
        finally:
            server.signal(signal.SIGCONT)
        assert await pipe.execute("PING") == b"PONG"  # a fresh connection on the next call
        await pipe.aclose()


@contextlib.asynccontextmanager
async def silent_replica() -> AsyncIterator[tuple[PipeScript, aioredis.Redis]]:
    """An INCR script with replicas=1 on a primary whose one replica is connected but frozen
    (SIGSTOP) while the caller runs, so every WAIT times out (200 ms); and an admin client."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server")
    with RedisServer() as primary:
        replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(primary.port)))
        with replica:
            admin = aioredis.Redis.from_url(primary.url)
            await eventually(admin.info, lambda i: i.get("connected_slaves") == 1, within=10)
            pipe = Pipe(primary.url)
            source = "return redis.call('INCR', KEYS[1])"
            sha = (await pipe.execute("SCRIPT", "LOAD", source)).decode()
            script = PipeScript(pipe, source, sha, ReplicaWait(1, 0.2, primary.url))
            await admin.config_resetstat()
            replica.signal(signal.SIGSTOP)
            try:
                yield script, admin
            finally:
                replica.signal(signal.SIGCONT)
                await pipe.aclose()
                await admin.aclose()


async def test_writes_waiting_for_a_slow_replica_share_one_wait() -> None:
    """WAIT blocks its connection: calls that arrive while one is out share the next WAIT
    instead of queueing one each behind it."""
    async with silent_replica() as (script, admin):
        calls = [script(keys=["n"], args=[]) for _ in range(6)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        waits = (await admin.info("commandstats"))["cmdstat_wait"]["calls"]
        assert waits == 2  # the first call's, then one for the five behind it
        assert int(await admin.get("n")) == 6  # every script ran on the primary


async def test_one_caller_cancelled_does_not_cancel_the_shared_wait_for_others() -> None:
    async with silent_replica() as (script, _):
        first = asyncio.create_task(script(keys=["n"], args=[]))
        behind = [asyncio.create_task(script(keys=["n"], args=[])) for _ in range(3)]
        await asyncio.sleep(0)  # one loop turn: every task has written its script
        behind[0].cancel()
        results = await asyncio.gather(first, *behind, return_exceptions=True)
        assert isinstance(results[1], asyncio.CancelledError)
        others = [results[0], *results[2:]]
        assert all(isinstance(r, StoreUnavailable) for r in others), others


@pytest.mark.parametrize("reply_first", [True, False])
async def test_a_blocking_reply_outlives_its_callers_cancellation(reply_first: bool) -> None:
    """A blocking pop's reply may hold a record the server popped for us: when its caller
    was cancelled, `rescue` gets it, whether it came before or after the caller asked; the
    replies behind it still reach their own callers."""
    proto = _Protocol(5.0)
    loop = asyncio.get_running_loop()
    blocked, after = loop.create_future(), loop.create_future()
    proto.expect([blocked, after])
    proto.kept.add(blocked)
    blocked.cancel()
    replies = b"*2\r\n$5\r\ninbox\r\n$6\r\nrecord\r\n+PONG\r\n"
    if reply_first:
        proto.data_received(replies)
        late = proto.rescue(blocked)
    else:
        late = proto.rescue(blocked)
        assert not late.done()
        proto.data_received(replies)
    assert late.result() == [b"inbox", b"record"]
    assert after.result() == b"PONG"
    assert not proto.kept and not proto.rescued and not proto.orphans
    if proto.watchdog is not None:
        proto.watchdog.cancel()


async def test_an_ordinary_reply_of_a_cancelled_caller_is_dropped_in_order() -> None:
    proto = _Protocol(5.0)
    loop = asyncio.get_running_loop()
    gone, after = loop.create_future(), loop.create_future()
    proto.expect([gone, after])
    gone.cancel()
    proto.data_received(b":1\r\n:2\r\n")
    assert after.result() == 2 and not proto.orphans
    with pytest.raises(rex.ConnectionError):
        proto.rescue(gone).result()  # never kept: nothing to rescue
    if proto.watchdog is not None:
        proto.watchdog.cancel()
