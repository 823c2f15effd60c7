"""The cancel scenario's canceller: a submitting process cancels the targets another one
submitted (the next submitter's share), the deferred ones while they wait and the long ones
once they are seen running, and records each acknowledgement with the time it came."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.events import Ev
from harness.ledger import LedgerWriter, read_all, read_one
from kew_plug.queue import Queue

if TYPE_CHECKING:
    from harness.child import ChildSpec

# Task i with i % 10 == CANCEL_WAITING is deferred, one with CANCEL_RUNNING runs long.
CANCEL_WAITING, CANCEL_RUNNING = 3, 7
CANCEL_DELAY_S, CANCEL_BODY_MS = 2.0, 1500.0


async def cancel_targets(spec: ChildSpec, queues: list[Queue], ledger: LedgerWriter) -> None:
    """Cancel the targets another process submitted (the next submitter's share): the
    deferred ones while they wait, the long ones once they are seen running (or after a
    bounded wait). Each acknowledgement is recorded with the time it came back."""
    folder = Path(spec.ledger_dir)
    theirs = folder / f"p{spec.cancels_of}.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mine = [r for r in read_one(theirs)] if theirs.exists() else []
        if any(r["e"] == Ev.SUBMIT_DONE for r in mine):
            break
        await asyncio.sleep(0.02)
    targets = {
        r["id"]: int(r["id"].rsplit("-", 1)[1]) % 10
        for r in read_one(theirs)
        if r["e"] == Ev.SUBMITTED and int(r["id"].rsplit("-", 1)[1]) % 10 in (3, 7)
    }

    async def cancel(task_id: str) -> None:
        queue = queues[int(task_id.rsplit("-", 1)[1]) % len(queues)]
        acknowledged = await queue.cancel(task_id)
        what = "running" if targets[task_id] == CANCEL_RUNNING else "waiting"
        ledger.write(Ev.CANCEL, id=task_id, ok=acknowledged, w=what)

    for task_id in sorted(i for i, kind in targets.items() if kind == CANCEL_WAITING):
        await cancel(task_id)  # deferred: still waiting
    pending = {i for i, kind in targets.items() if kind == CANCEL_RUNNING}
    deadline = time.monotonic() + CANCEL_BODY_MS / 1000
    while pending and time.monotonic() < deadline:
        seen = {r["id"] for r in read_all(folder) if r["e"] == Ev.RUN} & pending
        for task_id in sorted(seen):
            await cancel(task_id)  # running now
        pending -= seen
        await asyncio.sleep(0.02)
    for task_id in sorted(pending):
        await cancel(task_id)  # never seen running: whatever state it is in
