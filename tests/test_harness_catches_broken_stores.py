"""The checker is itself tested: each deliberately broken store fails the run, and the
failure names the check that caught it."""

from __future__ import annotations

import pytest

import harness

pytestmark = pytest.mark.multiprocess


def run_broken(factory: str, **options: object) -> harness.Report:
    base: dict[str, object] = {"procs": 3, "tasks": 150, "progress": False, "timeout": 30}
    base.update(options)
    return harness.run(store=f"tests.broken_stores:{factory}", **base)


def failed_checks(report: harness.Report) -> set[str]:
    return {f.split(":", 1)[0] for f in report.data["failures"]}


def test_double_claim_is_reported_as_duplicated() -> None:
    report = run_broken("double_claim")
    assert not report.ok
    assert report.data["checks"]["duplicated"] >= 1
    assert "duplicated" in failed_checks(report)


def test_payloads_never_deleted_are_reported_left() -> None:
    report = run_broken("leaky")
    assert not report.ok
    assert report.data["checks"]["payloads_left"] == 150
    assert "payloads_left" in failed_checks(report)


def test_process_local_payloads_lose_tasks_across_processes() -> None:
    report = run_broken("process_local", roles="split", procs=2, tasks=60, timeout=4)
    assert not report.ok
    assert report.data["checks"]["lost"] == 60
    assert "lost" in failed_checks(report)


def test_dropped_claims_are_reported_lost() -> None:
    report = run_broken("dropping")
    assert not report.ok
    assert report.data["checks"]["lost"] == len(range(0, 150, 7))
    assert "lost" in failed_checks(report)
