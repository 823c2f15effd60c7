"""The checker on synthetic ledgers: each kind of wrongdoing lands in its own category."""

from __future__ import annotations

from typing import Any

from harness.chance import binomial_lower_quantile, cross_process_minimum
from harness.checks import StoreFacts, evaluate

SUBMITTER, WORKER_A, WORKER_B = 100, 200, 300


def rec(e: str, t: float, p: int = WORKER_A, **fields: Any) -> dict[str, Any]:
    return {"e": e, "t": t, "p": p, **fields}


def submitted(*ids: str, x: int = 7) -> list[dict[str, Any]]:
    out = []
    for i in ids:
        out.append(rec("int", 0.0, SUBMITTER, id=i))
        out.append(rec("sub", 0.0, SUBMITTER, id=i, x=x, d=0.0, f=0))
    return out


def ran(
    i: str, t: float, k: int, p: int = WORKER_A, a: int = 1, v: int = 7
) -> list[dict[str, Any]]:
    return [rec("run", t, p, id=i, a=a, k=k), rec("ok", t + 0.01, p, id=i, a=a, k=k, v=v)]


def check(records: list[dict[str, Any]], **kw: Any) -> tuple[dict[str, Any], list[str]]:
    kw.setdefault("roles", "mixed")
    kw.setdefault("scenario", "basic")
    verdict = evaluate(records, kw.pop("facts", StoreFacts()), lease=1.0, **kw)
    return verdict.checks, verdict.failures


def categories(failures: list[str]) -> set[str]:
    return {f.split(":", 1)[0] for f in failures}


def test_a_clean_run_passes() -> None:
    checks, failures = check(submitted("a", "b") + ran("a", 1, 1) + ran("b", 1, 2, WORKER_B))
    assert failures == []
    assert checks["cross_process"] == 2 and checks["cross_process_share"] == 1.0


def test_accepted_task_never_completed_is_lost() -> None:
    checks, failures = check(submitted("a", "b") + ran("a", 1, 1))
    assert checks["lost"] == 1 and categories(failures) == {"lost"}


def test_unexplained_repeat_is_duplicated() -> None:
    records = submitted("a") + ran("a", 1, 1) + ran("a", 1.5, 2, WORKER_B)
    checks, failures = check(records)
    assert checks["duplicated"] == 1 and categories(failures) == {"duplicated"}


def stalled(p: int, s: float, u: float) -> dict[str, Any]:
    """The harness's own ticker in process `p` saw its loop lose [s, u]."""
    return rec("stall", u, p, s=s, u=u)


def test_rerun_after_a_lease_its_worker_could_not_hold_is_not_a_duplicate() -> None:
    records = submitted("a") + ran("a", 1, 1) + ran("a", 1.5, 2, WORKER_B)
    # The first worker saw its own lease on token 1 run out, 0.4 s late, and its loop was
    # seen stalling meanwhile: explained (the check's lease is 1 s).
    lapse_a = rec("lapse", 2.0, WORKER_A, id="a", k=1, l=0.4)
    checks, failures = check([*records, lapse_a, stalled(WORKER_A, 1.1, 1.9)])
    assert failures == [] and checks["rerun_after_lapse"] == 1
    # A worker that stalled before its body began starts after the rerun its lapse made
    # possible: the lapse of either claim explains the pair.
    lapse_b = rec("lapse", 2.0, WORKER_B, id="a", k=2, l=0.4)
    checks, failures = check([*records, lapse_b, stalled(WORKER_B, 1.1, 1.9)])
    assert failures == [] and checks["rerun_after_lapse"] == 1
    # The server seen answering late (the parent's pings) is evidence too.
    server = rec("sstall", 1.9, 1, s=0.9, u=1.9)
    checks, failures = check([*records, lapse_a, server])
    assert failures == [] and checks["rerun_after_lapse"] == 1
    # A worker's stall and the server's, at different moments, delay renewals together:
    # neither reaches a third of the lease alone, their union does (once where they overlap).
    split = [stalled(WORKER_A, 1.1, 1.3), rec("sstall", 1.6, 1, s=1.25, u=1.45)]
    checks, failures = check([*records, lapse_a, *split])
    assert failures == [] and checks["rerun_after_lapse"] == 1
    overlapping = [stalled(WORKER_A, 1.1, 1.3), rec("sstall", 1.3, 1, s=1.1, u=1.3)]
    checks, failures = check([*records, lapse_a, *overlapping])
    assert categories(failures) == {"duplicated"} and checks["lapses_without_stall"] == 1
    # A lapse of some other claim of the task explains nothing about these two.
    unrelated = rec("lapse", 2.0, WORKER_B, id="a", k=3, l=0.4)
    checks, failures = check([*records, unrelated, stalled(WORKER_B, 1.1, 1.9)])
    assert checks["duplicated"] == 1 and categories(failures) == {"duplicated"}


