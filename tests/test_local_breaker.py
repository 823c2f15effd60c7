"""LocalBreaker with an injected clock: exact timings, the failure-rate window, retry_after,
opened_count and argument validation. Behaviour common to all breakers is in the contract."""

from __future__ import annotations

from typing import Any

import pytest

from kew_plug.backends.breakers import LocalBreaker
from kew_plug.errors import InvalidArgument
from kew_plug.interfaces import Breaker, BreakerDecision, BreakerState, DecisionKind

T0 = 100.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kwargs: Any) -> LocalBreaker:
    kwargs.setdefault("reset_timeout", 10.0)
    return LocalBreaker(clock=clock, **kwargs)


async def record(breaker: LocalBreaker, outcomes: str) -> None:
    """Record a run of outcomes written as a string: 'F' failure, 'S' success."""
    for outcome in outcomes:
        if outcome == "F":
            await breaker.record_failure()
        else:
            assert outcome == "S"
            await breaker.record_success()


def test_is_a_breaker_with_defaults() -> None:
    breaker = LocalBreaker()
    assert isinstance(breaker, Breaker)
    assert (breaker.failure_threshold, breaker.reset_timeout, breaker.half_open_max_calls) == (
        5,
        30.0,
        1,
    )
    assert (breaker.failure_rate, breaker.window) == (None, 20)


