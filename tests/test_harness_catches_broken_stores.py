"""The checker is itself tested: each deliberately broken store fails the run, the failure
names the check that caught it and no other, and the unchanged store passes the very same
command. (README: "What the harness catches".)"""

from __future__ import annotations

from typing import Any

import pytest

import harness

pytestmark = pytest.mark.multiprocess

BASE: dict[str, Any] = {"procs": 3, "tasks": 150, "progress": False, "timeout": 60}


def run_store(factory: str, **options: Any) -> harness.Report:
    return harness.run(store=f"tests.broken_stores:{factory}", **{**BASE, **options})


def failed_checks(report: harness.Report) -> set[str]:
    return {f.split(":", 1)[0] for f in report.data["failures"]}


def caught_only_by(check: str, factory: str, **options: Any) -> harness.Report:
    """The broken store fails with exactly `check`; the unchanged store passes the same."""
    report = run_store(factory, **options)
    assert not report.ok
    assert failed_checks(report) == {check}, report.data["failures"]
    clean = run_store("unchanged", **options)
    assert clean.ok, clean.data["failures"]
    return report


def test_double_claim_is_reported_as_duplicated() -> None:
    report = caught_only_by("duplicated", "double_claim")
    assert report.data["checks"]["duplicated"] >= 1
    # The report carries each example's ledger: two bodies of it ran, in two claims.
    evidence = report.data["duplicated_evidence"]
    assert evidence and len(evidence) <= 3
    for task_id, records in evidence.items():
        runs = [r for r in records if r["e"] == "run" and r["id"] == task_id]
        assert len({r["k"] for r in runs}) >= 2, records


def test_payloads_never_deleted_are_reported_left() -> None:
    report = caught_only_by("payloads_left", "leaky")
    assert report.data["checks"]["payloads_left"] == 150


def test_payload_bytes_hidden_from_payload_ids_are_found_on_the_raw_server() -> None:
    report = caught_only_by("payloads_left", "hidden_payload")
    assert report.data["checks"]["payloads_left"] == 150
    assert report.data["independent"]["payloads_left"] is True


def test_a_record_kept_far_longer_than_result_ttl_fails() -> None:
    report = caught_only_by("ttl_too_long", "long_record")
    assert report.data["checks"]["ttl_too_long"] == 150


def test_a_record_without_ttl_fails() -> None:
    report = caught_only_by("keys_without_ttl", "persistent_record")
    assert report.data["checks"]["keys_without_ttl"] == 150


def test_a_store_ignoring_priority_fails_the_order_check() -> None:
    # Batches of 200 (priorities i % 3) against 2 workers x 16 slots of tolerance.
    report = caught_only_by("priority_order", "fifo", procs=2, tasks=400)
    assert report.data["checks"]["priority_inversions"] > 32


def test_leases_that_do_not_hold_under_long_tasks_fail_as_duplicated() -> None:
    report = run_store("no_renew", scenario="long", procs=2, tasks=24)
    # The reruns are the finding. A rerun whose own lease is lost in turn (a worker that
    # re-claims a task it still runs stops renewing it) can exhaust attempts: those tasks
    # end dead, which is reported as such, never as lost.
    assert "duplicated" in failed_checks(report) <= {"duplicated", "dead"}
    assert report.data["checks"]["stale_settlements"] >= 1
    assert report.data["checks"]["lost"] == 0
    clean = run_store("unchanged", scenario="long", procs=2, tasks=24)
    assert clean.ok, clean.data["failures"]


def test_renewals_answered_past_the_lease_fail_as_duplicated_not_as_stalls() -> None:
    # The workers hear their leases lapse, but nothing stalled: no excuse for the reruns.
    report = run_store("slow_renew", scenario="long", procs=2, tasks=24)
    assert "duplicated" in failed_checks(report) <= {"duplicated", "dead"}
    assert report.data["checks"]["lapses_without_stall"] >= 1
    assert report.data["checks"]["rerun_after_lapse"] == 0


def test_tasks_dead_lettered_by_recover_are_dead_with_a_reason_not_lost() -> None:
    report = caught_only_by("dead", "withholding", lease=0.3)
    assert report.data["checks"]["lost"] == 0
    assert report.data["checks"]["dead"] == len(range(0, 150, 10))
    assert all(report.data["dead_tasks"].values())


def test_a_store_hiding_running_tasks_does_not_end_the_run_early() -> None:
    # Bodies of 300 ms: a harness trusting stats() would stop while tasks still run.
    report = run_store("hides_running", task_ms=300, tasks=90)
    assert report.ok, report.data["failures"]
    assert report.data["checks"]["lost"] == 0


def test_the_readme_plugin_example_with_a_memory_store_fails_cross_process() -> None:
    report = run_store("memory", procs=4, tasks=500)
    assert failed_checks(report) == {"cross_process"}, report.data["failures"]
    assert "tasks never crossed processes" in report.data["failures"][0]


def test_process_local_payloads_lose_tasks_across_processes() -> None:
    report = run_store("process_local", roles="split", procs=2, tasks=60, timeout=4)
    assert not report.ok
    assert report.data["checks"]["lost"] == 60
    assert failed_checks(report) - {"invalid run"} == {"lost"}


def test_dropped_claims_are_reported_lost() -> None:
    report = caught_only_by("lost", "dropping")
    assert report.data["checks"]["lost"] == len(range(0, 150, 7))


def test_a_crashed_child_shows_its_traceback_inline() -> None:
    report = run_store("crashing", procs=2, tasks=20)
    assert failed_checks(report) == {"crashed"}, report.data["failures"]
    crash = report.data["failures"][0]
    assert "Traceback (most recent call last)" in crash
    assert "RuntimeError: enqueue refused on purpose by CrashingStore" in crash


def test_a_cancel_that_does_not_fence_a_running_task_fails_the_cancel_check() -> None:
    report = caught_only_by("cancel", "unfenced_cancel", procs=3, tasks=150, scenario="cancel")
    checks = report.data["checks"]
    assert checks["completed_after_cancel"] >= 1
    assert checks["completed_after_cancel"] <= checks["cancel_acknowledged_running"]


def test_a_store_that_does_not_dedup_runs_a_tick_once_per_process() -> None:
    report = caught_only_by("cron", "no_dedup", procs=3, tasks=20, scenario="cron")
    assert report.data["checks"]["ticks_twice"] >= 1


def test_a_store_off_the_harness_server_is_judged_by_its_contents() -> None:
    report = run_store("elsewhere")
    assert report.ok, report.data["failures"]
    assert report.data["leftovers_judged_from"] == "the store's own contents"
    assert not any(report.data["independent"][k] for k in ("payloads_left", "ttl_too_long"))
    leaky = run_store("elsewhere_hidden")
    assert failed_checks(leaky) == {"payloads_left"}, leaky.data["failures"]
