"""Circuit breakers. `LocalBreaker` keeps its state in this process only."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from kew_plug.errors import InvalidArgument
from kew_plug.interfaces import Breaker, BreakerDecision, BreakerState, DecisionKind

__all__ = ["LocalBreaker"]


def _check_int(name: str, value: int, minimum: int) -> None:
    # bool is an int subclass; True as a threshold is almost certainly a mistake.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgument(f"{name} must be an int >= {minimum}, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class LocalBreaker(Breaker):
    """A breaker whose state lives in this process. Every method runs without awaiting, so
    each transition is atomic on its event loop; it is not meant to be shared across threads.

    Opens after `failure_threshold` consecutive failures, or, when `failure_rate` is set,
    when at least `window` calls have been recorded and the failures among the last `window`
    reach that fraction (checked as a failure is recorded). `opened_count()` counts
    transitions to open over the breaker's life; `reset()` does not clear it, so reports stay
    truthful.

    Time is kept in whole microseconds of `clock` (seconds), and `last_decision` reports the
    same numbers, so anyone replaying the decisions with `reset_timeout` rounded to
    microseconds reaches exactly the breaker's verdicts. The clock is this process's own:
    decision times compare only with other decisions of the same process.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        failure_rate: float | None = None,
        window: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_int("failure_threshold", failure_threshold, 1)
        _check_int("half_open_max_calls", half_open_max_calls, 1)
        _check_int("window", window, 1)
        # Written as `not (x > 0)` so NaN is refused too.
        if not _is_number(reset_timeout) or not reset_timeout > 0:
            raise InvalidArgument(f"reset_timeout must be a number > 0, got {reset_timeout!r}")
        if failure_rate is not None and (not _is_number(failure_rate) or not 0 < failure_rate <= 1):
            raise InvalidArgument(
                f"failure_rate must be None or a number in (0, 1], got {failure_rate!r}"
            )
        self.failure_threshold = failure_threshold
        self.reset_timeout = float(reset_timeout)
        self.half_open_max_calls = half_open_max_calls
        self.failure_rate = failure_rate
        self.window = window
        self._clock = clock
        self._reset_us = round(self.reset_timeout * 1_000_000)
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        # True for a failure; maxlen makes it the sliding window of the last `window` calls.
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._opened_at = 0
        self._probes = 0
        self._probed_at = 0
        self._opened_count = 0
        self._now = 0  # the time of the step in progress, microseconds

    async def opened_count(self) -> int:
        """How many times the breaker has gone to open (including reopens from half-open)."""
        return self._opened_count

    def _decided(self, kind: DecisionKind) -> None:
        self.last_decision = BreakerDecision(kind, self._now, self._opened_count)

    def _refresh(self) -> BreakerState:
        # One reading of the clock per step: every comparison and the reported decision
        # time agree. Open turns half-open lazily, on the next look, so no timer is needed.
        self._now = round(self._clock() * 1_000_000)
        if self._state is BreakerState.OPEN and self._now - self._opened_at >= self._reset_us:
            self._state = BreakerState.HALF_OPEN
            self._probes = 0
        elif (
            self._state is BreakerState.HALF_OPEN
            and self._probes >= self.half_open_max_calls
            and self._now - self._probed_at >= self._reset_us
        ):
            # The probes never reported (their process died): start a new episode rather
            # than stay half-open and refuse every caller for ever.
            self._probes = 0
        return self._state

    def _clear_counts(self) -> None:
        self._consecutive = 0
        self._outcomes.clear()
        self._probes = 0

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._now
        self._opened_count += 1
        # Outcomes from before the outage must not count against the next closed period.
        self._clear_counts()

    def _rate_exceeded(self) -> bool:
        if self.failure_rate is None or len(self._outcomes) < self.window:
            return False
        return sum(self._outcomes) / self.window >= self.failure_rate

    async def allow(self) -> bool:
        state = self._refresh()
        if state is BreakerState.CLOSED:
            self._decided(DecisionKind.GRANTED)
            return True
        if state is BreakerState.HALF_OPEN and self._probes < self.half_open_max_calls:
            self._probes += 1
            self._probed_at = self._now
            self._decided(DecisionKind.PROBE)
            return True
        self._decided(DecisionKind.DENIED)
        return False

    async def record_success(self) -> None:
        state = self._refresh()
        if state is BreakerState.HALF_OPEN:
            self._state = BreakerState.CLOSED
            self._clear_counts()
            self._decided(DecisionKind.CLOSED)
            return
        if state is BreakerState.CLOSED:
            self._consecutive = 0
            self._outcomes.append(False)
        # While open: a straggler that started before the trip proves nothing; ignore it.
        self._decided(DecisionKind.RECORDED)

    async def record_failure(self) -> None:
        state = self._refresh()
        opened_before = self._opened_count
        if state is BreakerState.HALF_OPEN:
            self._open()
        elif state is BreakerState.CLOSED:
            self._consecutive += 1
            self._outcomes.append(True)
            if self._consecutive >= self.failure_threshold or self._rate_exceeded():
                self._open()
        # While open: a straggler's failure must not extend the open period; ignore it.
        tripped = self._opened_count != opened_before
        self._decided(DecisionKind.TRIPPED if tripped else DecisionKind.RECORDED)

    async def state(self) -> BreakerState:
        return self._refresh()

    async def reset(self) -> None:
        self._refresh()
        self._state = BreakerState.CLOSED
        self._clear_counts()
        self._decided(DecisionKind.CLOSED)

    async def retry_after(self) -> float:
        if self._refresh() is not BreakerState.OPEN:
            return 0.0
        return max(0, self._opened_at + self._reset_us - self._now) / 1_000_000
