"""The checker: classifies every execution from the ledgers alone, then adds what was found
left in the store. One function per check, registered in `CHECKS`; each returns its counts
and, when it fails, reasons that start with its name. Pure functions, so synthetic ledgers
can test them."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any, cast

from harness import breaker_timeline
from harness.chance import cross_process_minimum
from harness.checks_control import cancel_check, cron_check
from harness.checks_scenarios import deferred_check, retry_check
from harness.config import DISRUPTIVE
from harness.events import Ev, Record
from harness.stalls import Evidence, lapse_window

#: A restart, drop or failover explains a rerun whose first run was claimed up to this long
#: before it (a claim or settlement in flight when the connection broke).
FAULT_REACH_S = 1.0


@dataclass
class StoreFacts:
    """What was read from the store after the drain. `independent` says, per check, whether
    the harness read the raw server itself (True) or relied on the store's report (False)."""

    payloads_left: int = 0
    keys_without_ttl: int = 0
    ttl_too_long: int = 0
    examples: dict[str, str] = field(default_factory=dict)  # check -> one offending key
    results: dict[str, Any] = field(default_factory=dict)  # id -> value read back
    dead: dict[str, str] = field(default_factory=dict)  # id -> reason, from the dead set
    independent: dict[str, bool] = field(default_factory=dict)
    judged_from: str = "the raw server"  # or the store's own contents, or its payload_ids


@dataclass
class RunFacts:
    """What the runner knows about the run itself."""

    roles: str = "mixed"
    scenario: str = "basic"
    lease: float = 10.0
    concurrency: int = 16
    queues: int = 1
    procs: int = 0  # processes planned (replacements come after); 0: unknown
    faults: list[dict[str, Any]] = field(default_factory=list)  # the injector's log (wall)
    breaker: str = "none"
    breaker_options: dict[str, float] = field(default_factory=dict)


@dataclass
class Verdict:
    checks: dict[str, Any]
    per_process: dict[str, dict[str, int]]
    failures: list[str]
    details: dict[str, Any]


@dataclass
class Finding:
    counts: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class View:
    """The ledgers, indexed once for every check."""

    def __init__(self, records: list[Record], store: StoreFacts, run: RunFacts) -> None:
        self.records, self.store, self.run = records, store, run
        self.by_event: dict[str, list[Record]] = defaultdict(list)
        for r in records:
            self.by_event[r["e"]].append(r)
        self.submitted = {r["id"]: r for r in self.by_event[Ev.SUBMITTED]}
        # Completed: a body returned and its settlement was not refused as stale (a task
        # whose every completion was refused never completed in the store).
        stale = {(r["id"], r["k"]) for r in self.by_event[Ev.STALE]}
        self.ok: dict[str, list[Record]] = defaultdict(list)
        for r in self.by_event[Ev.OK]:
            if (r["id"], r["k"]) not in stale:
                self.ok[r["id"]].append(r)
        self.hook_dead = {r["id"]: r for r in self.by_event[Ev.DEAD]}
        # Cancels another process saw acknowledged, with the time the acknowledgement came.
        self.cancelled = {r["id"]: r["t"] for r in self.by_event[Ev.CANCEL] if r.get("ok")}
        failed = {(r["id"], r["k"]) for r in self.by_event[Ev.ERROR]}
        failed |= {(r["id"], r["k"]) for r in self.by_event[Ev.CALL] if not r["ok"]}
        self.failed_tokens = failed
        # Claims whose worker saw its own lease run out before it could renew or settle
        # (by the worker's clock, not the store's word), while its own loop or the server
        # was seen stalling for a third of a lease or more (harness.stalls): a store that
        # only answers late, on a machine that never stalled, explains nothing.
        evidence = Evidence(records)
        self.lapsed_tokens: set[tuple[str, int]] = set()
        self.unexplained_lapses = 0
        for r in self.by_event[Ev.LAPSED]:
            start, end = lapse_window(r, run.lease)
            if evidence.lost(r["p"], start, end) >= run.lease / 3:
                self.lapsed_tokens.add((r["id"], r["k"]))
            else:
                self.unexplained_lapses += 1
        self.lapsed_tasks = frozenset(task_id for task_id, _ in self.lapsed_tokens)
        self.runs: dict[str, list[Record]] = defaultdict(list)
        for r in self.by_event[Ev.RUN]:
            self.runs[r["id"]].append(r)
        # In the order the bodies started, on the one clock of this machine: a claim time
        # handed over through the store maps the store's clock onto the worker's, and a
        # stall while that call was out skews it by the stall's length.
        for lst in self.runs.values():
            lst.sort(key=lambda r: r["t"])

    @cached_property
    def dead(self) -> dict[str, str]:
        """Tasks that ended dead, with a reason: the worker's hook, or the store's dead set
        (a store dead-letters by itself in recover(), where no worker hook runs)."""
        out = {i: str(r.get("err", "")) for i, r in self.hook_dead.items()}
        for i, reason in self.store.dead.items():
            out.setdefault(i, reason)
        return {i: why for i, why in out.items() if i in self.submitted and i not in self.ok}

    @cached_property
    def workers(self) -> set[int]:
        """Every process that worked the store (replacements included)."""
        return {r["p"] for r in self.by_event[Ev.HELLO] if r.get("works")}


