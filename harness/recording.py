"""A breaker wrapper that writes every decision of the breaker under test to the ledger, with
the time the breaker itself gives it (its `last_decision`), so the checker can line up
grants and trips on the breaker's own clock instead of on the processes' wall clocks.

A grant is also handed to the task that asked for it, through a context variable: the worker
calls `allow()` inside the asyncio task that then runs the body (sync bodies run in a copy of
its context), so the body's `call` record names the decision that let it start."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from harness.ledger import LedgerWriter
from kew_plug.interfaces import Breaker, BreakerDecision, BreakerState, DecisionKind

#: Ledger fields of the decision that granted the current task's downstream call.
GRANT: ContextVar[dict[str, Any] | None] = ContextVar("kew_harness_grant", default=None)
#: Created in the ledger folder by the first trip of any breaker of the run: the simulated
#: downstream stays down until a breaker has opened (see harness.tasks).
TRIPPED_MARKER = "tripped"


class RecordingBreaker(Breaker):
    """`circuit` names the breaker (its queue); `bcfg` records what it promised."""

    def __init__(self, inner: Breaker, ledger: LedgerWriter, circuit: str) -> None:
        self.inner, self.ledger, self.circuit = inner, ledger, circuit
        self.failure_threshold = inner.failure_threshold
        self.reset_timeout = inner.reset_timeout
        self.half_open_max_calls = inner.half_open_max_calls
        self.shared = inner.shared
        ledger.write(
            "bcfg",
            c=circuit,
            sh=inner.shared,
            reset_us=round(inner.reset_timeout * 1_000_000),
            max_calls=inner.half_open_max_calls,
            threshold=inner.failure_threshold,
            kind=type(inner).__name__,
        )

    def _fields(self, decision: BreakerDecision) -> dict[str, Any]:
        return {
            "c": self.circuit,
            "sh": self.shared,
            "bk": str(decision.kind),
            "bt": decision.at_us,
            "bn": decision.opened,
        }

    def _record(self, before: BreakerDecision | None) -> dict[str, Any] | None:
        # Read right after the inner await returned: no other task ran in between.
        decision = self.last_decision = self.inner.last_decision
        if decision is None or decision is before:
            return None  # this breaker does not report its decisions
        if decision.kind is DecisionKind.RECORDED:
            return None  # no transition: nothing for the timeline
        fields = self._fields(decision)
        self.ledger.write("bdec", **fields)
        if decision.kind is DecisionKind.TRIPPED:
            (self.ledger.path.parent / TRIPPED_MARKER).touch()
        return fields

    async def allow(self) -> bool:
        before = self.inner.last_decision
        granted = await self.inner.allow()
        fields = self._record(before)
        GRANT.set(fields if granted else None)
        return granted

    async def record_success(self) -> None:
        before = self.inner.last_decision
        await self.inner.record_success()
        self._record(before)

    async def record_failure(self) -> None:
        before = self.inner.last_decision
        await self.inner.record_failure()
        self._record(before)

    async def state(self) -> BreakerState:
        return await self.inner.state()

    async def reset(self) -> None:
        before = self.inner.last_decision
        await self.inner.reset()
        self._record(before)

    async def retry_after(self) -> float:
        return await self.inner.retry_after()

    async def opened_count(self) -> int:
        return await self.inner.opened_count()

    async def aclose(self) -> None:
        await self.inner.aclose()
