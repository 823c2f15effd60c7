"""What each spawned process runs: its own event loop, its own store connection, built from
strings it was given (a URL or import path, a namespace, a seed), never a live client."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import stalls, tasks
from harness.canceller import (
    CANCEL_BODY_MS,
    CANCEL_DELAY_S,
    CANCEL_RUNNING,
    CANCEL_WAITING,
    cancel_targets,
)
from harness.events import Ev
from harness.ledger import LedgerWriter, read_all
from harness.policy import RETRY_POLICY
from harness.recording import RecordingBreaker
from kew_plug.errors import KewError, StoreUnavailable
from kew_plug.hooks import TaskEvent
from kew_plug.interfaces import Breaker, Store
from kew_plug.queue import Queue, TaskSpec
from kew_plug.registry import URL_SCHEMES, load_object, make_breaker, make_store
from kew_plug.worker import Worker

PACE_S = 3.0
LONG_BODY_MAX_S = 4.0  # the long scenario's bodies last 2.5 s up to this
IDLE_GAP_S = 0.15


@dataclass(frozen=True)
class ChildSpec:
    index: int
    submits: bool
    works: bool
    store: str  # a URL, a registry name or package.module:factory
    server_url: str | None  # the Redis or embedded fakeredis server of this run, if any
    namespace: str
    queues: tuple[str, ...]  # task i goes to queues[i % len(queues)]
    serializer: str
    breaker: str
    secret: str
    ledger_dir: str
    first: int  # this process submits tasks [first, last)
    last: int
    salt: int
    task_kind: str
    task_fn: str  # a user's package.module:function, or ""
    task_ms: float
    scenario: str
    concurrency: int
    lease: float
    batch: int
    breaker_options: dict[str, float]
    downstream: tuple[float, float]  # outage window, wall clock
    start_at: float  # wall clock; the breaker scenario paces submissions from here
    marker: bytes = b""  # the run's 8-byte payload pattern (see tasks.marker)
    peers: int = 0  # processes planned at the start: submitters wait until all have started
    cancels_of: int = 0  # the cancel scenario: whose targets this process cancels
    result_ttl: float = 3600.0  # what the harness asks the store to keep results for
    dead_ttl: float = 7200.0


def build_store(
    spec: str,
    server_url: str | None,
    namespace: str,
    result_ttl: float = 3600.0,
    dead_ttl: float = 7200.0,
) -> Store:
    """A store from the strings a child was given. A `package.module:factory` is called with
    whichever of `url` (the run's server), `namespace`, `result_ttl` and `dead_ttl` its
    signature accepts."""
    if spec.startswith(URL_SCHEMES) or spec in ("fakeredis", "redis", "redis-cluster"):
        from kew_plug.backends.redis import RedisStore

        return RedisStore.from_url(
            server_url or spec, namespace=namespace, result_ttl=result_ttl, dead_ttl=dead_ttl
        )
    if ":" in spec:
        factory = load_object(spec, "store", ["memory", "fakeredis", "redis"])
        if callable(factory) and not isinstance(factory, Store):
            params = inspect.signature(factory).parameters
            offered = {
                "url": server_url,
                "namespace": namespace,
                "result_ttl": result_ttl,
                "dead_ttl": dead_ttl,
            }
            made = factory(**{k: v for k, v in offered.items() if k in params})
            if isinstance(made, Store):
                return made
    return make_store(spec)


#: The stores' documented defaults: the bounds for a factory that does not take the
#: harness's own result_ttl and dead_ttl.
DEFAULT_RESULT_TTL, DEFAULT_DEAD_TTL = 3600.0, 7 * 86400.0


def ttl_bounds(spec: str, result_ttl: float, dead_ttl: float) -> tuple[float, float]:
    """How long the store was asked to keep finished and dead records: the harness's own
    values where `build_store` could pass them, else the documented defaults."""
    if spec.startswith(URL_SCHEMES) or ":" not in spec:
        return result_ttl, dead_ttl
    try:
        params = inspect.signature(load_object(spec, "store", [])).parameters
    except (KewError, TypeError, ValueError):
        return DEFAULT_RESULT_TTL, DEFAULT_DEAD_TTL
    return (
        result_ttl if "result_ttl" in params else DEFAULT_RESULT_TTL,
        dead_ttl if "dead_ttl" in params else DEFAULT_DEAD_TTL,
    )


def build_breaker(spec: ChildSpec, store: Store, queue: str) -> Breaker | None:
    if spec.breaker == "local":
        from kew_plug.backends.breakers import LocalBreaker

        return LocalBreaker(**spec.breaker_options)  # type: ignore[arg-type]
    if spec.breaker == "redis":
        made = store.shared_breaker(queue, **spec.breaker_options)
        if made is None:
            raise SystemExit(f"--breaker redis needs a Redis store, not {type(store).__name__}")
        return made
    return make_breaker(spec.breaker, store, queue, **spec.breaker_options)


def build_queue(spec: ChildSpec, store: Store, ledger: LedgerWriter, queue: str) -> Queue:
    breaker = build_breaker(spec, store, queue)
    if breaker is not None:
        breaker = RecordingBreaker(breaker, ledger, queue)
    # Breaker probes that meet the outage each cost their task an attempt.
    retries = 20 if spec.scenario == "breaker" else 4
    return Queue(store, spec.serializer, breaker, name=queue, secret=spec.secret, retries=retries)


def plan_for(spec: ChildSpec, i: int) -> tasks.Plan:
    if spec.scenario == "retry" and i % 4 == 0:
        return tasks.Plan(fails=1 + i % 3, fn=spec.task_fn, ms=spec.task_ms)
    if spec.scenario == "breaker":
        down_from, down_until = spec.downstream
        return tasks.Plan(
            down_from=down_from, down_until=down_until, fn=spec.task_fn, ms=spec.task_ms
        )
    if spec.scenario == "cancel" and i % 10 == CANCEL_RUNNING:
        # Long enough to be running when another process cancels it.
        return tasks.Plan(fn=spec.task_fn, ms=CANCEL_BODY_MS)
    if spec.scenario == "long":
        # Longer than the lease (2 s by default): only renewal keeps the claim.
        return tasks.Plan(fn=spec.task_fn, ms=2500 + i * 7919 % 1500)
    return tasks.Plan(fn=spec.task_fn, ms=spec.task_ms)


def delay_for(spec: ChildSpec, i: int) -> float | None:
    if spec.scenario == "cancel" and i % 10 == CANCEL_WAITING:
        return CANCEL_DELAY_S  # still waiting when another process cancels it
    if spec.scenario == "deferred" and i % 2 == 0:
        return 0.1 + (i * 7919 % 400) / 1000  # 0.1 .. 0.5 s
    return None


async def submit_share(spec: ChildSpec, queues: list[Queue], ledger: LedgerWriter) -> None:
    funcs: dict[tuple[tasks.Plan, bool], Any] = {}

    def fn_for(i: int) -> Any:
        is_async, plan = i % 2 == 0, plan_for(spec, i)
        if spec.task_kind == "module":
            return tasks.module_task_async if is_async else tasks.module_task
        key = (plan, is_async)
        if key not in funcs:
            funcs[key] = tasks.closure_task(spec.salt, plan, is_async)
        return funcs[key]

    mark = tasks.marker(spec.marker)
    starts = range(spec.first, spec.last, spec.batch)
    for n, start in enumerate(starts):
        if spec.scenario == "breaker":
            # Spread the share over PACE_S so tasks are still flowing when the outage begins.
            await asyncio.sleep(max(0.0, spec.start_at + PACE_S * n / len(starts) - time.time()))
        elif n:
            # An idle stretch between batches: workers run dry and block in wait(), and the
            # next batch must wake them.
            await asyncio.sleep(IDLE_GAP_S)
        idx = range(start, min(start + spec.batch, spec.last))
        specs: list[list[TaskSpec]] = [[] for _ in queues]
        rows = []
        for i in idx:
            plan = plan_for(spec, i)
            args: tuple[Any, ...] = (i,) if spec.task_kind == "closure" else (i, spec.salt, plan)
            delay = delay_for(spec, i)
            # Mixed priorities in every batch: the ordering check reads them back.
            priority = i % 3
            task_id = f"{spec.namespace}-{i}"
            specs[i % len(queues)].append(
                TaskSpec(fn_for(i), (*args, mark), task_id=task_id, delay=delay, priority=priority)
            )
            rows.append(
                {
                    "id": task_id,
                    "x": tasks.value_for(i, spec.salt, plan),
                    "d": delay or 0.0,
                    "f": plan.fails,
                    "r": priority,
                    "b": n,
                }
            )
        ledger.write_many(Ev.INTENT, [{"id": r["id"]} for r in rows])
        accepted: set[str] = set()
        for q, batch in zip(queues, specs, strict=True):
            if batch:
                accepted |= await submit_with_retry(q, batch)
        ledger.write_many(Ev.SUBMITTED, [r for r in rows if r["id"] in accepted])
    ledger.write(Ev.SUBMIT_DONE)


async def wait_for_store(store: Store, within: float = 30.0) -> None:
    """A replacement may start while the server restarts: wait for it, within bounds."""
    deadline = time.monotonic() + within
    while True:
        try:
            await store.ping()
            return
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def wait_for_peers(spec: ChildSpec, within: float = 30.0) -> None:
    """Submit only once every planned process has started (its ledger holds its first
    record): a process that started early would otherwise run its own first batch alone,
    and pickups would not be spread by chance, which the cross-process check relies on."""
    folder, deadline = Path(spec.ledger_dir), time.monotonic() + within
    paths = [folder / f"p{i}.jsonl" for i in range(spec.peers)]
    while time.monotonic() < deadline:
        if all(p.exists() and p.stat().st_size > 0 for p in paths):
            return
        await asyncio.sleep(0.01)


async def submit_with_retry(q: Queue, specs: list[TaskSpec]) -> set[str]:
    """Submit a batch, retrying while the store is unreachable. Ids are unique to this run,
    so an id reported as a duplicate on a retry was stored by the attempt whose reply was
    lost: it counts as accepted."""
    for attempt in range(200):
        try:
            handles = await q.submit_many(specs)
        except StoreUnavailable:
            await asyncio.sleep(min(1.0, 0.05 * (attempt + 1)))
            continue
        return {h.id for h in handles if h.accepted or attempt > 0}
    raise StoreUnavailable("store unreachable for too long while submitting")


async def work(spec: ChildSpec, q: Queue, ledger: LedgerWriter) -> None:
    if spec.scenario == "cron":
        # Every worker process registers the schedule; the store keeps one task per tick.
        q.periodic(
            tasks.tick_task,
            every=tasks.TICK_EVERY_S,
            name=tasks.TICK_NAME,
            lookahead=tasks.TICK_LOOKAHEAD_S,
        )

    def on_fail(ev: TaskEvent) -> None:
        if not ev.will_retry:
            ledger.write(Ev.DEAD, id=ev.task_id, a=ev.attempt, err=ev.error)

    def on_stale(ev: TaskEvent) -> None:
        ledger.write(Ev.STALE, id=ev.task_id, k=ev.token)

    def on_release(ev: TaskEvent) -> None:
        ledger.write(Ev.RELEASED, id=ev.task_id, k=ev.token)

    def on_lapse(ev: TaskEvent) -> None:
        ledger.write(Ev.LAPSED, id=ev.task_id, k=ev.token, l=round(ev.duration, 4))

    worker = Worker(
        q,
        concurrency=spec.concurrency,
        lease=spec.lease,
        retry=RETRY_POLICY,
        on_fail=[on_fail],
        on_stale=[on_stale],
        on_release=[on_release],
        on_lapse=[on_lapse],
        # Shorter than a long task, so a graceful stop mid-run hands claims back (release).
        shutdown_timeout=min(5.0, spec.lease / 2),
        recover_interval=min(1.0, spec.lease / 4),
    )
    stopper = asyncio.create_task(stop_on(STOPPING, worker))
    stats = await worker.run()
    stopper.cancel()
    ledger.write(Ev.STATS, **dataclasses.asdict(stats))


async def stop_on(event: asyncio.Event, worker: Worker) -> None:
    await event.wait()
    worker.stop()


STOPPING = asyncio.Event()


async def child_async(spec: ChildSpec) -> None:
    # The harness ends the run with SIGTERM, a graceful stop that releases unfinished claims.
    # Installed first, so a process that is still starting up is stopped gracefully too.
    # (Not a multiprocess Event: notifying one blocks on waiters that were killed or stopped.)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, STOPPING.set)
    ledger = LedgerWriter(Path(spec.ledger_dir) / f"p{spec.index}.jsonl")
    tasks.LEDGER = ledger
    store = build_store(spec.store, spec.server_url, spec.namespace, spec.result_ttl, spec.dead_ttl)
    queues = [build_queue(spec, store, ledger, name) for name in spec.queues]
    await wait_for_store(store)
    ledger.write(Ev.HELLO, i=spec.index, submits=spec.submits, works=spec.works)
    watcher = asyncio.create_task(stalls.watch_loop(ledger))
    if spec.scenario == "breaker" and spec.submits:
        spec = await after_every_peer_started(spec)
    try:
        jobs = []
        if spec.works:
            jobs = [asyncio.create_task(work(spec, q, ledger)) for q in queues]
        if spec.submits:
            await wait_for_peers(spec)
            if spec.scenario == "cron":
                ledger.write(Ev.SUBMIT_DONE)  # the schedulers submit; --tasks counts ticks
            else:
                await submit_share(spec, queues, ledger)
            if spec.scenario == "cancel":
                await cancel_targets(spec, queues, ledger)
        await asyncio.gather(*jobs)
    finally:
        watcher.cancel()
        for q in queues:
            if q.breaker is not None:
                await q.breaker.aclose()
        await store.aclose()
        ledger.write(Ev.BYE)


async def after_every_peer_started(spec: ChildSpec, within: float = 60.0) -> ChildSpec:
    """The breaker scenario's outage must fall while tasks flow. On a loaded machine the
    processes may start later than planned, so the pacing and the outage move to just after
    the last peer said hello: every submitter reads the same hellos and so agrees."""
    deadline = time.monotonic() + within
    while True:
        hellos = [r["t"] for r in read_all(Path(spec.ledger_dir)) if r["e"] == "hello"]
        if len(hellos) >= spec.peers or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    start_at = max(spec.start_at, max(hellos, default=0.0) + 0.5)
    shift = start_at - spec.start_at
    down_from, down_until = spec.downstream
    return dataclasses.replace(
        spec, start_at=start_at, downstream=(down_from + shift, down_until + shift)
    )


def child_main(spec: ChildSpec) -> None:
    logging.basicConfig(
        filename=str(Path(spec.ledger_dir).parent / f"p{spec.index}.log"),
        level=logging.WARNING,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    try:
        asyncio.run(child_async(spec))
    except BaseException:
        # The harness shows this inline in its failure (harness.crashes).
        crash = Path(spec.ledger_dir).parent / f"crash-p{spec.index}.txt"
        crash.write_text(traceback.format_exc())
        raise
    # Closing the loop restored SIGTERM's default action; a stop arriving while this
    # process exits must not turn a clean exit into a death by signal.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
