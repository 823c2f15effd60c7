"""The checker on synthetic ledgers: each kind of wrongdoing lands in its own category."""

from __future__ import annotations

from typing import Any

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


def test_repeat_after_lease_expiry_with_stale_settlement_is_redelivered() -> None:
    records = submitted("a") + ran("a", 1.0, 1) + ran("a", 2.5, 2, WORKER_B)
    records.append(rec("stale", 3.0, id="a", k=1))
    checks, failures = check(records)
    assert (checks["redelivered"], checks["duplicated"], failures) == (1, 0, [])


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


def test_wrong_value_in_ledger_or_store_is_a_wrong_result() -> None:
    checks, failures = check(submitted("a", "b") + ran("a", 1, 1, v=8) + ran("b", 1, 2))
    assert checks["wrong_results"] == 1 and categories(failures) == {"wrong_results"}
    facts = StoreFacts(results={"a": 7, "b": 99})
    checks, _ = check(submitted("a", "b") + ran("a", 1, 1) + ran("b", 1, 2), facts=facts)
    assert checks["wrong_results"] == 1


def test_store_leftovers_fail_the_run() -> None:
    facts = StoreFacts(payloads_left=3, keys_without_ttl=2)
    _, failures = check(submitted("a") + ran("a", 1, 1), facts=facts)
    assert categories(failures) == {"payloads_left", "keys_without_ttl"}


def test_split_roles_with_no_cross_process_pickup_fail() -> None:
    records = submitted("a") + ran("a", 1, 1, SUBMITTER)
    checks, failures = check(records, roles="split")
    assert checks["cross_process"] == 0 and categories(failures) == {"cross_process"}