def check_lost(v: View) -> Finding:
    lost = [i for i in v.submitted if i not in v.ok and i not in v.dead and i not in v.cancelled]
    f = Finding({"lost": len(lost)})
    if lost:
        f.failures.append(f"lost: {len(lost)} tasks accepted by the store were never completed")
    return f


def _explained(v: View, prev: Record, nxt: Record) -> bool:
    """Is there an injected fault that can explain running `prev`'s task again?"""
    began, again = prev.get("c", prev["t"]), nxt["t"]
    for fault in v.run.faults:
        at = fault.get("wall", 0.0)
        if fault["kind"] in ("kill", "stop") and fault.get("pid") == prev["p"] and at <= again:
            return True
        paused = fault["kind"] == "pause" and fault.get("pid") == prev["p"]
        if paused and at <= again and _resumed(v, fault) >= began:
            return True
        server = fault["kind"] in ("restart", "drop", "failover")
        if server and began - FAULT_REACH_S <= at <= again:
            return True
    return False


def _resumed(v: View, pause: dict[str, Any]) -> float:
    """When a paused process was continued: the resume the log records (a loaded machine
    sends it late), else when the pause was planned to end."""
    at = float(pause.get("wall", 0.0))
    resumes = [
        float(f.get("wall", at))
        for f in v.run.faults
        if f["kind"] == "resume" and f.get("pid") == pause.get("pid") and f.get("wall", at) >= at
    ]
    return min(resumes, default=at + float(pause.get("seconds", 0.0)))


def check_reruns(v: View) -> Finding:
    """Every rerun needs a cause: a planned failure (retried), an injected fault near it
    (redelivered), or a lease its worker could not hold: the worker saw, by its own clock,
    its lease run out before a renewal or the settlement was confirmed (a process or the
    whole machine stalled under load). Anything else is a duplicate: a lease the worker
    renewed in time must hold, whatever the store says."""
    retried = redelivered = lapsed = 0
    duplicated: list[str] = []
    for task_id, lst in v.runs.items():
        for prev, nxt in pairwise(lst):
            if (task_id, prev["k"]) in v.failed_tokens:
                retried += 1
            elif _explained(v, prev, nxt):
                redelivered += 1
            elif {(task_id, prev["k"]), (task_id, nxt["k"])} & v.lapsed_tokens:
                # Either claim's lease lapsed: a worker that stalled before its body began
                # starts after the rerun it made possible.
                lapsed += 1
            else:
                duplicated.append(task_id)
    f = Finding(
        {
            "duplicated": len(duplicated),
            "redelivered": redelivered,
            "retried": retried,
            "rerun_after_lapse": lapsed,
            "lapses_without_stall": v.unexplained_lapses,
        }
    )
    if duplicated:
        f.failures.append(
            f"duplicated: {len(duplicated)} executions repeated a task with no fault to "
            f"explain it (e.g. {duplicated[0]})"
        )
        f.details["duplicated_evidence"] = _evidence(v, duplicated[:3])
    return f


def _evidence(v: View, task_ids: list[str]) -> dict[str, list[Record]]:
    """Every ledger record of each task, and the stalls recorded while it was about (two
    leases either side), in time order: what a reader needs to tell a store's fault from
    the harness's."""
    out: dict[str, list[Record]] = {}
    for task_id in task_ids:
        mine = [r for r in v.records if r.get("id") == task_id]
        times = [r["t"] for r in mine if "t" in r]
        lo, hi = min(times) - 2 * v.run.lease, max(times) + 2 * v.run.lease
        stalls = [
            r
            for r in v.by_event[Ev.STALL] + v.by_event[Ev.SERVER_STALL]
            if r["u"] >= lo and r["s"] <= hi
        ]
        out[task_id] = sorted(mine + stalls, key=lambda r: r.get("t", r.get("s", 0.0)))
    return out


