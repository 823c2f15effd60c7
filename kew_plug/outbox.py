"""The outbox: outcomes of finished tasks, settled in batches. One settle call is in flight
at a time; outcomes that arrive meanwhile form the next batch, so batches grow with load
and an idle worker settles at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kew_plug.backoff import Backoff
from kew_plug.hooks import Hook, TaskEvent, run_hooks
from kew_plug.interfaces import Store
from kew_plug.leases import LeaseBook
from kew_plug.models import Outcome, OutcomeKind
from kew_plug.stats import WorkerStats

log = logging.getLogger("kew_plug.worker")

# While stopping, a failed settlement is retried this often (s) until the grace runs out.
CLOSING_RETRY_S = 0.1


class Outbox:
    def __init__(
        self,
        store: Store,
        queue: str,
        book: LeaseBook,
        stats: WorkerStats,
        on_stale: list[Hook],
        after_batch: Callable[[bool], None],
    ) -> None:
        """`after_batch(retried)` runs after each settled batch; `retried` says whether it
        scheduled a retry (which may be due before the claim loop's wait ends)."""
        self.store, self.queue, self.book, self.stats = store, queue, book, stats
        self.on_stale, self.after_batch = on_stale, after_batch
        self._pending: list[Outcome] = []
        self._in_flight: set[str] = set()
        self._event = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._stopped = False

    def __bool__(self) -> bool:
        return bool(self._pending)

    def put(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._event.set()

    def unconfirmed(self) -> set[str]:
        """Ids whose outcome the store has not confirmed yet (waiting or in flight)."""
        return self._in_flight | {o.id for o in self._pending}

    async def run(self) -> None:
        """Settle until closed and empty (or stopped)."""
        backoff = Backoff("settle")
        while not self._stopped:
            if not self._pending:
                if self._closing:
                    return
                await self._event.wait()
                self._event.clear()
                continue
            batch, self._pending = self._pending, []
            self._in_flight = {o.id for o in batch}
            try:
                applied = await self.store.settle(self.queue, batch)
            except Exception as e:  # a store failure must never kill the worker loop
                self.stats.store_errors += 1
                self._pending[:0] = batch
                delay = backoff.failed(e)
                if self._closing:
                    # Stopping: what is left must be confirmed within the shutdown grace, and
                    # the store may be back any moment; a result we fail to confirm makes the
                    # task run again once its lease runs out.
                    delay = min(delay, CLOSING_RETRY_S)
                # close() cuts the pause short: retry at once rather than sleep out the grace.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), delay)
                continue
            finally:
                self._in_flight = set()
            backoff.ok()
            for outcome, ok in zip(batch, applied, strict=True):
                self.book.drop(outcome.id, outcome.token)
                if not ok:
                    self.stats.stale += 1
                    log.warning("settlement of task %s refused: its lease was lost", outcome.id)
                    event = TaskEvent(outcome.id, 0, 0, token=outcome.token)
                    await run_hooks("stale", self.on_stale, event)
            self.after_batch(any(o.kind is OutcomeKind.RETRY for o in batch))

    def close(self) -> None:
        """Settle what is left, then return."""
        self._closing = True
        self._event.set()
        self._closed.set()

    def stop(self) -> None:
        self._stopped = True