async def test_half_opens_at_reset_timeout_not_before(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    await breaker.record_failure()
    clock.now = T0 + 9.999
    assert await breaker.state() == BreakerState.OPEN
    assert await breaker.allow() is False
    clock.now = T0 + 10.0
    # Reported without any allow() call having moved it.
    assert await breaker.state() == BreakerState.HALF_OPEN


async def test_half_open_episode_grants_are_counted_per_episode(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, half_open_max_calls=2)
    await breaker.record_failure()
    clock.now = T0 + 10.0
    assert [await breaker.allow() for _ in range(4)] == [True, True, False, False]
    await breaker.record_failure()  # a probe failed: reopens at T0 + 10
    clock.now = T0 + 19.0
    assert await breaker.allow() is False
    clock.now = T0 + 20.0
    assert [await breaker.allow() for _ in range(3)] == [True, True, False]


async def test_retry_after(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    assert await breaker.retry_after() == 0.0
    await breaker.record_failure()
    assert await breaker.retry_after() == 10.0
    clock.now = T0 + 3.0
    assert await breaker.retry_after() == 7.0
    clock.now = T0 + 10.0
    assert await breaker.retry_after() == 0.0  # half-open
    clock.now = T0 + 11.0
    await breaker.record_failure()  # probe failure: a new period from now
    assert await breaker.retry_after() == 10.0
    await breaker.reset()
    assert await breaker.retry_after() == 0.0


async def test_opened_count(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2)
    assert await breaker.opened_count() == 0
    await record(breaker, "FF")
    assert await breaker.opened_count() == 1
    await record(breaker, "FFF")  # failures while open neither reopen nor count
    assert await breaker.opened_count() == 1
    clock.now = T0 + 10.0
    await breaker.record_failure()  # half-open failure reopens
    assert await breaker.opened_count() == 2
    await breaker.reset()  # a lifetime statistic: reset does not erase history
    assert await breaker.opened_count() == 2


async def test_decisions_are_reported_on_the_breaker_clock_in_microseconds(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold=1)
    assert breaker.last_decision is None and breaker.shared is False
    assert await breaker.allow()
    assert breaker.last_decision == BreakerDecision(DecisionKind.GRANTED, 100_000_000, 0)
    clock.now = T0 + 1.5
    await breaker.record_failure()
    assert breaker.last_decision == BreakerDecision(DecisionKind.TRIPPED, 101_500_000, 1)
    clock.now = T0 + 11.499999
    assert not await breaker.allow()
    assert breaker.last_decision == BreakerDecision(DecisionKind.DENIED, 111_499_999, 1)
    clock.now = T0 + 11.5  # exactly reset_timeout after the trip: half-open
    assert await breaker.allow()
    assert breaker.last_decision == BreakerDecision(DecisionKind.PROBE, 111_500_000, 1)
    await breaker.record_success()
    assert breaker.last_decision.kind is DecisionKind.CLOSED
    await breaker.record_success()
    assert breaker.last_decision.kind is DecisionKind.RECORDED


async def test_outcomes_while_open_are_ignored(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    await breaker.record_failure()
    clock.now = T0 + 5.0
    await breaker.record_success()  # a straggler's success does not close
    assert await breaker.state() == BreakerState.OPEN
    await breaker.record_failure()  # a straggler's failure does not extend the period
    clock.now = T0 + 10.0
    assert await breaker.state() == BreakerState.HALF_OPEN


async def test_failure_rate_opens_at_rate(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=100, failure_rate=0.5, window=10)
    await record(breaker, "SFSFSFSFS")
    assert await breaker.state() == BreakerState.CLOSED
    await breaker.record_failure()  # 5 of the last 10
    assert await breaker.state() == BreakerState.OPEN
    assert await breaker.opened_count() == 1


async def test_failure_rate_below_rate_stays_closed(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=100, failure_rate=0.5, window=10)
    await record(breaker, "SSFSFSSFSF")  # 4 of 10
    assert await breaker.state() == BreakerState.CLOSED


async def test_failure_rate_needs_a_full_window(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=100, failure_rate=0.5, window=10)
    await record(breaker, "FFFFFFFFF")  # 9 of 9, but fewer than `window` calls
    assert await breaker.state() == BreakerState.CLOSED
    await breaker.record_failure()
    assert await breaker.state() == BreakerState.OPEN


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # The 11th call evicts a success: the last 10 hold 5 failures.
        ("SFSFSFSFSSF", BreakerState.OPEN),
        # The 11th call evicts a failure: the last 10 still hold 4.
        ("FSFSFSFSSSF", BreakerState.CLOSED),
    ],
)
async def test_failure_rate_window_slides(
    clock: FakeClock, history: str, expected: BreakerState
) -> None:
    breaker = make(clock, failure_threshold=100, failure_rate=0.5, window=10)
    await record(breaker, history)
    assert await breaker.state() == expected


async def test_without_failure_rate_only_consecutive_failures_count(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=3, window=4)
    await record(breaker, "FFSFFSFFS")
    assert await breaker.state() == BreakerState.CLOSED


async def test_closing_clears_the_rate_window(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=100, failure_rate=0.5, window=4)
    await record(breaker, "SFSF")
    assert await breaker.state() == BreakerState.OPEN
    clock.now = T0 + 10.0
    assert await breaker.allow() is True
    await breaker.record_success()
    assert await breaker.state() == BreakerState.CLOSED
    await record(breaker, "SSF")  # only 3 calls since closing: not a full window
    assert await breaker.state() == BreakerState.CLOSED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 3},
        {"failure_threshold": 100, "failure_rate": 0.75, "window": 4},
    ],
    ids=["consecutive", "rate"],
)
async def test_reset_clears_counts(clock: FakeClock, kwargs: dict[str, Any]) -> None:
    breaker = make(clock, **kwargs)
    await record(breaker, "SSFF")
    assert await breaker.state() == BreakerState.CLOSED
    await breaker.reset()
    await record(breaker, "FF")  # had reset kept the counts, this would open
    assert await breaker.state() == BreakerState.CLOSED


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"failure_threshold": True}, "failure_threshold"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_timeout": -1.0}, "reset_timeout"),
        ({"reset_timeout": float("nan")}, "reset_timeout"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"failure_rate": 0.0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"window": 0}, "window"),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        LocalBreaker(**kwargs)
    message = str(caught.value)
    assert name in message
    assert repr(next(iter(kwargs.values()))) in message
    assert isinstance(caught.value, ValueError)


def test_boundary_arguments_are_accepted() -> None:
    breaker = LocalBreaker(
        failure_threshold=1, reset_timeout=0.001, half_open_max_calls=1, failure_rate=1.0, window=1
    )
    assert breaker.failure_rate == 1.0
