"""Deliberately broken breakers, each wrong in one way the harness must catch. Run one with
`python -m harness --store redis --scenario breaker --breaker tests.broken_breakers:factory`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kew_plug.interfaces import Breaker, BreakerState, DecisionKind, Store


class GrantsWhileOpen(Breaker):
    """A shared breaker that ignores its open state: it says closed and grants every call,
    while reporting the real decision times of the shared (Redis) breaker inside it, so only
    the timeline of trips and grants shows what it did. It calls its grants `granted`."""

    def __init__(self, inner: Breaker) -> None:
        self.inner = inner
        self.failure_threshold = inner.failure_threshold
        self.reset_timeout = inner.reset_timeout
        self.half_open_max_calls = inner.half_open_max_calls
        self.shared = inner.shared

    async def allow(self) -> bool:
        await self.inner.allow()
        decision = self.inner.last_decision
        if decision is not None:  # honest time, dishonest verdict
            self.last_decision = dataclasses.replace(decision, kind=DecisionKind.GRANTED)
        return True

    async def record_success(self) -> None:
        await self.inner.record_success()
        self.last_decision = self.inner.last_decision

    async def record_failure(self) -> None:
        await self.inner.record_failure()
        self.last_decision = self.inner.last_decision

    async def state(self) -> BreakerState:
        return BreakerState.CLOSED  # so workers keep claiming while it is open

    async def reset(self) -> None:
        await self.inner.reset()
        self.last_decision = self.inner.last_decision


def factory(store: Store, queue: str, **options: Any) -> Breaker:
    """`--breaker tests.broken_breakers:factory`: wraps the store's shared breaker."""
    inner = store.shared_breaker(queue, **options)
    if inner is None:
        raise SystemExit("tests.broken_breakers:factory needs a Redis store")
    return GrantsWhileOpen(inner)
