"""Human output of the inspection commands: rich tables (the `cli` extra)."""

from __future__ import annotations

import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="seconds")


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    return table


def stats(data: dict[str, Any]) -> None:
    table = _table(
        "queues", "queue", "queued", "scheduled", "running", "dead", "oldest waiting", "workers"
    )
    for q in data["queues"]:
        age = q["oldest_waiting_s"]
        table.add_row(
            q["name"],
            str(q["queued"]),
            str(q["scheduled"]),
            str(q["running"]),
            str(q["dead"]),
            "-" if age is None else f"{age:.1f} s",
            str(data["workers_by_queue"].get(q["name"], 0)),
        )
    console.print(table)
    console.print(f"live workers: {data['workers']}")


def workers(data: dict[str, Any]) -> None:
    table = _table("workers", "id", "host", "pid", "queues", "started", "completed", "dead")
    for w in data["workers"]:
        counters = w["counters"]
        table.add_row(
            w["id"],
            w["host"],
            str(w["pid"]),
            ", ".join(w["queues"]),
            _when(w["started_at"]),
            str(counters.get("completed", 0)),
            str(counters.get("dead", 0)),
        )
    console.print(table)


def dead(data: dict[str, Any]) -> None:
    table = _table(f"dead in {data['queue']}", "id", "error", "traceback", "attempts", "died")
    for t in data["tasks"]:
        table.add_row(
            t["id"],
            t["error"] or "",
            "\n".join(t["traceback_head"]),
            f"{t['attempts']}/{t['max_attempts']}",
            _when(t["died_at"]),
        )
    console.print(table)


def requeue(data: dict[str, Any]) -> None:
    console.print(f"requeued {len(data['requeued'])} task(s) in {data['queue']}")
    if data["not_dead"]:
        console.print(f"not dead (left as they are): {', '.join(data['not_dead'])}")


def purge(data: dict[str, Any]) -> None:
    console.print(f"purged queue {data['queue']}: {data['deleted']} keys or entries deleted")


def task(data: dict[str, Any]) -> None:
    if not data["found"]:
        console.print(f"no task {data['id']!r} in queue {data['queue']!r}")
        return
    table = _table(f"task {data['id']} in {data['queue']}", "field", "value")
    for key in ("state", "priority", "attempts", "max_attempts", "result", "error"):
        table.add_row(key, str(data[key]))
    table.add_row("enqueued", _when(data["enqueued_at"]))
    table.add_row("lease deadline", _when(data["lease_deadline"]))
    if data["traceback"]:
        table.add_row("traceback", data["traceback"])
    console.print(table)
