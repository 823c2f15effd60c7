"""`kew-plug` (also `python -m kew_plug`): argument parsing and dispatch. Bad input, an
unreachable store or a wrong password print one line and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kew_plug.cli import inspect
from kew_plug.cli.targets import UsageError, load_queue
from kew_plug.errors import KewError
from kew_plug.extras import missing_extra
from kew_plug.interfaces import Store
from kew_plug.registry import make_store
from kew_plug.settings import ENV_NAMESPACE, ENV_URL, worker_lease

USAGE_EXIT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kew-plug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run worker processes for one or more queues")
    w.add_argument("targets", nargs="+", metavar="MODULE:QUEUE", help="a Queue or a factory")
    w.add_argument("--processes", type=int, default=1)
    w.add_argument("--concurrency", type=int, default=10)
    w.add_argument(
        "--lease",
        type=float,
        default=None,
        help="seconds (default: $KEW_PLUG_LEASE, else the Worker's)",
    )
    w.add_argument("--shutdown-timeout", type=float, default=10.0)
    w.add_argument("--log-level", default="INFO")
    w.add_argument("--metrics-port", type=int, default=None, help="process k serves port P+k")
    w.add_argument("--check", action="store_true", help="check the queues and the store, exit")

    def store_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("url", nargs="?", default=os.environ.get(ENV_URL), help=f"(${ENV_URL})")
        p.add_argument("--namespace", default=os.environ.get(ENV_NAMESPACE) or None)
        p.add_argument("--json", action="store_true", help="print JSON (schema in the README)")
        return p

    s = store_command("stats", "counts per queue, oldest waiting task, live workers")
    s.add_argument("--queue", action="append", help="only this queue (repeatable)")
    store_command("workers", "live workers, from their heartbeats")
    d = store_command("dead", "dead-lettered tasks with their errors")
    d.add_argument("--queue", required=True)
    d.add_argument("--limit", type=int, default=20)
    r = store_command("requeue", "put dead tasks back to ready")
    r.add_argument("--queue", required=True)
    r.add_argument("ids", nargs="*", metavar="ID")
    r.add_argument("--all-dead", action="store_true")
    p = store_command("purge", "delete every key of a queue")
    p.add_argument("--queue", required=True)
    p.add_argument("--yes", action="store_true", help="really delete")
    b = store_command("dashboard", "serve a web page of the store (refreshes itself)")
    b.add_argument("--host", default="127.0.0.1")
    b.add_argument("--port", type=int, default=8700)
    b.add_argument("--token", default=os.environ.get("KEW_PLUG_TOKEN"), help="($KEW_PLUG_TOKEN)")
    b.add_argument("--read-only", action="store_true", help="no requeue button")
    i = store_command("inspect", "one task: record, status, lease, result or error")
    i.add_argument("--queue", required=True)
    i.add_argument("id")
    i.add_argument("--serializer", default="cloudpickle", help="to read the result")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "worker":
            return run_worker(args)
        if args.command == "dashboard":
            return run_dashboard(args)
        return asyncio.run(run_store_command(args))
    except (UsageError, KewError) as e:
        print(f"kew-plug {args.command}: {e}", file=sys.stderr)
        return USAGE_EXIT
    except ImportError as e:
        hint = missing_extra(e)
        if hint is None:
            raise
        print(f"kew-plug {args.command}: {hint}", file=sys.stderr)
        return USAGE_EXIT


def run_worker(args: argparse.Namespace) -> int:
    from kew_plug.cli.process import ProcessSpec, configure_logging
    from kew_plug.cli.supervisor import Supervisor

    if args.processes < 1 or args.concurrency < 1 or args.shutdown_timeout < 0:
        raise UsageError("--processes and --concurrency must be >= 1, --shutdown-timeout >= 0")
    if args.lease is not None and args.lease <= 0:
        raise UsageError("--lease must be positive")
    if args.metrics_port is not None:
        import prometheus_client  # noqa: F401  (fail now, in one line, if the extra is missing)
    asyncio.run(check_targets(args.targets))
    if args.check:
        print(f"kew-plug worker: {len(args.targets)} queue(s) loaded, store reachable")
        return 0
    configure_logging(args.log_level)
    spec = ProcessSpec(
        targets=tuple(args.targets),
        index=0,
        concurrency=args.concurrency,
        lease=args.lease if args.lease is not None else worker_lease(),
        shutdown_timeout=args.shutdown_timeout,
        log_level=args.log_level,
        metrics_port=args.metrics_port,
        cwd=os.getcwd(),
    )
    return Supervisor(spec, args.processes).run()


def run_dashboard(args: argparse.Namespace) -> int:
    from kew_plug.cli.dashboard import serve

    if not args.url:
        raise UsageError(f"give the store URL or set {ENV_URL}")
    options: dict[str, Any] = {} if args.namespace is None else {"namespace": args.namespace}
    asyncio.run(_ping(make_store(args.url, **options)))
    serve(
        args.url,
        args.namespace,
        host=args.host,
        port=args.port,
        token=args.token,
        read_only=args.read_only,
    )
    return 0


async def _ping(store: Store) -> None:
    try:
        await store.ping()
    finally:
        await store.aclose()


async def check_targets(targets: list[str]) -> None:
    """Every target imports to a Queue whose store answers, before any process starts."""
    for target in targets:
        queue = await load_queue(target)
        try:
            await queue.store.ping()
        finally:
            await queue.aclose()


async def run_store_command(args: argparse.Namespace) -> int:
    if not args.url:
        raise UsageError(f"give the store URL or set {ENV_URL}")
    options: dict[str, Any] = {} if args.namespace is None else {"namespace": args.namespace}
    store = make_store(args.url, **options)
    try:
        await store.ping()
        action, render = _command(args, store)
        data = await action()
    finally:
        await store.aclose()
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        render(data)
    return 0


def _command(
    args: argparse.Namespace, store: Store
) -> tuple[Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], None]]:
    from kew_plug.cli import render

    match args.command:
        case "stats":
            return (lambda: inspect.stats(store, args.queue)), render.stats
        case "workers":
            return (lambda: inspect.workers(store)), render.workers
        case "dead":
            if args.limit < 1:
                raise UsageError("--limit must be >= 1")
            return (lambda: inspect.dead(store, args.queue, args.limit)), render.dead
        case "requeue":
            if bool(args.ids) == bool(args.all_dead):
                raise UsageError("give task ids or --all-dead (not both)")
            return (
                lambda: inspect.requeue(store, args.queue, args.ids, args.all_dead)
            ), render.requeue
        case "purge":
            if not args.yes:
                raise UsageError(f"purge deletes every task of queue {args.queue!r}; add --yes")
            return (lambda: inspect.purge(store, args.queue)), render.purge
        case _:
            return (
                lambda: inspect.inspect_task(store, args.queue, args.id, args.serializer)
            ), render.task
