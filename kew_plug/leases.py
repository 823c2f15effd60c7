"""The lease book: which claims this worker holds, until when, and the loop that renews
them; plus the recovery loop that hands back expired leases of workers that died."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from kew_plug.backoff import Backoff
from kew_plug.hooks import Hook, TaskEvent, run_hooks
from kew_plug.interfaces import Store
from kew_plug.models import Claim
from kew_plug.stats import WorkerStats

log = logging.getLogger("kew_plug.worker")
LEASE_MARGIN_S = 0.05  # do not start a task this close to the end of its lease


class LeaseBook:
    """Claims held (claimed and not yet settled or released) and, for those whose task has
    not finished, the local monotonic time their lease runs out."""

    def __init__(
        self,
        store: Store,
        queue: str,
        lease_ms: int,
        stats: WorkerStats,
        on_lost: Callable[[Claim], None] = lambda claim: None,
        on_release: list[Hook] | None = None,
    ) -> None:
        """`on_lost` hears of each claim whose lease was lost while its task ran (it expired
        and was recovered, or the task was cancelled): its result would be refused.
        `on_release` hooks hear of each claim handed back unfinished."""
        self.store, self.queue, self.lease_ms, self.stats = store, queue, lease_ms, stats
        self.on_lost, self.on_release = on_lost, on_release or []
        self._held: dict[str, Claim] = {}
        self._deadline: dict[str, float] = {}
        self._stopped = False

    def __bool__(self) -> bool:
        return bool(self._held)

    def add(self, claim: Claim, claimed_at: float) -> None:
        """`claimed_at` is taken before the claim call: the store's deadline is later."""
        self._held[claim.id] = claim
        self._deadline[claim.id] = claimed_at + self.lease_ms / 1000

    def startable(self, task_id: str) -> bool:
        """False when the lease is (about to be) over before the task began: another worker
        may already have it, so starting it would run it twice."""
        return time.monotonic() < self._deadline.get(task_id, 0.0) - LEASE_MARGIN_S

    def finished(self, claim: Claim) -> None:
        """The claim's task body is over; the claim stays held until settled or released."""
        if self._held.get(claim.id) is claim:
            self._deadline.pop(claim.id, None)

    def drop(self, task_id: str, token: int | None = None) -> Claim | None:
        """Forget a claim (settled, released or lost). With `token`, only that claim: the
        task may have been claimed again (a retry) before an old claim's reply arrived."""
        held = self._held.get(task_id)
        if held is None or (token is not None and held.token != token):
            return None
        self._deadline.pop(task_id, None)
        return self._held.pop(task_id)

    def held_except(self, ids: set[str]) -> list[Claim]:
        return [c for c in self._held.values() if c.id not in ids]

    async def renew_loop(self, settling: Callable[[], set[str]]) -> None:
        """Renew every held lease each third of the lease. `settling` names the claims whose
        outcome is on its way to the store: the store may report them lost because the
        settlement got there first, and the outbox reports its own verdict for them."""
        renew_every = self.lease_ms / 3000
        backoff = Backoff("renew")
        pause = renew_every
        while not self._stopped:
            await asyncio.sleep(pause)
            pause = renew_every
            if not self._held:
                continue
            claims = list(self._held.values())
            sent = time.monotonic()
            try:
                held = await self.store.renew(self.queue, claims, self.lease_ms)
            except Exception as e:  # a store failure must never kill the worker loop
                self.stats.store_errors += 1
                # Try again sooner than usual (the lease is running out), never in a spin.
                pause = min(backoff.failed(e), renew_every / 2)
                continue
            backoff.ok()
            in_settlement = settling()
            for claim, ok in zip(claims, held, strict=True):
                # Meanwhile the claim may have been settled, and the task (a retry) claimed
                # again under a new token: the verdict is about the old claim only.
                if self._held.get(claim.id) is not claim:
                    continue
                if ok and claim.id in self._deadline:
                    self._deadline[claim.id] = sent + self.lease_ms / 1000
                if ok or claim.id in in_settlement:
                    continue
                del self._held[claim.id]
                self.stats.stale += 1
                running = claim.id in self._deadline
                self._deadline.pop(claim.id, None)
                log.warning("lease of task %s was lost (cancelled or expired)", claim.id)
                if running:
                    self.on_lost(claim)

    async def release(self, claims: Iterable[Claim]) -> None:
        """Hand claims back unfinished (attempt not counted), so another worker takes them."""
        claims = list(claims)
        for c in claims:
            self.drop(c.id, c.token)
        if not claims:
            return
        # Heard before the store call: the claims are given up either way (if the call fails,
        # their leases expire and recovery hands them back).
        for c in claims:
            if self.on_release:
                event = TaskEvent(c.id, c.attempt, c.max_attempts, token=c.token)
                await run_hooks("release", self.on_release, event)
        try:
            released = await self.store.release(self.queue, claims)
        except Exception as e:  # a store failure must never kill the worker loop
            log.warning(
                "could not release %d claims (%s); their leases will expire", len(claims), e
            )
            return
        self.stats.released += sum(released)

    def stop(self) -> None:
        """Also a flag: a client library that swallows a cancellation must not keep the loop
        alive forever."""
        self._stopped = True


async def recover_loop(
    store: Store, queue: str, interval: float, stats: WorkerStats, stopped: Callable[[], bool]
) -> None:
    """Every `interval`, hand back tasks whose lease expired (their worker died or stalled),
    with one log line per batch that found any."""
    backoff = Backoff("recover")
    while not stopped():
        await asyncio.sleep(interval)
        try:
            report = await store.recover(queue)
        except Exception as e:  # a store failure must never kill the worker loop
            stats.store_errors += 1
            await asyncio.sleep(backoff.failed(e))
            continue
        backoff.ok()
        if report.requeued or report.dead:
            stats.recovered += len(report.requeued)
            stats.recovered_dead += len(report.dead)
            log.warning(
                "recovered %d tasks of queue %r whose lease expired (worker died or stalled): "
                "%d requeued, %d dead (attempts used up)",
                len(report.requeued) + len(report.dead),
                queue,
                len(report.requeued),
                len(report.dead),
            )
