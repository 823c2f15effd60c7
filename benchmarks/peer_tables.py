"""The README's two peer tables from a JSON report of ../shared/bench/run.py (`--json`).

    python benchmarks/peer_tables.py benchmarks/results/<date>-peers-3-repeats.json

First the medians of every system, then kew-plug against each peer: medians of the
per-repeat ratios, oriented so that above 1 is better for kew-plug in every column."""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

# (report key, column, format, higher is better)
COLUMNS = [
    ("enqueue.tps", "single/s", "{:,.0f}", True),
    ("enqueue_batch.tps", "batch/s", "{:,.0f}", True),
    ("drain.tps", "drain/s", "{:,.0f}", True),
    ("e2e.tps", "e2e/s", "{:,.0f}", True),
    ("latency.p50_ms", "pickup p50 ms", "{:.2f}", False),
    ("latency.p99_ms", "p99 ms", "{:.2f}", False),
    ("memory.bytes_per_task", "Redis B/task", "{:,.0f}", False),
    ("redis_cmds.e2e.calls_per_task", "Redis cmds/task (e2e)", "{:.1f}", False),
    ("redis_cmds.e2e.redis_usec_per_task", "Redis CPU µs/task (e2e)", "{:.1f}", False),
    ("redis_cmds.e2e.command_usec_per_task", "Redis cmd µs/task (e2e)", "{:.1f}", False),
]
REF = "kew_plug"


def _cell(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def _ratio(x: float | None) -> str:
    if x is None or x == 0:
        return "n/a"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def medians(report: dict[str, Any]) -> str:
    head = "| system | " + " | ".join(c[1] for c in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for system, summary in report["summary"].items():
        cells = [_cell(summary.get(key), fmt) for key, _, fmt, _ in COLUMNS]
        rows.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _value(result: dict[str, Any], key: str) -> float | None:
    value: Any = result
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def ratios(report: dict[str, Any], ref: str) -> dict[str, dict[str, float | None]]:
    """Per system and column: the median over repeats of ref's value / the system's,
    oriented so that above 1 is better for ref (for throughput, ref / peer; for latency,
    memory and Redis cost, peer / ref)."""
    by_repeat: dict[int, dict[str, dict[str, Any]]] = {}
    for run in report["runs"]:
        if run.get("ok"):
            by_repeat.setdefault(run["repeat"], {})[run["system"]] = run["result"]
    out: dict[str, dict[str, float | None]] = {}
    for system in report["summary"]:
        if system == ref:
            continue
        out[system] = {}
        for key, _, _, higher_better in COLUMNS:
            found = []
            for results in by_repeat.values():
                mine, theirs = results.get(ref), results.get(system)
                a = None if mine is None else _value(mine, key)
                b = None if theirs is None else _value(theirs, key)
                if a and b:
                    found.append(a / b if higher_better else b / a)
            out[system][key] = statistics.median(found) if found else None
    return out


def against_peers(report: dict[str, Any], ref: str = REF) -> str:
    head = f"| {ref} against | " + " | ".join(c[1] for c in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for system, by_key in ratios(report, ref).items():
        cells = [_ratio(by_key[key]) for key, *_ in COLUMNS]
        rows.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("report", help="a JSON report of ../shared/bench/run.py")
    p.add_argument("--ref", action="append", help=f"the system compared (default {REF})")
    a = p.parse_args()
    with open(a.report) as f:
        report = json.load(f)
    print(medians(report))
    for ref in a.ref or [REF]:
        print()
        print(against_peers(report, ref))


if __name__ == "__main__":
    main()
