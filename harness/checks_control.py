"""Checks of the control scenarios: `cancel` (nothing completes once its cancel was
acknowledged) and `cron` (every tick once, none early)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import TYPE_CHECKING

from harness.events import Ev, Record
from harness.tasks import TICK_EVERY_S, TICK_NAME

if TYPE_CHECKING:
    from harness.checks import Finding, View


def cancel_check(v: View) -> Finding:
    """No task completes once its cancel was acknowledged: the store holds no result for it
    (read back after the run), and no run of it started after the acknowledgement. Cancels
    that came too late (the task had finished) must leave the task completed as usual."""
    from harness.checks import Finding

    acked = v.cancelled
    completed_after = sorted(i for i in acked if i in v.store.results)
    started_after = sorted(
        i for i, t in acked.items() if any(r.get("c", r["t"]) > t for r in v.runs.get(i, []))
    )
    refused = [r["id"] for r in v.by_event[Ev.CANCEL] if not r.get("ok")]
    running = sum(1 for r in v.by_event[Ev.CANCEL] if r.get("ok") and r.get("w") == "running")
    f = Finding(
        {
            "cancel_acknowledged": len(acked),
            "cancel_acknowledged_running": running,
            "cancel_too_late": len(refused),
            "completed_after_cancel": len(completed_after),
            "claimed_after_cancel": len(started_after),
        }
    )
    if completed_after:
        f.failures.append(
            f"cancel: {len(completed_after)} tasks completed after their cancel was "
            f"acknowledged (e.g. {completed_after[0]})"
        )
    if started_after:
        f.failures.append(
            f"cancel: {len(started_after)} tasks were claimed after their cancel was "
            f"acknowledged (e.g. {started_after[0]})"
        )
    if not acked:
        f.failures.append("cancel: no cancel was acknowledged, so nothing was tested")
    return f


def cron_check(v: View, every: float = TICK_EVERY_S) -> Finding:
    """Every tick between the first and the last one run ran exactly once (whatever task
    ids the store gave them: the tick is read from the id), none started before its time,
    and each is a tick of the schedule. Lateness is reported."""
    from harness.checks import Finding

    by_tick: dict[int, list[Record]] = defaultdict(list)
    strays = []
    for task_id, lst in v.runs.items():
        name, at, rest = task_id.partition("@")
        ms = rest.split("~")[0]
        if not at or name != TICK_NAME or not ms.isdigit() or int(ms) % round(every * 1000):
            strays.append(task_id)
            continue
        by_tick[int(ms)] += lst
    f = Finding()
    if not by_tick:
        f.failures.append("cron: no tick ran")
        return f
    step = round(every * 1000)
    expected = range(min(by_tick), max(by_tick) + 1, step)
    missed = [t for t in expected if t not in by_tick]
    # A tick's runs: its first run of each task, retries and redeliveries of one task
    # being the rerun check's business; two tasks for one tick is a tick run twice.
    twice = [t for t, runs in by_tick.items() if len({r["id"] for r in runs}) > 1]
    early = [t for t, runs in by_tick.items() if min(r["t"] for r in runs) < t / 1000]
    late = sorted(min(r["t"] for r in runs) - t / 1000 for t, runs in by_tick.items())
    f.counts = {
        "ticks": len(by_tick),
        "ticks_missed": len(missed),
        "ticks_twice": len(twice),
        "ticks_early": len(early),
        "ticks_stray": len(strays),
    }
    f.details = {
        "tick_late_p50_ms": round(statistics.median(late) * 1000, 1),
        "tick_late_max_ms": round(max(late) * 1000, 1),
    }
    for count, what in (
        (missed, "ticks never ran"),
        (twice, "ticks ran as more than one task"),
        (early, "ticks started before their time"),
        (strays, "runs were not ticks of the schedule"),
    ):
        if count:
            f.failures.append(f"cron: {len(count)} {what} (e.g. {count[0]})")
    return f
