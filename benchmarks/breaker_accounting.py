"""Breaker accounting under CPU pressure: N consecutive runs of the breaker scenario on a real
Redis (started by the harness) with two CPU-burning processes beside them, for the Redis
breaker (every run must be clean) and for a breaker that grants calls while open (every run
must fail on the breaker check). Writes a markdown tally.

    python benchmarks/breaker_accounting.py --runs 20 --out benchmarks/results/x.md
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMAND = [
    sys.executable, "-m", "harness", "--store", "redis", "--scenario", "breaker",
    "--procs", "4", "--tasks", "1000", "--no-progress",
]  # fmt: skip
BREAKERS = {"redis": "redis", "grants-while-open": "tests.broken_breakers:factory"}


@dataclass
class Run:
    rc: int
    wall: float
    failures: list[str]
    report: dict[str, Any]
    checks: dict[str, Any] | None = None


def one_run(breaker: str) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.json"
        started = time.monotonic()
        done = subprocess.run(
            [*COMMAND, "--breaker", breaker, "--json", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        wall = time.monotonic() - started
        if not path.exists():
            return Run(done.returncode, wall, [f"no report: {done.stderr[-300:]}"], {})
        data = json.loads(path.read_text())
    report = data.get("breaker_report", {})
    return Run(done.returncode, wall, data["failures"], report, data["checks"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    results: dict[str, list[Run]] = {name: [] for name in BREAKERS}
    load_before = os.getloadavg()
    try:
        for name, breaker in BREAKERS.items():
            for i in range(args.runs):
                r = one_run(breaker)
                results[name].append(r)
                print(name, i + 1, r.rc, r.report, r.checks, r.failures, flush=True)
    finally:
        for hog in hogs:
            os.kill(hog.pid, signal.SIGKILL)
            hog.wait()
    load_after = os.getloadavg()
    lines = [
        "# Breaker accounting on one clock: 20 runs each, two CPU hogs beside them",
        "",
        f"Command: `{' '.join(['python', *COMMAND[1:]])} --breaker B` (real Redis started by",
        'the harness), run back to back, with two `python -c "while True: pass"` processes',
        "started before the first run and stopped by PID after the last. Load average (1 min)",
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; machine: {os.cpu_count()} cores,",
        "shared with other jobs.",
        "",
        "| breaker | runs | clean (exit 0) | failed on the breaker check | other failures "
        "| calls while open (min-max) | probes per episode (max) | wall s (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in results.items():
        clean = sum(1 for r in rs if r.rc == 0)
        caught = sum(1 for r in rs if any(f.startswith("breaker:") for f in r.failures))
        other = Counter(f.split(":", 1)[0] for r in rs for f in r.failures)
        other.pop("breaker", None)
        opens = [r.report.get("calls_while_open", -1) for r in rs]
        probes = [r.report.get("half_open_probes", -1) for r in rs]
        walls = sorted(r.wall for r in rs)
        lines.append(
            f"| {name} | {len(rs)} | {clean} | {caught} | {dict(other) or 'none'} "
            f"| {min(opens)}-{max(opens)} | {max(probes)} | {walls[len(walls) // 2]:.1f} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