def test_a_lapse_nobody_saw_a_stall_for_explains_nothing() -> None:
    # A store that answers renewals late while no process and not the server stalled: its
    # reruns are duplicates, whatever lapse the worker heard of.
    records = submitted("a") + ran("a", 1, 1) + ran("a", 1.5, 2, WORKER_B)
    lapse_a = rec("lapse", 2.0, WORKER_A, id="a", k=1, l=0.4)
    checks, failures = check([*records, lapse_a])
    assert categories(failures) == {"duplicated"} and checks["lapses_without_stall"] == 1
    # Another process's stall, or a short one, is not this lease's evidence either.
    elsewhere = stalled(WORKER_B, 1.1, 1.9)
    short = stalled(WORKER_A, 1.1, 1.2)
    checks, failures = check([*records, lapse_a, elsewhere, short])
    assert categories(failures) == {"duplicated"} and checks["lapses_without_stall"] == 1


def test_execution_nobody_submitted_is_unexpected() -> None:
    checks, failures = check(submitted("a") + ran("a", 1, 1) + ran("ghost", 1, 2))
    assert checks["unexpected"] == 1 and "unexpected" in categories(failures)


def test_overlapping_leases_are_not_excused_by_a_stale_settlement() -> None:
    # The first run's settlement was refused, but the second run began well inside the
    # first one's lease: two live claims on one task.
    records = submitted("a") + ran("a", 1.0, 1) + ran("a", 1.2, 2, WORKER_B)
    records.append(rec("stale", 1.3, id="a", k=1))
    checks, failures = check(records)
    assert checks["duplicated"] == 1 and checks["redelivered"] == 0
    assert categories(failures) == {"duplicated"}


def test_repeat_after_lease_expiry_without_a_fault_is_duplicated() -> None:
    # The lease ran out and the settlement was refused, but nothing was injected: a lease
    # that workers renew must hold, so this rerun has no cause.
    records = submitted("a") + ran("a", 1.0, 1) + ran("a", 2.5, 2, WORKER_B)
    records.append(rec("stale", 3.0, id="a", k=1))
    checks, failures = check(records)
    assert (checks["redelivered"], checks["duplicated"]) == (0, 1)
    assert categories(failures) == {"duplicated"}


def test_a_pause_lasts_until_the_resume_the_log_records() -> None:
    # Planned for 0.2 s, continued 1.5 s later (a loaded machine): a task handed to the
    # stopped worker meanwhile (claimed at 2.0, begun on resume) ran again elsewhere.
    claimed = rec("run", 2.7, WORKER_A, id="a", a=1, k=1, c=2.0)
    done = rec("ok", 2.71, WORKER_A, id="a", a=1, k=1, v=7)
    records = [*submitted("a"), claimed, done, *ran("a", 3.5, 2, WORKER_B)]
    pause = {"kind": "pause", "pid": WORKER_A, "wall": 1.1, "seconds": 0.2}
    resume = {"kind": "resume", "pid": WORKER_A, "wall": 2.6}
    checks, failures = check(records, faults=[pause, resume])
    assert (checks["redelivered"], checks["duplicated"], failures) == (1, 0, [])
    # Without the record of a late resume, the planned end is all there is.
    checks, failures = check(records, faults=[pause])
    assert checks["duplicated"] == 1 and categories(failures) == {"duplicated"}


def test_repeat_after_its_runner_was_paused_is_redelivered() -> None:
    records = submitted("a") + ran("a", 1.0, 1) + ran("a", 2.5, 2, WORKER_B)
    pause = {"kind": "pause", "pid": WORKER_A, "wall": 1.1, "seconds": 3.2}
    checks, failures = check(records, faults=[pause])
    assert (checks["redelivered"], checks["duplicated"], failures) == (1, 0, [])


def test_a_fault_far_from_the_rerun_explains_nothing() -> None:
    records = submitted("a") + ran("a", 10.0, 1) + ran("a", 12.5, 2, WORKER_B)
    faults = [
        {"kind": "restart", "wall": 2.0},  # long before the first run
        {"kind": "pause", "pid": WORKER_B, "wall": 10.5, "seconds": 3.2},  # another process
    ]
    checks, failures = check(records, faults=faults)
    assert checks["duplicated"] == 1 and categories(failures) == {"duplicated"}