def check_unexpected(v: View) -> Finding:
    intended = {r["id"] for r in v.by_event[Ev.INTENT]}
    # Periodic ticks are nobody's intent: the cron check judges every one of them.
    ticks = v.run.scenario == "cron"
    unexpected = [i for i in v.runs if i not in intended and not (ticks and "@" in i)]
    f = Finding({"unexpected": len(unexpected)})
    if unexpected:
        f.failures.append(f"unexpected: {len(unexpected)} tasks ran that no submitter sent")
    return f


def check_wrong_results(v: View) -> Finding:
    wrong = 0
    for task_id, oks in v.ok.items():
        want = v.submitted.get(task_id, {}).get("x")
        wrong += sum(1 for r in oks if want is not None and r["v"] != want)
    for task_id, value in v.store.results.items():
        # Only where a run completed: a result stored for a task that never ran is lost.
        if task_id in v.ok and task_id in v.submitted and value != v.submitted[task_id]["x"]:
            wrong += 1
    f = Finding({"wrong_results": wrong})
    if wrong:
        f.failures.append(f"wrong_results: {wrong} results differ from the value computed")
    return f


def check_dead(v: View) -> Finding:
    """Tasks that ended dead. One whose lease a worker could not hold (it saw the lease run
    out by its own clock, as when the machine stalls) may have used up its attempts that
    way, as the store must then decide: reported, not failed."""
    after_lapse = {i for i in v.dead if i in v.lapsed_tasks}
    dead = {i: why for i, why in v.dead.items() if i not in after_lapse}
    f = Finding(
        {"dead": len(dead), "dead_after_lapse": len(after_lapse)},
        details={"dead_tasks": dict(sorted(v.dead.items())[:20])},
    )
    if dead:
        first = sorted(dead)[0]
        f.failures.append(f"dead: {len(dead)} tasks ended dead (e.g. {first}: {dead[first]})")
    return f


def check_leftovers(v: View) -> Finding:
    s = v.store
    f = Finding(
        {
            "payloads_left": s.payloads_left,
            "keys_without_ttl": s.keys_without_ttl,
            "ttl_too_long": s.ttl_too_long,
        },
        details={"independent": dict(s.independent), "leftovers_judged_from": s.judged_from},
    )
    for name, count, what in (
        ("payloads_left", s.payloads_left, "payloads still in the store"),
        ("keys_without_ttl", s.keys_without_ttl, "keys would never expire"),
        ("ttl_too_long", s.ttl_too_long, "keys outlive the bound for their kind"),
    ):
        if count:
            example = f" (e.g. {s.examples[name]})" if name in s.examples else ""
            f.failures.append(f"{name}: {count} {what}{example}")
    return f


def check_cross_process(v: View) -> Finding:
    """Sharing is proven, never assumed: with two or more working processes, completions
    must cross process boundaries about as often as chance says (see harness.chance)."""
    completed = [oks[-1] for task_id, oks in v.ok.items() if task_id in v.submitted]
    cross = sum(1 for r in completed if r["p"] != v.submitted[r["id"]]["p"])
    submitters = {r["p"] for r in v.submitted.values()}
    # Replacements (started after a kill or stop) work only part of the run: counting them
    # would raise the chance of crossing above what the run gave, so they are left out.
    planned = {
        r["p"] for r in v.by_event[Ev.HELLO] if r.get("works") and r.get("i", 0) < v.run.procs
    }
    working = len(planned or v.workers | {r["p"] for r in completed})
    own_worker = sum(1 for r in completed if v.submitted[r["id"]]["p"] in v.workers)
    minimum = cross_process_minimum(len(completed), own_worker, working, v.run.concurrency)
    f = Finding(
        {
            "cross_process": cross,
            "cross_process_share": round(cross / len(completed), 4) if completed else 0.0,
            "cross_process_min": minimum,
            "working_processes": working,
        }
    )
    if working >= 2 and completed and cross < minimum:
        never = "tasks never crossed processes" if cross == 0 else "too few tasks crossed"
        f.failures.append(
            f"cross_process: {never}: {cross} of {len(completed)} completions ran outside "
            f"their submitting process, below the {minimum} that chance allows with "
            f"{working} working processes ({len(submitters)} submitting); the store is not "
            "shared between processes"
        )
    return f


