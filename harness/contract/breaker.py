"""The Breaker contract: what every circuit breaker owes. Tests use only the public
interface and real elapsed time, because shared breakers (e.g. Redis) keep time on their
server and cannot take an injected clock. Run it on yours with

    pytest --pyargs harness.contract.breaker --kew-breaker=myapp.guard:make_breaker"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from harness.contract import breaker_test, public_tests
from kew_plug.interfaces import Breaker, BreakerState, DecisionKind

MakeBreaker = Callable[..., Awaitable[Breaker]]

# Short enough to keep the suite fast, long enough that asserting OPEN right after a trip
# does not race the timeout.
SHORT = 0.2
# Long enough that the breaker cannot half-open while a test is running.
LONG = 60.0


async def wait_for_state(breaker: Breaker, want: BreakerState, within: float = 5.0) -> float:
    """Poll until `breaker` reports `want`; return when it was seen (time.monotonic)."""
    deadline = time.monotonic() + within
    while True:
        seen = await breaker.state()
        now = time.monotonic()
        if seen == want:
            return now
        if now > deadline:
            pytest.fail(f"breaker still {seen} after {within}s, expected {want}")
        await asyncio.sleep(0.01)


async def trip(breaker: Breaker) -> float:
    """Record failures until open; return the time just before the tripping failure."""
    for _ in range(breaker.failure_threshold - 1):
        await breaker.record_failure()
    started = time.monotonic()
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.OPEN
    return started


async def half_open(breaker: Breaker) -> None:
    await trip(breaker)
    await wait_for_state(breaker, BreakerState.HALF_OPEN)


@breaker_test
async def test_starts_closed_and_allows(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=3, reset_timeout=LONG)
    assert await breaker.state() == BreakerState.CLOSED
    assert await breaker.allow() is True
    assert await breaker.retry_after() == 0


@breaker_test
async def test_opens_exactly_at_threshold(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=3, reset_timeout=LONG)
    for _ in range(2):
        await breaker.record_failure()
    assert await breaker.state() == BreakerState.CLOSED
    assert await breaker.allow() is True
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.OPEN


@breaker_test
async def test_success_resets_consecutive_failures(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=3, reset_timeout=LONG)
    await breaker.record_failure()
    await breaker.record_failure()
    await breaker.record_success()
    await breaker.record_failure()
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.CLOSED
    assert await breaker.allow() is True
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.OPEN


@breaker_test
async def test_open_denies_allow(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=2, reset_timeout=LONG)
    await trip(breaker)
    assert [await breaker.allow() for _ in range(5)] == [False] * 5
    assert await breaker.state() == BreakerState.OPEN
    assert 0 < await breaker.retry_after() <= LONG


@breaker_test
async def test_half_opens_after_reset_timeout(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=1, reset_timeout=SHORT)
    started = await trip(breaker)
    seen = await wait_for_state(breaker, BreakerState.HALF_OPEN)
    # Small tolerance: a shared breaker's clock is not ours.
    assert seen - started >= SHORT - 0.05
    assert await breaker.retry_after() == 0


@pytest.mark.parametrize("max_calls", [1, 3])
@breaker_test
async def test_half_open_grants_exactly_max_calls(
    make_breaker: MakeBreaker, max_calls: int
) -> None:
    breaker = await make_breaker(
        failure_threshold=1, reset_timeout=SHORT, half_open_max_calls=max_calls
    )
    await half_open(breaker)
    granted = await asyncio.gather(*(breaker.allow() for _ in range(20)))
    assert sum(granted) == max_calls
    assert await breaker.allow() is False
    assert await breaker.state() == BreakerState.HALF_OPEN


@breaker_test
async def test_probe_success_closes(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=2, reset_timeout=SHORT)
    await half_open(breaker)
    assert await breaker.allow() is True
    await breaker.record_success()
    assert await breaker.state() == BreakerState.CLOSED
    assert [await breaker.allow() for _ in range(5)] == [True] * 5
    # Counts start from zero after closing: one failure short of the threshold stays closed.
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.CLOSED


@breaker_test
async def test_probe_failure_reopens_for_a_new_period(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=1, reset_timeout=SHORT)
    await half_open(breaker)
    assert await breaker.allow() is True
    started = time.monotonic()
    await breaker.record_failure()
    # Still OPEN although the first period is long over: the new period starts now.
    assert await breaker.state() == BreakerState.OPEN
    assert await breaker.allow() is False
    seen = await wait_for_state(breaker, BreakerState.HALF_OPEN)
    assert seen - started >= SHORT - 0.05
    # A new half-open episode grants a fresh probe.
    assert await breaker.allow() is True
    assert await breaker.allow() is False


@breaker_test
async def test_reset_closes_open_breaker(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=2, reset_timeout=LONG)
    await trip(breaker)
    await breaker.reset()
    assert await breaker.state() == BreakerState.CLOSED
    assert await breaker.allow() is True
    assert await breaker.retry_after() == 0
    # Zero counts: threshold - 1 failures after reset keep it closed.
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.CLOSED


@breaker_test
async def test_reset_closes_half_open_breaker(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=1, reset_timeout=SHORT)
    await half_open(breaker)
    assert await breaker.allow() is True
    await breaker.reset()
    assert await breaker.state() == BreakerState.CLOSED
    assert [await breaker.allow() for _ in range(3)] == [True] * 3


@breaker_test
async def test_reset_zeroes_failure_count_in_closed(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=3, reset_timeout=LONG)
    await breaker.record_failure()
    await breaker.record_failure()
    await breaker.reset()
    await breaker.record_failure()
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.CLOSED
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.OPEN


def kind(breaker: Breaker) -> DecisionKind | None:
    return breaker.last_decision.kind if breaker.last_decision is not None else None


@breaker_test
async def test_decisions_name_the_failure_that_tripped_it(make_breaker: MakeBreaker) -> None:
    breaker = await make_breaker(failure_threshold=3, reset_timeout=SHORT)
    kinds = []
    for _ in range(3):
        await breaker.record_failure()
        kinds.append(kind(breaker))
    assert kinds == [DecisionKind.RECORDED, DecisionKind.RECORDED, DecisionKind.TRIPPED]
    assert await breaker.opened_count() == 1
    await breaker.record_failure()  # a straggler while open changes nothing
    assert kind(breaker) is DecisionKind.RECORDED
    assert await breaker.allow() is False and kind(breaker) is DecisionKind.DENIED


@breaker_test
async def test_decisions_mark_half_open_grants_as_probes_on_one_clock(
    make_breaker: MakeBreaker,
) -> None:
    breaker = await make_breaker(failure_threshold=1, reset_timeout=SHORT)
    assert await breaker.allow() is True and kind(breaker) is DecisionKind.GRANTED
    await half_open(breaker)
    tripped = breaker.last_decision
    assert await breaker.allow() is True and kind(breaker) is DecisionKind.PROBE
    probe = breaker.last_decision
    assert tripped is not None and probe is not None
    # On the breaker's clock the probe came at least reset_timeout after the trip.
    assert probe.at_us - tripped.at_us >= round(SHORT * 1_000_000)
    assert probe.opened == tripped.opened == 1
    await breaker.record_success()
    assert kind(breaker) is DecisionKind.CLOSED
    assert await breaker.allow() is True and kind(breaker) is DecisionKind.GRANTED


@breaker_test
async def test_a_probe_that_never_reports_expires_after_reset_timeout(
    make_breaker: MakeBreaker,
) -> None:
    breaker = await make_breaker(failure_threshold=1, reset_timeout=SHORT)
    await half_open(breaker)
    assert await breaker.allow() is True  # the probe's process then dies silently
    assert await breaker.allow() is False
    started = time.monotonic()
    while not await breaker.allow():
        assert time.monotonic() - started < SHORT + 2.0, "lost probe jammed the breaker"
        await asyncio.sleep(0.01)
    assert time.monotonic() - started >= SHORT - 0.05
    assert await breaker.allow() is False  # one new probe per new episode


__all__ = public_tests(globals())
