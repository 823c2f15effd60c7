"""Rendering: a live progress bar, then one table of every check, per-process counts and
throughput. The JSON report has fixed keys (README, "The harness") that scripts may read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.checks import Verdict
from harness.config import RunConfig

# Check name -> whether a nonzero count fails the run.
CHECK_ROWS = {
    "lost": True,
    "duplicated": True,
    "unexpected": True,
    "wrong_results": True,
    "dead": True,
    "payloads_left": True,
    "keys_without_ttl": True,
    "ttl_too_long": True,
    "priority_inversions": True,
    "priority_released_first": False,
    "redelivered": False,
    "rerun_after_lapse": False,
    "lapses_without_stall": False,
    "dead_after_lapse": False,
    "retried": False,
    "stale_settlements": False,
    "released": False,
    "store_errors": False,
    "lapsed": False,
}


def report_data(
    cfg: RunConfig,
    wall: float,
    completed: int,
    verdict: Verdict,
    fault_log: list[dict[str, Any]],
    per_node: dict[str, int],
) -> dict[str, Any]:
    """The JSON report's fixed keys (README), then every check's details."""
    return {
        "ok": False,
        "tasks": cfg.tasks,
        "procs": cfg.procs,
        "store": cfg.store,
        "serializer": cfg.serializer,
        "breaker": cfg.breaker,
        "roles": cfg.roles,
        "scenario": cfg.scenario,
        "faults": cfg.faults,
        "lease": cfg.lease_s,
        "task_ms": cfg.body_ms,
        "queues": cfg.queues,
        "replicas": cfg.replicas,
        "failover_lag": cfg.failover_lag,
        "seed": cfg.seed,
        "wall_s": round(wall, 3),
        "tasks_per_s": round(completed / wall, 1) if wall else 0.0,
        "checks": verdict.checks,
        "per_process": verdict.per_process,
        "failures": [],
        "fault_log": fault_log,
        "keys_per_node": per_node,
        **verdict.details,
    }


def render(report: dict[str, Any], notes: list[str], console: Console) -> None:
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    checks = report["checks"]
    table = Table(title=_title(report), title_justify="left")
    table.add_column("check")
    table.add_column("count", justify="right")
    table.add_column("result")
    failing = {f.split(":", 1)[0] for f in report["failures"]}
    failing |= {"priority_inversions"} if "priority_order" in failing else set()
    for name, judged in CHECK_ROWS.items():
        value = checks.get(name, 0)
        verdict = "[red]FAIL[/]" if name in failing else "[green]pass[/]" if judged else "info"
        table.add_row(name, str(value), verdict)
    share = checks["cross_process_share"]
    table.add_row(
        "cross_process",
        f"{checks['cross_process']} ({share:.1%}; at least {checks.get('cross_process_min', 0)})",
        "[red]FAIL[/]" if "cross_process" in failing else "[green]pass[/]",
    )
    independent = report.get("independent") or {}
    if independent:
        own = ", ".join(k for k, v in independent.items() if v) or "none"
        console.print(f"read from the raw server by the harness: {own}")
    for key in sorted(k for k in report if k.startswith(("retry_", "deferred_"))):
        table.add_row(key, str(report[key]), "info")
    console.print(table)
    procs = Table(title="per process", title_justify="left")
    for col in ("pid", "submitted", "executed", "completed"):
        procs.add_column(col, justify="right")
    for pid, row in sorted(report["per_process"].items()):
        procs.add_row(pid, str(row["submitted"]), str(row["executed"]), str(row["completed"]))
    console.print(procs)
    nodes = report.get("keys_per_node") or {}
    if len(nodes) > 1:
        spread = ", ".join(f"{node} {count}" for node, count in sorted(nodes.items()))
        console.print(f"keys per primary: {spread}")
    for fault in report.get("fault_log", []):
        if fault["kind"] == "failover":
            console.print(
                f"failover at {fault['t']:.1f} s: primary {fault.get('old_primary')} -> "
                f"{fault.get('new_primary')} in {fault['seconds']:.1f} s"
            )
    if "breaker_report" in report:
        console.print("breaker:", report["breaker_report"])
    for failure in report["failures"]:
        console.print(f"[red]FAIL[/] {failure}")
    status = "[green]OK[/]" if report["ok"] else "[red]FAILED[/]"
    console.print(
        f"{status}  {report['tasks']} tasks, {report['procs']} processes, "
        f"{report['wall_s']:.2f} s, {report['tasks_per_s']:.0f} tasks/s"
    )


def _title(r: dict[str, Any]) -> str:
    return (
        f"kew-plug harness: store={r['store']} serializer={r['serializer']} "
        f"breaker={r['breaker']} roles={r['roles']} scenario={r['scenario']}"
        + (f" queues={r['queues']}" if r.get("queues", 1) > 1 else "")
        + (f" replicas={r['replicas']}" if r.get("replicas") else "")
    )


def write_json(report: dict[str, Any], path: str) -> None:
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