def check_priority_order(v: View) -> Finding:
    """Tasks enqueued in one call are ready together; a store claims highest priority first.
    Claim times are taken by workers before each claim is sent, so a lower-priority task may
    appear claimed first only through claims already in flight: at most one per worker per
    queue, each of at most `concurrency` tasks. More than that is an ordering violation.
    A task whose first claim its worker handed back unstarted (the breaker refused it, or
    the worker stopped) was ready again only from then on: its first run is not its first
    claim, so it is left out, by the worker's word, not the store's."""
    tolerance = v.run.concurrency * max(1, len(v.workers))
    released: dict[str, float] = {}
    for r in v.by_event[Ev.RELEASED]:
        released[r["id"]] = min(r["t"], released.get(r["id"], r["t"]))
    groups: dict[tuple[int, int, int], list[tuple[float, int]]] = defaultdict(list)
    skipped = 0
    for task_id, sub in v.submitted.items():
        runs = v.runs.get(task_id)
        if not runs or sub.get("d") or "r" not in sub or runs[0]["a"] != 1:
            continue  # deferred, or its first claim is unknown (killed before it ran)
        if released.get(task_id, math.inf) <= runs[0]["t"]:
            skipped += 1
            continue
        i = int(task_id.rsplit("-", 1)[1])
        key = (sub["p"], sub.get("b", 0), i % v.run.queues)
        groups[key].append((runs[0].get("c", runs[0]["t"]), sub["r"]))
    worst = 0
    for group in groups.values():
        # One claim's tasks share a claim time; within it the store's order is unknown, so
        # ties count in the store's favour (higher priority first).
        group.sort(key=lambda x: (x[0], -x[1]))
        seen: dict[int, int] = defaultdict(int)  # priority -> tasks claimed so far
        for _, prio in group:
            worst = max(worst, sum(n for p, n in seen.items() if p < prio))
            seen[prio] += 1
    f = Finding(
        {
            "priority_inversions": worst,
            "priority_tolerance": tolerance,
            "priority_released_first": skipped,
        }
    )
    if worst > tolerance:
        f.failures.append(
            f"priority_order: a task started after {worst} lower-priority tasks that were "
            f"ready with it (concurrency allows {tolerance})"
        )
    return f


def check_worker_counts(v: View) -> Finding:
    """Information, from each worker's own counters at its end: claims released by a
    graceful stop, store calls that failed and were backed off, and leases that lapsed by
    the worker's own clock."""
    released = sum(r.get("released", 0) for r in v.by_event[Ev.STATS])
    errors = sum(r.get("store_errors", 0) for r in v.by_event[Ev.STATS])
    lapsed = sum(r.get("lapsed", 0) for r in v.by_event[Ev.STATS])
    return Finding({"released": released, "store_errors": errors, "lapsed": lapsed})


def check_scenario(v: View) -> Finding:
    if v.run.scenario == "retry":
        disrupted = any(f["kind"] in DISRUPTIVE for f in v.run.faults)
        return retry_check(v.submitted, v.runs, v.ok, v.failed_tokens, disrupted, v.lapsed_tasks)
    if v.run.scenario == "deferred":
        return deferred_check(v.records, v.submitted, v.runs)
    if v.run.scenario == "cancel":
        return cancel_check(v)
    if v.run.scenario == "cron":
        return cron_check(v)
    if v.run.scenario == "breaker":
        records = cast(list[dict[str, Any]], v.records)
        report, failures = breaker_timeline.analyse(records)
        return Finding(failures=failures, details={"breaker_report": report})
    return Finding()


CHECKS: list[Callable[[View], Finding]] = [
    check_lost,
    check_reruns,
    check_unexpected,
    check_wrong_results,
    check_dead,
    check_leftovers,
    check_cross_process,
    check_priority_order,
    check_worker_counts,
    check_scenario,
]


def evaluate(
    records: list[Record],
    facts: StoreFacts,
    *,
    roles: str = "mixed",
    scenario: str = "basic",
    killed_pids: frozenset[int] = frozenset(),
    lease: float = 10.0,
    concurrency: int = 16,
    queues: int = 1,
    procs: int = 0,
    faults: list[dict[str, Any]] | None = None,
    breaker: str = "none",
    breaker_options: dict[str, float] | None = None,
) -> Verdict:
    """Run every registered check. `killed_pids` is shorthand for kill faults (tests)."""
    log = list(faults or []) + [{"kind": "kill", "pid": p, "wall": 0.0} for p in killed_pids]
    run = RunFacts(roles, scenario, lease, concurrency, queues, procs, log, breaker)
    run.breaker_options = breaker_options or {}
    view = View(records, facts, run)
    checks: dict[str, Any] = {"stale_settlements": len(view.by_event[Ev.STALE])}
    failures: list[str] = []
    details: dict[str, Any] = {}
    for check in CHECKS:
        found = check(view)
        checks.update(found.counts)
        failures += found.failures
        details.update(found.details)
    return Verdict(checks, per_process(view), failures, details)


def per_process(v: View) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(
        lambda: {"submitted": 0, "executed": 0, "completed": 0}
    )
    for event, column in ((Ev.SUBMITTED, "submitted"), (Ev.RUN, "executed"), (Ev.OK, "completed")):
        for r in v.by_event[event]:
            out[str(r["p"])][column] += 1
    return dict(out)
