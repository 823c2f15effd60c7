"""The lease book: which claims this worker holds, until when, and the loop that renews
them; plus the recovery loop that hands back expired leases of workers that died."""

from __future__ import annotations

import asyncio
import logging
import math
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
        on_lapse: Callable[[Claim, float], None] = lambda claim, late: None,
    ) -> None:
        """`on_lost` hears of each claim whose lease was lost while its task ran (it expired
        and was recovered, or the task was cancelled): its result would be refused.
        `on_release` hooks hear of each claim handed back unfinished. `on_lapse` hears of
        each claim whose lease ran out by our own clock before a renewal or its settlement
        was confirmed (with how late, s): this process stalled, or the store answered too
        slowly, and the task may run again elsewhere through no fault of the store."""
        self.store, self.queue, self.lease_ms, self.stats = store, queue, lease_ms, stats
        self.on_lost, self.on_release, self.on_lapse = on_lost, on_release or [], on_lapse
        self._held: dict[str, Claim] = {}
        # Per held claim, when its lease runs out by our clock: from the moment the claim
        # or the last confirmed renewal was sent (the store's own deadline is later).
        self._lease_end: dict[str, float] = {}
        self._running: set[str] = set()  # held claims whose task body has not finished
        self._lapses: set[tuple[str, int]] = set()  # claims whose lapse was heard already
        self._stopped = False

    def __bool__(self) -> bool:
        return bool(self._held)

    def add(self, claim: Claim, claimed_at: float) -> None:
        """`claimed_at` is taken before the claim call: the store's deadline is later."""
        old = self._held.get(claim.id)
        if old is not None and old.token != claim.token:
            # Handed to us anew while our earlier claim of it was unsettled (its outcome
            # stuck behind a stall): that claim is over, and it may have lapsed.
            self._forget(old, time.monotonic())
        self._held[claim.id] = claim
        self._lease_end[claim.id] = claimed_at + self.lease_ms / 1000
        self._running.add(claim.id)

    def startable(self, task_id: str) -> bool:
        """False when the lease is (about to be) over before the task began: another worker
        may already have it, so starting it would run it twice."""
        end = self._lease_end.get(task_id, 0.0) if task_id in self._running else 0.0
        return time.monotonic() < end - LEASE_MARGIN_S

    def finished(self, claim: Claim) -> None:
        """The claim's task body is over; the claim stays held until settled or released."""
        if self._held.get(claim.id) is claim:
            self._running.discard(claim.id)

    def drop(self, task_id: str, token: int | None = None) -> Claim | None:
        """Forget a claim (settled, released or lost). With `token`, only that claim: the
        task may have been claimed again (a retry) before an old claim's reply arrived."""
        held = self._held.get(task_id)
        if held is None or (token is not None and held.token != token):
            return None
        self._forget(held, time.monotonic())
        return held

    def _forget(self, claim: Claim, confirmed: float) -> None:
        """Stop holding `claim` (the one held for its task), whose end was confirmed at
        `confirmed`: judged then for a lapse."""
        self._lapsed(claim, confirmed)
        del self._held[claim.id]
        self._lease_end.pop(claim.id, None)
        self._running.discard(claim.id)
        self._lapses.discard((claim.id, claim.token))

    def _lapsed(self, claim: Claim, confirmed: float) -> None:
        """Heard once per claim, though a late renewal may be followed by a late settle."""
        lease_end = self._lease_end.get(claim.id, math.inf)
        if confirmed > lease_end and (claim.id, claim.token) not in self._lapses:
            self._lapses.add((claim.id, claim.token))
            self.stats.lapsed += 1
            self.on_lapse(claim, confirmed - lease_end)

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
            confirmed = time.monotonic()
            in_settlement = settling()
            for claim, ok in zip(claims, held, strict=True):
                # Meanwhile the claim may have been settled, and the task (a retry) claimed
                # again under a new token: the verdict is about the old claim only.
                if self._held.get(claim.id) is not claim:
                    continue
                self._lapsed(claim, confirmed)
                if ok:
                    self._lease_end[claim.id] = sent + self.lease_ms / 1000
                if ok or claim.id in in_settlement:
                    continue
                running = claim.id in self._running
                self._forget(claim, confirmed)
                self.stats.stale += 1
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
        for c in claims if self.on_release else []:
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
