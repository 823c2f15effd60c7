"""`kew-plug` (also `python -m kew_plug`): argument parsing and dispatch. Bad input, an
unreachable store or a wrong password print one line and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kew_plug.cli import inspect
from kew_plug.cli.targets import UsageError, load_queue
from kew_plug.errors import KewError
from kew_plug.extras import missing_extra
from kew_plug.interfaces import Store
from kew_plug.registry import STORES, make_store
from kew_plug.settings import ENV_NAMESPACE, ENV_URL, worker_lease

USAGE_EXIT = 2
NOT_FOUND_EXIT = 1  # `inspect` of a task the store does not have
TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
URLISH = re.compile(r"[A-Za-z][\w+.-]*:/")
STORE_RULE = (
    f"URL is the store, optional when ${ENV_URL} is set. The first positional is taken as "
    "the store only if it has a store's form: it looks like a URL (has '//' or starts "
    "'scheme:/'), is a store name "
    f"({', '.join([*STORES, 'redis'])}) or is package.module:attr; anything else is an ID "
    "(give the URL too for an ID of such a form). Options and positionals go in any order."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kew-plug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser(
        "worker",
        help="run worker processes for one or more queues",
        epilog="A function target is called to get its Queue, by --check too: name the Queue "
        "or its factory, not a task. One that needs arguments, or is a periodic task of a "
        "Queue in its module, is refused without being called.",
    )
    w.add_argument(
        "targets",
        nargs="+",
        metavar="MODULE:QUEUE",
        help="a Queue, or a function taking no arguments that returns one",
    )
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

    def store_command(
        name: str, help_text: str, takes_ids: bool = False, **options: Any
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, **options)
        if takes_ids:  # one list, split by STORE_RULE: argparse cannot tell a URL from an ID
            p.add_argument("words", nargs="*", metavar="URL, ID", help="see below")
        else:
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
    r = store_command(
        "requeue",
        "put dead tasks back to ready",
        takes_ids=True,
        usage="%(prog)s [URL] --queue Q (ID... | --all-dead) [--namespace N] [--json]",
        epilog=STORE_RULE,
    )
    r.add_argument("--queue", required=True)
    r.add_argument("--all-dead", action="store_true")
    p = store_command("purge", "delete every key of a queue")
    p.add_argument("--queue", required=True)
    p.add_argument("--yes", action="store_true", help="really delete")
    b = store_command("dashboard", "serve a web page of the store (refreshes itself)")
    b.add_argument("--host", default="127.0.0.1")
    b.add_argument("--port", type=int, default=8700)
    b.add_argument("--token", default=os.environ.get("KEW_PLUG_TOKEN"), help="($KEW_PLUG_TOKEN)")
    b.add_argument("--read-only", action="store_true", help="no requeue button")
    i = store_command(
        "inspect",
        "one task: record, status, lease, result or error",
        takes_ids=True,
        usage="%(prog)s [URL] --queue Q ID [--serializer S] [--namespace N] [--json]",
        epilog=f"{STORE_RULE} Exit status: 0, {NOT_FOUND_EXIT} if the store has no such "
        f"task, {USAGE_EXIT} on bad input or an unreachable store.",
    )
    i.add_argument("--queue", required=True)
    i.add_argument("--serializer", default="cloudpickle", help="to read the result")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return run(argv)
        finally:
            if sys.stdout is not None:  # None when started with fd 1 closed
                sys.stdout.flush()  # now, not at exit, so that a closed pipe is caught below
    except BrokenPipeError:
        if not _reader_gone():
            raise  # another pipe broke (a worker process's, a socket): not ours to hide
        # The reader left (`| head`): stop quietly. Python flushes stdout again at exit,
        # where a failure would print a warning, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _reader_gone() -> bool:
    """Is stdout a pipe nobody reads any more? (A pipe without readers polls as an error.)"""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no stdout, or not a real file
        return False


def run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # argparse fills positionals only up to the option after them (`requeue URL --queue q
    # ID` leaves ID over): later ones join the command's list; unknown options still fail.
    rest = "targets" if args.command == "worker" else "words"
    if extras and (rest not in args or any(e.startswith("-") for e in extras)):
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if extras:
        getattr(args, rest).extend(extras)
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


def split_store(words: list[str]) -> tuple[str | None, list[str]]:
    """The store and the IDs among a command's positionals, by STORE_RULE."""
    first = words[0] if words else ""
    # A URL, even mistyped ('rediss//host', 'redis:/host'), is the store: taken for an ID,
    # it would send the command to $KEW_PLUG_URL's store instead, without a word.
    urlish = "//" in first or URLISH.match(first)
    if urlish or first in (*STORES, "redis") or TARGET.fullmatch(first):
        return first, words[1:]
    return os.environ.get(ENV_URL), words


async def run_store_command(args: argparse.Namespace) -> int:
    if "words" in args:
        args.url, args.ids = split_store(args.words)
        if args.command == "inspect" and len(args.ids) != 1:
            raise UsageError(f"give one task ID, not {len(args.ids)}")
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
    if args.command == "inspect" and not data["found"]:
        print(f"kew-plug inspect: no task {args.ids[0]!r} in queue {args.queue!r}", file=sys.stderr)
        return NOT_FOUND_EXIT
    if not args.json:
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
                lambda: inspect.inspect_task(store, args.queue, args.ids[0], args.serializer)
            ), render.task
