"""Human output of the inspection commands: rich tables (the `cli` extra)."""

from __future__ import annotations

import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    # All of the namespace's: the table's last column counts each queue's own.
    console.print(f"live workers in the namespace: {data['workers']}")


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
    # Three columns, one wide, so that a traceback stays readable in 80 columns.
    table = Table(title=f"dead in {data['queue']}", show_lines=True)
    table.add_column("id, died", no_wrap=True)
    table.add_column("tries", no_wrap=True)
    table.add_column("error, end of traceback", overflow="fold")
    for t in data["tasks"]:
        lines = t["traceback_tail"]
        if t["error"] and t["error"] not in lines:
            lines = [t["error"], *lines]
        table.add_row(
            f"{t['id']}\n{_when(t['died_at'])}",
            f"{t['attempts']}/{t['max_attempts']}",
            Text("\n".join(lines)),  # Text: brackets in user code are not rich markup
        )
    console.print(table)


def requeue(data: dict[str, Any]) -> None:
    console.print(f"requeued {len(data['requeued'])} task(s) in {data['queue']}")
    if data["not_dead"]:
        console.print(f"not dead (left as they are): {', '.join(data['not_dead'])}")


def purge(data: dict[str, Any]) -> None:
    console.print(f"purged queue {data['queue']}: {data['deleted']} keys or entries deleted")


def task(data: dict[str, Any]) -> None:
    table = _table(f"task {data['id']} in {data['queue']}", "field", "value")
    for key in ("state", "priority", "attempts", "max_attempts", "result", "error"):
        table.add_row(key, Text(str(data[key])))
    table.add_row("enqueued", _when(data["enqueued_at"]))
    table.add_row("lease deadline", _when(data["lease_deadline"]))
    if data["traceback"]:
        table.add_row("traceback", Text(data["traceback"]))
    console.print(table)
