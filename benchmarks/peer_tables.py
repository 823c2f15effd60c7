"""The README's two peer tables from a JSON report of ../shared/bench/run.py (`--json`).

    python benchmarks/peer_tables.py benchmarks/results/<date>-peers-3-repeats.json

First the medians of every system, then kew-plug against each peer: medians of the
per-repeat ratios, oriented so that above 1 is better for kew-plug in every column."""

from __future__ import annotations

import argparse
import json
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
    if x is None:
        return "n/a"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def medians(report: dict[str, Any]) -> str:
    head = "| system | " + " | ".join(c[1] for c in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for system, summary in report["summary"].items():
        cells = [_cell(summary.get(key), fmt) for key, _, fmt, _ in COLUMNS]
        rows.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def against_peers(report: dict[str, Any]) -> str:
    keys = [c for c in COLUMNS]
    head = "| peer | " + " | ".join(c[1] for c in keys) + " |"
    rows = [head, "|" + "---|" * (len(keys) + 1)]
    for system, ratios in report["ratios_vs_ref"].items():
        if system == REF:
            continue
        cells = []
        for key, _, _, higher_better in keys:
            r = ratios.get(key)  # the peer's value / kew-plug's, median over repeats
            if r is None or r == 0:
                cells.append("n/a")
            else:
                cells.append(_ratio(1 / r if higher_better else r))
        rows.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("report", help="a JSON report of ../shared/bench/run.py")
    a = p.parse_args()
    with open(a.report) as f:
        report = json.load(f)
    print(medians(report), end="\n\n")
    print(against_peers(report))


if __name__ == "__main__":
    main()
