"""A breaker wrapper that writes each trip and each half-open probe to the ledger, so the
checker can see every process's view of the circuit on one timeline."""

from __future__ import annotations

from harness.ledger import LedgerWriter
from kew_plug.interfaces import Breaker, BreakerState


class RecordingBreaker(Breaker):
    def __init__(self, inner: Breaker, ledger: LedgerWriter) -> None:
        self.inner, self.ledger = inner, ledger
        self.failure_threshold = inner.failure_threshold
        self.reset_timeout = inner.reset_timeout
        self.half_open_max_calls = inner.half_open_max_calls

    async def allow(self) -> bool:
        granted = await self.inner.allow()
        if granted and self.inner.probe:
            self.ledger.write("probe")
        return granted

    async def record_success(self) -> None:
        await self.inner.record_success()

    async def record_failure(self) -> None:
        await self.inner.record_failure()
        if self.inner.tripped:
            self.ledger.write("bopen")

    async def state(self) -> BreakerState:
        return await self.inner.state()

    async def reset(self) -> None:
        await self.inner.reset()

    async def retry_after(self) -> float:
        return await self.inner.retry_after()

    async def aclose(self) -> None:
        await self.inner.aclose()