def test_a_drop_just_before_the_rerun_explains_it() -> None:
    records = submitted("a") + ran("a", 10.0, 1) + ran("a", 12.5, 2, WORKER_B)
    checks, failures = check(records, faults=[{"kind": "drop", "wall": 10.2}])
    assert (checks["redelivered"], failures) == (1, [])


def test_double_settlement_without_a_refusal_is_duplicated() -> None:
    # Both runs completed and neither settlement was refused: the store accepted two.
    records = submitted("a") + ran("a", 1.0, 1) + ran("a", 3.0, 2, WORKER_B)
    checks, failures = check(records)
    assert checks["duplicated"] == 1 and "duplicated" in categories(failures)


def test_repeat_after_the_runner_was_killed_is_redelivered() -> None:
    records = [*submitted("a"), rec("run", 1.0, WORKER_A, id="a", a=1, k=1)]
    records += ran("a", 2.0, 2, WORKER_B, a=2)
    checks, failures = check(records, killed_pids=frozenset({WORKER_A}))
    assert (checks["redelivered"], checks["duplicated"], failures) == (1, 0, [])


def test_planned_failure_then_retry_is_retried() -> None:
    records = [
        *submitted("a"),
        rec("run", 1.0, id="a", a=1, k=1),
        rec("err", 1.0, id="a", a=1, k=1),
    ]
    records += ran("a", 1.2, 2, a=2)
    checks, failures = check(records)
    assert (checks["retried"], checks["duplicated"], failures) == (1, 0, [])


def test_an_attempt_lost_to_a_lapsed_lease_is_allowed_by_the_retry_scenario() -> None:
    # Planned to fail once: attempt 1 fails, attempt 2's lease lapses (its worker stalled)
    # and is recovered, attempt 3 completes.
    records = [
        rec("int", 0.0, SUBMITTER, id="a"),
        rec("sub", 0.0, SUBMITTER, id="a", x=7, d=0.0, f=1),
        rec("run", 1.0, id="a", a=1, k=1),
        rec("err", 1.0, id="a", a=1, k=1),
        rec("run", 1.2, id="a", a=2, k=2),
    ]
    records += ran("a", 4.0, 3, WORKER_B, a=3)
    checks, failures = check(records, scenario="retry")
    assert categories(failures) == {"duplicated", "retry"}
    lapsed = [*records, rec("lapse", 3.9, WORKER_A, id="a", k=2), stalled(WORKER_A, 1.5, 3.5)]
    checks, failures = check(lapsed, scenario="retry")
    assert failures == [] and checks["rerun_after_lapse"] == 1


def test_wrong_value_in_ledger_or_store_is_a_wrong_result() -> None:
    checks, failures = check(submitted("a", "b") + ran("a", 1, 1, v=8) + ran("b", 1, 2))
    assert checks["wrong_results"] == 1 and categories(failures) == {"wrong_results"}
    facts = StoreFacts(results={"a": 7, "b": 99})
    checks, _ = check(submitted("a", "b") + ran("a", 1, 1) + ran("b", 1, 2), facts=facts)
    assert checks["wrong_results"] == 1


def test_store_leftovers_fail_the_run() -> None:
    facts = StoreFacts(payloads_left=3, keys_without_ttl=2, ttl_too_long=1)
    _, failures = check(submitted("a") + ran("a", 1, 1), facts=facts)
    assert categories(failures) == {"payloads_left", "keys_without_ttl", "ttl_too_long"}


def test_tasks_the_store_dead_lettered_are_dead_with_their_reason_not_lost() -> None:
    facts = StoreFacts(dead={"b": "lease expired 5 times"})
    checks, failures = check(submitted("a", "b") + ran("a", 1, 1), facts=facts)
    assert (checks["lost"], checks["dead"]) == (0, 1)
    assert failures == ["dead: 1 tasks ended dead (e.g. b: lease expired 5 times)"]


def test_a_task_dead_after_leases_its_worker_could_not_hold_is_reported_not_failed() -> None:
    facts = StoreFacts(dead={"b": "lease expired on attempt 5 of 5"})
    records = submitted("a", "b") + ran("a", 1, 1)
    records += [rec("run", 1.0, WORKER_B, id="b", a=5, k=9)]
    lapsed = [*records, rec("lapse", 3.5, WORKER_B, id="b", k=9), stalled(WORKER_B, 1.5, 3.0)]
    checks, failures = check(lapsed, facts=facts)
    assert failures == [] and (checks["dead"], checks["dead_after_lapse"]) == (0, 1)
    assert checks["lost"] == 0
    # Without the worker's word, the same death is a failure.
    checks, failures = check(records, facts=facts)
    assert categories(failures) == {"dead"} and checks["dead_after_lapse"] == 0


