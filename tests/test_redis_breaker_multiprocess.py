"""RedisBreaker across real OS processes: the threshold counts failures from every process,
an open breaker is open for all of them, and a half-open episode grants its probes once in
total, not once per process. Each case runs on the embedded fakeredis TCP server and on a
real redis-server. Children receive only the URL and the key and build their own client and
event loop; they are synchronized with multiprocess Barriers and Events, never with sleeps.
Also: the breaker's key carries a TTL after every operation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import multiprocess
import pytest
import redis.asyncio

from kew_plug.backends.redis.breaker import RedisBreaker
from kew_plug.interfaces import BreakerState

pytestmark = pytest.mark.multiprocess

CTX = multiprocess.get_context("spawn")
PROCS = 4
ROUNDS = 5
# How long a parent or child waits on a barrier, event, queue or join before failing.
SYNC_TIMEOUT = 15.0
# Short, so the race rounds are quick; long enough that asserting OPEN after a trip is safe.
SHORT = 0.2
LONG = 60.0


# --- children: module-level so spawn can import them; each builds its own client and loop.


def _connect(url: str, key: str, options: dict[str, Any]) -> RedisBreaker:
    return RedisBreaker(redis.asyncio.Redis.from_url(url), key, **options)


def child_record_failures(
    url: str, key: str, options: dict[str, Any], count: int, start: Any, done: Any
) -> None:
    """Wait at `start` (a Barrier, or None), record `count` failures, then set `done`."""

    async def main() -> None:
        breaker = _connect(url, key, options)
        try:
            await breaker.client.ping()
            if start is not None:
                start.wait(SYNC_TIMEOUT)
            for _ in range(count):
                await breaker.record_failure()
        finally:
            await breaker.client.aclose()
        if done is not None:
            done.set()

    asyncio.run(main())


def child_observe(url: str, key: str, options: dict[str, Any], tripped: Any, out: Any) -> None:
    """Once `tripped` is set, report what this process sees: (state, allow, retry_after)."""

    async def main() -> None:
        breaker = _connect(url, key, options)
        try:
            await breaker.client.ping()
            if not tripped.wait(SYNC_TIMEOUT):
                out.put(("timeout", None, None))
                return
            state = await breaker.state()
            allowed = await breaker.allow()
            retry = await breaker.retry_after()
            out.put((str(state), allowed, retry))
        finally:
            await breaker.client.aclose()

    asyncio.run(main())


def child_probe(
    url: str, key: str, options: dict[str, Any], rounds: int, gate: Any, out: Any
) -> None:
    """For each round: wait at `gate` with every other racer and the parent, then call
    allow() once and report (round, granted)."""

    async def main() -> None:
        breaker = _connect(url, key, options)
        try:
            await breaker.client.ping()
            for n in range(rounds):
                gate.wait(SYNC_TIMEOUT)
                out.put((n, await breaker.allow()))
        finally:
            await breaker.client.aclose()

    asyncio.run(main())


# --- fixtures and helpers


@pytest.fixture(params=["embedded", "redis"], ids=lambda p: f"server={p}")
def server_url(request: pytest.FixtureRequest) -> str:
    fixture = "embedded_url" if request.param == "embedded" else "redis_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def key(namespace: str) -> str:
    return f"{namespace}:{{q}}:breaker:default"


@pytest.fixture
async def client(server_url: str) -> AsyncIterator[Any]:
    c = redis.asyncio.Redis.from_url(server_url)
    yield c
    await c.aclose()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Any]]:
    """Start a spawned process; any still alive at teardown is killed by its own PID."""
    started: list[Any] = []

    def start(target: Callable[..., None], *args: Any) -> Any:
        proc = CTX.Process(target=target, args=args, daemon=True)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)


async def join_all(procs: list[Any]) -> None:
    for proc in procs:
        await asyncio.to_thread(proc.join, SYNC_TIMEOUT)
        assert proc.exitcode == 0, f"child {proc.pid} exited with {proc.exitcode}"


async def take(out: Any, n: int) -> list[Any]:
    return [await asyncio.to_thread(out.get, True, SYNC_TIMEOUT) for _ in range(n)]


async def wait_for_state(breaker: RedisBreaker, want: BreakerState, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (seen := await breaker.state()) != want:
        if time.monotonic() > deadline:
            pytest.fail(f"breaker still {seen} after {within}s, expected {want}")
        await asyncio.sleep(0.005)


# --- tests


async def test_failures_in_one_process_open_it_for_all(
    server_url: str, key: str, client: Any, spawn: Callable[..., Any]
) -> None:
    options = {"failure_threshold": 3, "reset_timeout": LONG}
    tripped = CTX.Event()
    out = CTX.Queue()
    observers = [
        spawn(child_observe, server_url, key, options, tripped, out) for _ in range(PROCS - 1)
    ]
    failer = spawn(child_record_failures, server_url, key, options, 3, None, tripped)
    seen = await take(out, PROCS - 1)
    await join_all([failer, *observers])
    for state, allowed, retry in seen:
        assert state == BreakerState.OPEN
        assert allowed is False
        assert 0 < retry <= LONG
    breaker = RedisBreaker(client, key, **options)
    assert await breaker.opened_count() == 1


@pytest.mark.parametrize("max_calls", [1, 2])
async def test_half_open_grants_max_calls_across_processes(
    server_url: str, key: str, client: Any, spawn: Callable[..., Any], max_calls: int
) -> None:
    options = {"failure_threshold": 1, "reset_timeout": SHORT, "half_open_max_calls": max_calls}
    breaker = RedisBreaker(client, key, **options)
    gate = CTX.Barrier(PROCS + 1)
    out = CTX.Queue()
    racers = [spawn(child_probe, server_url, key, options, ROUNDS, gate, out) for _ in range(PROCS)]
    for n in range(ROUNDS):
        await breaker.reset()
        await breaker.record_failure()
        assert await breaker.state() == BreakerState.OPEN
        await wait_for_state(breaker, BreakerState.HALF_OPEN)
        await asyncio.to_thread(gate.wait, SYNC_TIMEOUT)
        results = await take(out, PROCS)
        assert {r for r, _ in results} == {n}
        granted = sum(1 for _, ok in results if ok)
        assert granted == max_calls, f"round {n}: {granted} probes granted, want {max_calls}"
        # The episode's probes are spent: nobody else gets one until it closes or reopens.
        assert await breaker.allow() is False
        assert await breaker.state() == BreakerState.HALF_OPEN
    await join_all(racers)
    assert await breaker.opened_count() == ROUNDS


async def test_failures_from_several_processes_add_up(
    server_url: str, key: str, client: Any, spawn: Callable[..., Any]
) -> None:
    options = {"failure_threshold": 4, "reset_timeout": LONG}
    breaker = RedisBreaker(client, key, **options)
    start = CTX.Barrier(2)
    procs = [
        spawn(child_record_failures, server_url, key, options, 2, start, None) for _ in range(2)
    ]
    await join_all(procs)
    assert await breaker.state() == BreakerState.OPEN
    assert await breaker.allow() is False
    # The fourth failure opened it exactly once, whichever process recorded it.
    assert await breaker.opened_count() == 1


async def test_one_process_short_of_threshold_stays_closed(
    server_url: str, key: str, client: Any, spawn: Callable[..., Any]
) -> None:
    options = {"failure_threshold": 4, "reset_timeout": LONG}
    breaker = RedisBreaker(client, key, **options)
    await join_all([spawn(child_record_failures, server_url, key, options, 3, None, None)])
    assert await breaker.state() == BreakerState.CLOSED
    # This process's single failure is the fourth in a row, counted with the child's three.
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.OPEN


async def test_key_always_has_a_ttl(server_url: str, key: str, client: Any) -> None:
    breaker = RedisBreaker(
        client, key, failure_threshold=2, reset_timeout=SHORT, half_open_max_calls=1, ttl=30.0
    )
    # Reads of a breaker that has never been written create nothing.
    await breaker.state()
    await breaker.allow()
    assert await client.exists(key) == 0

    async def check(step: str) -> None:
        pttl = await client.pttl(key)
        assert 0 < pttl <= 30_000, f"after {step}: PTTL {pttl}"

    ops: list[tuple[str, Callable[[], Any]]] = [
        ("failure", breaker.record_failure),
        ("allow (closed)", breaker.allow),
        ("success (closed)", breaker.record_success),
        ("failure", breaker.record_failure),
        ("failure (trips)", breaker.record_failure),
        ("state (open)", breaker.state),
        ("allow (open)", breaker.allow),
        ("success (open, ignored)", breaker.record_success),
        ("failure (open, ignored)", breaker.record_failure),
        ("retry_after", breaker.retry_after),
    ]
    for step, op in ops:
        await op()
        await check(step)
    await wait_for_state(breaker, BreakerState.HALF_OPEN)
    await check("state (half-open)")
    for step, op in [
        ("allow (probe)", breaker.allow),
        ("allow (denied)", breaker.allow),
        ("failure (reopens)", breaker.record_failure),
        ("opened_count", breaker.opened_count),
    ]:
        await op()
        await check(step)
    await wait_for_state(breaker, BreakerState.HALF_OPEN)
    for step, op in [
        ("allow (probe)", breaker.allow),
        ("success (closes)", breaker.record_success),
        ("reset", breaker.reset),
    ]:
        await op()
        await check(step)
    # A write refreshes the TTL back to the full ttl.
    await client.pexpire(key, 1000)
    await breaker.record_failure()
    assert await client.pttl(key) > 1000
