"""`python -m harness`: argument parsing, progress, table, JSON, exit code (0 all checks
hold, 1 a check failed, 2 bad usage or configuration)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.config import SCENARIOS, ConfigError, RunConfig, parse_faults
from harness.drain import Progress as RunProgress
from harness.report import render, write_json
from harness.runner import Report, arun


def parse_args(argv: Sequence[str] | None) -> RunConfig:
    p = argparse.ArgumentParser(
        prog="python -m harness",
        description="Run N OS processes against one store and prove cross-process pickup, "
        "no duplicates, nothing lost and payload cleanup.",
    )
    p.add_argument("--procs", type=int, default=4, help="OS processes (default 4)")
    p.add_argument("--tasks", type=int, default=1000, help="tasks in all (default 1000)")
    p.add_argument(
        "--store",
        default="fakeredis",
        help="fakeredis (embedded server, default), redis (owned server, or --redis-url), "
        "redis-cluster (owned 6-node cluster, or --redis-url redis+cluster://...), memory, "
        "a redis:// URL, or package.module:factory",
    )
    p.add_argument(
        "--redis-url", default=None, help="an existing Redis (or Cluster) for --store redis"
    )
    p.add_argument("--queues", type=int, default=1, help="spread tasks over K queues")
    p.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="cluster: every write waits until N replicas hold it",
    )
    p.add_argument(
        "--failover-lag",
        type=float,
        default=0.0,
        help="failover faults: the replica falls this many seconds behind before its "
        "primary dies (acknowledged writes in that window are what replicas=N protects)",
    )
    p.add_argument("--serializer", default="cloudpickle", help="cloudpickle, dill, pickle, or m:f")
    p.add_argument(
        "--breaker", default="none", help="none, local, redis, or package.module:factory"
    )
    p.add_argument("--roles", default="mixed", choices=["mixed", "split"])
    p.add_argument("--scenario", default="basic", choices=list(SCENARIOS))
    p.add_argument(
        "--faults",
        default="",
        help="kill=K,pause=P,restart=R,drop=D,failover=F,stop=S,freeze=Z (stop=1, a graceful "
        "SIGTERM of one worker, is always on unless stop=0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="bound on the whole run, s")
    p.add_argument("--task-kind", default="closure", choices=["closure", "module"])
    p.add_argument(
        "--task",
        default=None,
        help="your own task body: package.module:function, sync, taking the task number i "
        "and returning a JSON-like value (checked against calling it locally)",
    )
    p.add_argument("--concurrency", type=int, default=16, help="task slots per worker")
    p.add_argument(
        "--lease", type=float, default=None, help="lease length, s (2; 1 for --scenario long)"
    )
    p.add_argument("--task-ms", type=float, default=None, help="task body ms (0; 2 with faults)")
    p.add_argument("--json", dest="json_path", default=None, help="write the report here")
    p.add_argument("--html", default=None, help="write the run's picture (one HTML file) here")
    p.add_argument("--keep", action="store_true", help="keep ledgers and store keys")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    values = vars(p.parse_args(argv))
    values["faults"] = parse_faults(values["faults"])
    return RunConfig(**values)  # defaults not given here are RunConfig's (resolve())


async def _run_with_progress(cfg: RunConfig, console: Console) -> Report:
    if not cfg.progress:
        return await arun(cfg)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("submitted {task.fields[submitted]}"),
        TextColumn("{task.fields[rate]:.0f}/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("completed", total=cfg.tasks, submitted=0, rate=0.0)

        def update(p: RunProgress) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = p.completed / elapsed if elapsed else 0.0
            bar.update(task, completed=p.completed, submitted=p.submitted, rate=rate)

        return await arun(cfg, on_progress=update)


def main(argv: Sequence[str] | None = None) -> int:
    console = Console(stderr=False)
    try:
        cfg = parse_args(argv).resolve()
        report = asyncio.run(_run_with_progress(cfg, console))
    except ConfigError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2
    render(report.data, report.notes, console)
    if cfg.json_path:
        write_json(report.data, cfg.json_path)
    return 0 if report.ok else 1
