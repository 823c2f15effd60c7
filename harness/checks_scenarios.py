"""Checks that only the retry and deferred scenarios need."""

from __future__ import annotations

import statistics
from itertools import pairwise
from typing import TYPE_CHECKING

from harness.events import Ev, Record
from harness.policy import RETRY_POLICY

if TYPE_CHECKING:
    from harness.checks import Finding

DEFER_TOLERANCE_S = 0.02
BACKOFF_TOLERANCE_S = 0.01


def retry_check(
    submitted: dict[str, Record],
    runs: dict[str, list[Record]],
    ok: dict[str, list[Record]],
    failed_tokens: set[tuple[str, int]],
    disrupted: bool = False,
    lapsed: frozenset[str] = frozenset(),
) -> Finding:
    """Each planned-failure task ends after exactly its planned attempts (at least those,
    when `disrupted`, or for a task in `lapsed`: a kill, or a lease its worker could not
    hold, costs an attempt too), and no retry starts before the backoff floor (ceiling
    minus full jitter)."""
    from harness.checks import Finding

    wrong_attempts = backoff_short = 0
    for task_id, sub in submitted.items():
        if not sub["f"] or task_id not in ok:
            continue
        final = ok[task_id][-1]["a"]
        extra_allowed = disrupted or task_id in lapsed
        wrong_attempts += final < sub["f"] + 1 or (final != sub["f"] + 1 and not extra_allowed)
        for prev, nxt in pairwise(runs[task_id]):
            if (task_id, prev["k"]) in failed_tokens:
                ceiling = min(
                    RETRY_POLICY.max_delay,
                    RETRY_POLICY.base * RETRY_POLICY.factor ** (prev["a"] - 1),
                )
                floor = ceiling * (1 - RETRY_POLICY.jitter) - BACKOFF_TOLERANCE_S
                backoff_short += nxt["t"] - prev["t"] < floor
    f = Finding(
        details={"retry_wrong_attempts": wrong_attempts, "retry_backoff_violations": backoff_short}
    )
    if wrong_attempts:
        f.failures.append(f"retry: {wrong_attempts} tasks finished after the wrong attempt count")
    if backoff_short:
        f.failures.append(f"retry: {backoff_short} retries started before their backoff ended")
    return f


def deferred_check(
    records: list[Record], submitted: dict[str, Record], runs: dict[str, list[Record]]
) -> Finding:
    """No deferred task starts before its due time; lateness is reported, not judged."""
    from harness.checks import Finding

    intent_t = {r["id"]: r["t"] for r in records if r["e"] == Ev.INTENT}
    early, late = 0, []
    for task_id, sub in submitted.items():
        if not sub["d"] or task_id not in runs:
            continue
        due = intent_t[task_id] + sub["d"]
        start = min(r["t"] for r in runs[task_id])
        early += start < due - DEFER_TOLERANCE_S
        late.append(max(0.0, start - due))
    late.sort()
    f = Finding(
        details={
            "deferred_early": early,
            "deferred_late_p50_ms": round(statistics.median(late) * 1000, 1) if late else 0.0,
            "deferred_late_max_ms": round(late[-1] * 1000, 1) if late else 0.0,
        }
    )
    if early:
        f.failures.append(f"deferred: {early} tasks started before their due time")
    return f