def hello(*pids: int) -> list[dict[str, Any]]:
    return [rec("hello", 0.0, p, works=True, submits=True) for p in pids]


def own_work(pids: tuple[int, ...], per_process: int) -> list[dict[str, Any]]:
    """Each process submits and runs only its own tasks: a store that is not shared."""
    records = hello(*pids)
    for p in pids:
        for n in range(per_process):
            task_id = f"ns-{p}{n:04d}"
            records.append(rec("int", 0.0, p, id=task_id))
            records.append(rec("sub", 0.0, p, id=task_id, x=7, d=0.0, f=0))
            records += ran(task_id, 1.0 + n / 1000, n + 1, p)
    return records


def test_processes_that_only_ever_run_their_own_tasks_fail_cross_process() -> None:
    checks, failures = check(own_work((WORKER_A, WORKER_B, SUBMITTER, 400), 125))
    assert checks["cross_process"] == 0 and checks["cross_process_min"] > 0
    assert categories(failures) == {"cross_process"}
    assert "tasks never crossed processes" in failures[0]


def test_a_tiny_run_is_not_judged_on_chance() -> None:
    # Two processes, four tasks: no crossing is well within chance; nothing is claimed.
    checks, failures = check(own_work((WORKER_A, WORKER_B), 2))
    assert checks["cross_process_min"] == 0 and failures == []


def test_binomial_lower_quantile_matches_the_tail() -> None:
    assert binomial_lower_quantile(10, 0.5, 1e-9) == 0
    assert binomial_lower_quantile(100, 1.0, 1e-9) == 100
    k = binomial_lower_quantile(1000, 0.5, 1e-9)
    assert 300 < k < 500  # mean 500, sd 15.8: about six sd below


def test_cross_process_minimum_with_no_working_submitter_is_every_task() -> None:
    assert cross_process_minimum(60, 0, 2, 16) == 60  # split roles: every pickup crosses
    assert cross_process_minimum(1000, 1000, 1, 16) == 0  # one working process proves nothing


def test_priority_inversions_beyond_concurrency_fail() -> None:
    # One enqueue batch of 90 tasks, priorities i % 3, claimed oldest-first (FIFO): the last
    # priority-2 task starts after 60 lower-priority ones, more than 16 x 1 worker allows.
    records = one_batch_run_in(list(range(90)))
    checks, failures = check(records, concurrency=16)
    assert checks["priority_inversions"] == 60 and checks["priority_tolerance"] == 16
    assert categories(failures) == {"priority_order"}
    checks, failures = check(records, concurrency=60)  # so much in flight: not provable
    assert failures == []


def one_batch_run_in(order: list[int]) -> list[dict[str, Any]]:
    """One enqueue batch of tasks ns-i (priority i % 3), run one after another in `order`."""
    records = hello(WORKER_A)
    for n, i in enumerate(order):
        task_id = f"ns-{i}"
        records.append(rec("int", 0.0, SUBMITTER, id=task_id))
        records.append(rec("sub", 0.0, SUBMITTER, id=task_id, x=7, d=0.0, f=0, r=i % 3, b=0))
        records += ran(task_id, 1.0 + n / 100, n + 1)
    return records


def test_priority_order_respected_passes() -> None:
    records = one_batch_run_in(sorted(range(90), key=lambda i: (-(i % 3), i)))
    checks, failures = check(records, concurrency=16)
    assert checks["priority_inversions"] == 0 and failures == []


def test_priority_task_handed_back_by_its_worker_is_not_an_inversion() -> None:
    # The first priority-2 task's first claim was refused by the breaker and released: it
    # was ready again only then, and ran last. Without the worker's release record, the
    # same ledger is an inversion (it started after 60 lower-priority tasks).
    order = sorted(range(90), key=lambda i: (-(i % 3), i))
    order.remove(2)
    records = one_batch_run_in([*order, 2])
    checks, failures = check(records, concurrency=16)
    assert checks["priority_inversions"] == 60 and categories(failures) == {"priority_order"}
    released = [*records, rec("rel", 0.5, WORKER_A, id="ns-2", k=0)]
    checks, failures = check(released, concurrency=16)
    assert failures == [] and checks["priority_released_first"] == 1
    # A release after the task's first run (a stop cancelled it mid-run) excuses nothing.
    late = [*records, rec("rel", 2.0, WORKER_A, id="ns-2", k=0)]
    checks, failures = check(late, concurrency=16)
    assert categories(failures) == {"priority_order"}
