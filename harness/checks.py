"""The checker: classifies every execution from the ledgers alone, then adds what the store
says is left over. Pure functions, so synthetic ledgers can test it."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from harness.checks_breaker import breaker_report
from harness.policy import RETRY_POLICY

DEFER_TOLERANCE_S = 0.02
BACKOFF_TOLERANCE_S = 0.01
LEASE_TOLERANCE_S = 0.25


@dataclass
class StoreFacts:
    shared: bool = True
    payloads_left: int = 0
    keys_without_ttl: int = 0
    results: dict[str, Any] = field(default_factory=dict)  # id -> value read back


@dataclass
class Verdict:
    checks: dict[str, Any]
    per_process: dict[str, dict[str, int]]
    failures: list[str]
    details: dict[str, Any]


def _runs_by_id(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["e"] == "run":
            runs[r["id"]].append(r)
    for lst in runs.values():
        lst.sort(key=lambda r: (r["k"], r["t"]))
    return runs


def evaluate(
    records: list[dict[str, Any]],
    facts: StoreFacts,
    *,
    roles: str,
    scenario: str,
    killed_pids: frozenset[int] = frozenset(),
    lease: float = 10.0,
    breaker: str = "none",
    breaker_options: dict[str, float] | None = None,
) -> Verdict:
    """`lease` bounds what a stale settlement can explain: a repeat that started before the
    earlier run's lease could have expired is two live claims at once, not a redelivery."""
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_event[r["e"]].append(r)
    intended = {r["id"] for r in by_event["int"]}
    submitted = {r["id"]: r for r in by_event["sub"]}
    ok: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in by_event["ok"]:
        ok[r["id"]].append(r)
    dead = {r["id"]: r for r in by_event["dead"]}
    failed_tokens = {(r["id"], r["k"]) for r in by_event["err"]}
    failed_tokens |= {(r["id"], r["k"]) for r in by_event["call"] if not r["ok"]}
    stale_tokens = {(r["id"], r["k"]) for r in by_event["stale"]}
    runs = _runs_by_id(records)

    retried = redelivered = duplicated = 0
    duplicated_ids: list[str] = []
    for task_id, lst in runs.items():
        for prev, nxt in pairwise(lst):
            key = (task_id, prev["k"])
            # The earlier lease began at its claim (or its run, in older ledgers).
            lease_over = nxt["t"] >= prev.get("c", prev["t"]) + lease - LEASE_TOLERANCE_S
            if key in failed_tokens:
                retried += 1
            elif prev["p"] in killed_pids or (key in stale_tokens and lease_over):
                redelivered += 1
            else:
                duplicated += 1
                duplicated_ids.append(task_id)
    unexpected = sorted(i for i in runs if i not in intended)
    lost = sorted(i for i in submitted if i not in ok and i not in dead)
    dead_ids = sorted(i for i in submitted if i in dead and i not in ok)

    wrong = 0
    for task_id, oks in ok.items():
        want = submitted.get(task_id, {}).get("x")
        wrong += sum(1 for r in oks if want is not None and r["v"] != want)
    if facts.shared:
        for task_id, value in facts.results.items():
            if task_id in submitted and value != submitted[task_id]["x"]:
                wrong += 1

    completed = [oks[-1] for task_id, oks in ok.items() if task_id in submitted]
    cross = sum(1 for r in completed if r["p"] != submitted[r["id"]]["p"])
    share = round(cross / len(completed), 4) if completed else 0.0

    checks: dict[str, Any] = {
        "lost": len(lost),
        "duplicated": duplicated,
        "redelivered": redelivered,
        "wrong_results": wrong,
        "cross_process": cross,
        "cross_process_share": share,
        "payloads_left": facts.payloads_left,
        "keys_without_ttl": facts.keys_without_ttl,
        "stale_settlements": len(by_event["stale"]),
        "unexpected": len(unexpected),
        "dead": len(dead_ids),
        "retried": retried,
    }
    failures: list[str] = []
    if lost:
        failures.append(f"lost: {len(lost)} tasks accepted by the store were never completed")
    if duplicated:
        failures.append(
            f"duplicated: {duplicated} executions repeated a task with no fault to explain it "
            f"(e.g. {duplicated_ids[0]})"
        )
    if unexpected:
        failures.append(f"unexpected: {len(unexpected)} tasks ran that no submitter sent")
    if wrong:
        failures.append(f"wrong_results: {wrong} results differ from the value computed")
    if dead_ids:
        failures.append(f"dead: {len(dead_ids)} tasks ended dead (e.g. {dead[dead_ids[0]]['err']})")
    if facts.payloads_left:
        failures.append(f"payloads_left: {facts.payloads_left} payloads still in the store")
    if facts.keys_without_ttl:
        failures.append(f"keys_without_ttl: {facts.keys_without_ttl} keys would never expire")
    if roles == "split" and not cross and submitted:
        failures.append("cross_process: 0 pickups crossed a process boundary under --roles split")

    details = _scenario_details(scenario, records, submitted, runs, ok, failed_tokens, failures)
    if scenario == "breaker":
        details["breaker_report"] = breaker_report(
            by_event, breaker, breaker_options or {}, failures
        )
    per_process: dict[str, dict[str, int]] = defaultdict(
        lambda: {"submitted": 0, "executed": 0, "completed": 0}
    )
    for r in by_event["sub"]:
        per_process[str(r["p"])]["submitted"] += 1
    for r in by_event["run"]:
        per_process[str(r["p"])]["executed"] += 1
    for r in by_event["ok"]:
        per_process[str(r["p"])]["completed"] += 1
    return Verdict(checks, dict(per_process), failures, details)


