"""RedisBreaker: a circuit breaker whose state every process shares, one Lua script call per
method. The threshold counts failures from all processes together, the open period runs on
the server's clock, and each half-open episode grants `half_open_max_calls` probes in total,
not per process. Semantics mirror `backends.breakers.LocalBreaker` (without the optional
failure-rate window)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from redis.commands.core import AsyncScript

from kew_plug.backends.redis.errors import describe_target, translated
from kew_plug.backends.redis.scripts import source
from kew_plug.errors import InvalidArgument
from kew_plug.interfaces import Breaker, BreakerDecision, BreakerState, DecisionKind

__all__ = ["RedisBreaker"]

DAY = 86400.0


def _check_int(name: str, value: object, minimum: int) -> int:
    # bool is an int subclass; True as a threshold is almost certainly a mistake.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgument(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_seconds(name: str, value: object) -> float:
    # Written as `not (x > 0)` so NaN is refused too; infinity cannot become milliseconds.
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not value > 0
        or math.isinf(value)
    ):
        raise InvalidArgument(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class _Reply(NamedTuple):
    state: BreakerState
    flag: bool  # granted, tripped or closed, depending on the op
    retry_ms: int
    opened: int
    now_us: int  # when the script ran, server clock


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBreaker(Breaker):
    """A breaker whose state is one Redis hash at `key`, shared by every process using it.

    `ttl` (seconds; default the larger of one day and 10 x `reset_timeout`) bounds the hash's
    life: every write refreshes it, so an idle breaker's key disappears, which reads as
    closed with zero counts. `opened_count()` counts transitions to open over that life;
    `reset()` keeps it. The client belongs to the caller (usually the store): `aclose()`
    leaves it open. Every decision is taken, and reported in `last_decision`, on the
    server's clock in microseconds, so decisions from all processes line up on one clock.
    """

    shared = True

    def __init__(
        self,
        client: Any,
        key: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        ttl: float | None = None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"key must be a non-empty str, got {key!r}")
        self.failure_threshold = _check_int("failure_threshold", failure_threshold, 1)
        self.half_open_max_calls = _check_int("half_open_max_calls", half_open_max_calls, 1)
        self.reset_timeout = _check_seconds("reset_timeout", reset_timeout)
        if ttl is None:
            ttl = max(DAY, 10 * self.reset_timeout)
        self.ttl = _check_seconds("ttl", ttl)
        if self.ttl < self.reset_timeout:
            # The hash would expire mid-outage and the breaker would close early.
            raise InvalidArgument(
                f"ttl must be at least reset_timeout ({self.reset_timeout}), got {ttl!r}"
            )
        self.client = client
        self.key = key
        self.target = describe_target(client)
        # At least 1 us: a zero timeout would skip the open state altogether.
        reset_us = max(1, round(self.reset_timeout * 1_000_000))
        ttl_ms = max(1, round(self.ttl * 1000))
        self._args = (self.failure_threshold, reset_us, self.half_open_max_calls, ttl_ms)
        self._script: AsyncScript = client.register_script(source("breaker"))

    async def _call(self, op: str) -> _Reply:
        """One round trip: the script's verdict, on the server's clock."""
        with translated(self.target):
            reply = await self._script(keys=[self.key], args=[op, *self._args])
        state, flag, retry_ms, opened, now_us = reply
        return _Reply(
            BreakerState(_text(state)), int(flag) == 1, int(retry_ms), int(opened), int(now_us)
        )

    def _decided(self, kind: DecisionKind, reply: _Reply) -> None:
        self.last_decision = BreakerDecision(kind, reply.now_us, reply.opened)

    async def allow(self) -> bool:
        reply = await self._call("allow")
        if not reply.flag:
            kind = DecisionKind.DENIED
        elif reply.state is BreakerState.HALF_OPEN:
            kind = DecisionKind.PROBE
        else:
            kind = DecisionKind.GRANTED
        self._decided(kind, reply)
        return reply.flag

    async def record_success(self) -> None:
        reply = await self._call("success")
        self._decided(DecisionKind.CLOSED if reply.flag else DecisionKind.RECORDED, reply)

    async def record_failure(self) -> None:
        reply = await self._call("failure")
        self._decided(DecisionKind.TRIPPED if reply.flag else DecisionKind.RECORDED, reply)

    async def state(self) -> BreakerState:
        return (await self._call("state")).state

    async def reset(self) -> None:
        self._decided(DecisionKind.CLOSED, await self._call("reset"))

    async def retry_after(self) -> float:
        return (await self._call("state")).retry_ms / 1000

    async def opened_count(self) -> int:
        """How many times the breaker has gone to open (reopens from half-open included)
        since its key was created; `reset()` does not clear it."""
        return (await self._call("state")).opened

    async def aclose(self) -> None:
        """Nothing to release: the client is shared and owned by whoever passed it in."""

    def __repr__(self) -> str:
        return (
            f"RedisBreaker(key={self.key!r}, target={self.target!r}, "
            f"failure_threshold={self.failure_threshold}, reset_timeout={self.reset_timeout}, "
            f"half_open_max_calls={self.half_open_max_calls})"
        )
