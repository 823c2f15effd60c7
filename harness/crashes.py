"""Crash reports: a child that dies of an exception leaves its traceback in the run folder;
the failure shows it inline, since the folder is deleted when the run ends."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from harness.events import Ev, Record

TRACEBACK_LINES = 25


def crash_file(workdir: Path, index: int) -> Path:
    return workdir / f"crash-p{index}.txt"


def crash_reports(
    procs: list[Any],
    specs: dict[int, Any],
    records: list[Record],
    killed: set[int],
    workdir: Path,
) -> list[str]:
    # SIGTERM is the harness's own stop. It kills by default only a process still starting
    # up (its handler comes first, before any store access), which has done no work.
    started_up = {r["p"] for r in records if r["e"] == Ev.HELLO}
    failures = []
    for p in procs:
        if p.exitcode in (0, None) or p.pid in killed:
            continue
        if p.exitcode == -signal.SIGTERM and p.pid not in started_up:
            continue
        report = f"crashed: process {p.pid} exited with code {p.exitcode}"
        path = crash_file(workdir, specs[p.pid].index)
        if path.exists():
            lines = path.read_text(errors="replace").rstrip().splitlines()
            if len(lines) > TRACEBACK_LINES:  # the header, then the innermost frames
                lines = [lines[0], "  ...", *lines[-TRACEBACK_LINES:]]
            report += ":\n" + "\n".join("    " + line for line in lines)
        else:
            report += " (it left no traceback: killed by a signal, or died in the interpreter)"
        failures.append(report)
    return failures