def _scenario_details(
    scenario: str,
    records: list[dict[str, Any]],
    submitted: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
    ok: dict[str, list[dict[str, Any]]],
    failed_tokens: set[tuple[str, int]],
    failures: list[str],
) -> dict[str, Any]:
    if scenario == "retry":
        wrong_attempts = backoff_short = 0
        for task_id, sub in submitted.items():
            if not sub["f"] or task_id not in ok:
                continue
            wrong_attempts += ok[task_id][-1]["a"] != sub["f"] + 1
            lst = runs[task_id]
            for prev, nxt in pairwise(lst):
                if (task_id, prev["k"]) in failed_tokens:
                    ceiling = min(
                        RETRY_POLICY.max_delay,
                        RETRY_POLICY.base * RETRY_POLICY.factor ** (prev["a"] - 1),
                    )
                    floor = ceiling * (1 - RETRY_POLICY.jitter) - BACKOFF_TOLERANCE_S
                    backoff_short += nxt["t"] - prev["t"] < floor
        if wrong_attempts:
            failures.append(f"retry: {wrong_attempts} tasks finished after the wrong attempt count")
        if backoff_short:
            failures.append(f"retry: {backoff_short} retries started before their backoff ended")
        return {"retry_wrong_attempts": wrong_attempts, "retry_backoff_violations": backoff_short}
    if scenario == "deferred":
        intent_t = {r["id"]: r["t"] for r in records if r["e"] == "int"}
        early, late = 0, []
        for task_id, sub in submitted.items():
            if not sub["d"] or task_id not in runs:
                continue
            due = intent_t[task_id] + sub["d"]
            start = runs[task_id][0]["t"]
            early += start < due - DEFER_TOLERANCE_S
            late.append(max(0.0, start - due))
        if early:
            failures.append(f"deferred: {early} tasks started before their due time")
        late.sort()
        return {
            "deferred_early": early,
            "deferred_late_p50_ms": round(statistics.median(late) * 1000, 1) if late else 0.0,
            "deferred_late_max_ms": round(late[-1] * 1000, 1) if late else 0.0,
        }
    return {}
