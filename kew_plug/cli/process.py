"""One worker process of `kew-plug worker`: every named queue worked by one Worker on one
event loop, a heartbeat in the store, optional metrics. SIGTERM or SIGINT stop it gracefully:
no new claims, a bounded wait, then unfinished claims are released."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from kew_plug.cli.targets import load_queue
from kew_plug.interfaces import Store
from kew_plug.models import WorkerInfo
from kew_plug.queue import Queue
from kew_plug.worker import Worker

log = logging.getLogger("kew_plug.cli")
HEARTBEAT_EVERY = 5.0
HEARTBEAT_TTL = 15.0  # three missed beats and the worker no longer shows as live


@dataclass(frozen=True)
class ProcessSpec:
    """Plain values, so a spawned process can receive them."""

    targets: tuple[str, ...]
    index: int
    concurrency: int
    lease: float | None
    shutdown_timeout: float
    log_level: str
    metrics_port: int | None
    cwd: str


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def process_main(spec: ProcessSpec) -> None:
    configure_logging(spec.log_level)
    os.chdir(spec.cwd)
    if "" not in sys.path:
        sys.path.insert(0, "")
    asyncio.run(run_process(spec))
    # The loop is closed and SIGTERM has its default action again: a late stop signal must
    # not turn this clean exit into a death by signal.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


async def run_process(spec: ProcessSpec) -> None:
    queues = [await load_queue(t) for t in spec.targets]
    ident = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def make_worker(q: Queue) -> Worker:
        name, timeout = f"{ident}:{q.name}", spec.shutdown_timeout
        if spec.lease is None:  # the Worker's own default
            return Worker(q, concurrency=spec.concurrency, shutdown_timeout=timeout, name=name)
        return Worker(
            q, concurrency=spec.concurrency, lease=spec.lease, shutdown_timeout=timeout, name=name
        )

    workers = [make_worker(q) for q in queues]
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for w in workers:
            w.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_all)
    background = []
    if spec.metrics_port is not None:
        from kew_plug.metrics import WorkerMetrics

        metrics = WorkerMetrics()
        for w in workers:
            metrics.attach(w)
        metrics.serve(spec.metrics_port + spec.index)
        background.append(asyncio.create_task(metrics.keep_fresh(workers)))
    info = WorkerInfo(
        id=ident,
        host=socket.gethostname(),
        pid=os.getpid(),
        queues=[q.name for q in queues],
        started_at=time.time(),
        seen_at=time.time(),
    )
    stores = list({id(q.store): q.store for q in queues}.values())
    background.append(asyncio.create_task(heartbeat(stores, workers, info)))
    background.append(asyncio.create_task(stop_when_orphaned(stop_all)))
    log.info("worker %s started on %s", ident, ", ".join(info.queues))
    try:
        await asyncio.gather(*(w.run() for w in workers))
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for store in stores:
            with contextlib.suppress(Exception):
                await store.forget(ident)
        for q in queues:
            await q.aclose()
        log.info("worker %s stopped", ident)


async def stop_when_orphaned(stop: Callable[[], None], every: float = 1.0) -> None:
    """A supervisor that died without stopping us (SIGKILL) leaves us reparented: stop
    gracefully rather than work on unsupervised."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(every)
        if os.getppid() != parent:
            break
    log.warning("supervisor (pid %d) is gone; stopping", parent)
    stop()


async def heartbeat(stores: list[Store], workers: list[Worker], info: WorkerInfo) -> None:
    while True:
        totals: Counter[str] = Counter()
        for w in workers:
            totals.update(dataclasses.asdict(w.stats))
        beat = dataclasses.replace(info, seen_at=time.time(), counters=dict(totals))
        for store in stores:
            try:
                await store.beat(beat, HEARTBEAT_TTL)
            except Exception as e:  # a heartbeat must never stop the work
                log.warning("heartbeat failed (%s: %s)", type(e).__name__, e)
        await asyncio.sleep(HEARTBEAT_EVERY)
