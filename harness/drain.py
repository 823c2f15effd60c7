"""Following the run: read the ledgers as they grow, drive the fault injector, and decide
when the run has drained. Drained is decided from the ledger (every accepted task completed
or dead), never from the store's own counts alone: a store that hides running tasks must
not end the run early."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.events import Ev, Record
from harness.faults import Injector
from harness.ledger import LedgerTail
from kew_plug.errors import StoreUnavailable
from kew_plug.interfaces import Store

#: With every submission in, the ledgers silent this long and the store reporting nothing
#: pending (or only dead tasks left), nothing more will come: the rest is lost.
QUIET_S = 1.5


@dataclass
class Progress:
    submitted: int = 0
    completed: int = 0
    dead: int = 0
    executed: int = 0


class Settlements:
    """Which tasks the ledger shows finished: dead, or completed by their latest run with
    no refusal of that run's settlement (a body writes `ok` before its worker settles, and
    a stale settlement means the task will run again)."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[float, int]] = {}  # id -> (claim time, token) of last run
        self.ok: set[tuple[str, int]] = set()
        self.stale: set[tuple[str, int]] = set()
        self.dead: set[str] = set()
        self.cancelled: set[str] = set()  # cancels another process saw acknowledged

    def add(self, r: Record) -> None:
        e = r["e"]
        if e == Ev.RUN:
            seen = (r.get("c", r["t"]), r["k"])
            if r["id"] not in self.latest or seen > self.latest[r["id"]]:
                self.latest[r["id"]] = seen
        elif e == Ev.OK:
            self.ok.add((r["id"], r["k"]))
        elif e == Ev.STALE:
            self.stale.add((r["id"], r["k"]))
        elif e == Ev.DEAD:
            self.dead.add(r["id"])
        elif e == Ev.CANCEL and r.get("ok"):
            self.cancelled.add(r["id"])

    def finished(self) -> set[str]:
        # The difference once, not per task: in the comprehension it was rebuilt for every
        # id, which made each tick of a 20,000-task run take seconds.
        settled = self.ok - self.stale
        done = {i for i, (_, k) in self.latest.items() if (i, k) in settled}
        return done | self.dead | self.cancelled


@dataclass
class Watch:
    progress: Progress
    drained: bool
    timed_out: bool


async def _store_says_done(store: Store, queues: list[str], open_ids: set[str]) -> bool:
    """Asked only once the ledgers went quiet: nothing pending, or everything still open
    sits in the dead-letter set (dead-lettered by the store's recover())."""
    try:
        pending = sum([(await store.stats(name)).pending for name in queues])
        if pending == 0:
            return True
        dead: set[str] = set()
        for name in queues:
            dead |= set(await store.dead_ids(name, limit=100_000))
        return open_ids <= dead
    except StoreUnavailable:
        return False  # restarting or dropped: look again on the next tick


async def _idle(store: Store, queues: list[str]) -> bool:
    """The ledger says every task finished; the store must agree that nothing is pending.
    A body writes `ok` before its worker settles: a worker killed in between leaves the
    task running in the store, to be recovered and run again after its lease expires."""
    try:
        return sum([(await store.stats(name)).pending for name in queues]) == 0
    except StoreUnavailable:
        return False  # restarting or dropped: look again on the next tick


async def watch(
    *,
    store: Store,
    queues: list[str],
    tasks: int,
    timeout: float,
    submitters: int,
    procs: list[Any],
    ledger_dir: Path,
    injector: Injector,
    on_progress: Callable[[Progress], None] | None,
    longest_body: float = 0.0,
    ticks: bool = False,
) -> Watch:
    """`longest_body` (s): a body writes nothing while it runs, so silence shorter than that
    says nothing about whether the run is still going. With `ticks` (the cron scenario)
    nobody submits: the run is over once `tasks` distinct periodic ticks have finished."""
    quiet_s = max(QUIET_S, longest_body + 0.5)
    tail, progress = LedgerTail(ledger_dir), Progress()
    accepted: set[str] = set()
    book = Settlements()
    submitters_done = 0
    deadline = time.monotonic() + timeout
    last_change = time.monotonic()
    while True:
        changed = False
        for r in tail.poll():
            changed = True
            e = r["e"]
            book.add(r)
            if e == Ev.SUBMITTED:
                accepted.add(r["id"])
            elif e == Ev.DEAD:
                progress.dead += 1
            elif e == Ev.RUN:
                progress.executed += 1
            elif e == Ev.SUBMIT_DONE:
                submitters_done += 1
        finished = book.finished()
        progress.submitted, progress.completed = len(accepted), len(finished & accepted)
        if ticks:
            progress.submitted = progress.completed = sum(1 for i in finished if "@" in i)
        if on_progress is not None:
            on_progress(progress)
        now = time.monotonic()
        if changed:
            last_change = now
        await injector.tick(progress.completed / max(1, tasks))
        all_in = submitters_done >= submitters
        if ticks and progress.completed >= tasks and not injector.busy:
            return Watch(progress, True, False)  # later ticks keep coming: not waited for
        if all_in and not injector.busy and accepted <= finished and await _idle(store, queues):
            return Watch(progress, True, False)
        quiet = all_in and now - last_change > quiet_s and not injector.paused
        if quiet and await _store_says_done(store, queues, accepted - finished):
            if not injector.busy:
                return Watch(progress, True, False)
            # Nothing more will come (tasks lost): faults whose turn never came are skipped,
            # so the run ends and reports what it lost instead of waiting for them.
            injector.abandon()
        # A process the injector killed or stopped (SIGTERM) ended on purpose; how it ended
        # is judged after the run (crashes.py).
        ended_on_purpose = injector.killed | injector.stopped
        if any(p.exitcode not in (None, 0) and p.pid not in ended_on_purpose for p in procs):
            return Watch(progress, False, False)  # reported as an abnormal exit
        if now > deadline:
            return Watch(progress, False, True)
        await asyncio.sleep(0.05)
