"""Runs one harness pass: owns the servers, spawns the processes, watches the ledgers, stops
the workers once the run has drained, then checks ledgers and store."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import multiprocess

from harness.checks import evaluate
from harness.child import LONG_BODY_MAX_S, ChildSpec, build_store, child_main, ttl_bounds
from harness.config import CLUSTER, ConfigError, RunConfig
from harness.crashes import crash_reports
from harness.drain import Progress, watch
from harness.events import Ev, Record
from harness.faults import (
    Injector,
    drop_all_clients,
    failover_in_thread,
    plan_faults,
    restart_in_thread,
)
from harness.ledger import read_all, read_one
from harness.report import report_data
from harness.stalls import ping_server
from harness.storefacts import keys_per_node, store_facts
from kew_plug.errors import KewError, StoreUnavailable
from kew_plug.interfaces import Store
from kew_plug.registry import URL_SCHEMES

QUEUE = "harness"


def queue_names(count: int) -> list[str]:
    """The run's queues; on a cluster their names spread them over the primaries."""
    return [QUEUE] if count == 1 else [f"{QUEUE}-{k}" for k in range(count)]


BREAKER_OPTIONS = {"failure_threshold": 5, "reset_timeout": 0.3, "half_open_max_calls": 1}
MEMORY_WARNING = (
    "--store memory keeps tasks in each process's own memory: a task submitted in one "
    "process cannot be seen, let alone run, by another. This was kew's bug before payloads "
    "moved into Redis. Running anyway, with --roles split, to demonstrate the failure."
)


@dataclass
class Report:
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    workdir: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.data["ok"])


class _Servers:
    """The store servers this run owns (and so may stop and restart)."""

    def __init__(self) -> None:
        self.embedded: Any = None
        self.redis: Any = None
        self.cluster: Any = None

    def url_for(self, cfg: RunConfig) -> str | None:
        """The server URL of this run: an existing --redis-url, or a server it starts."""
        if cfg.store == "memory" or cfg.store.startswith(URL_SCHEMES):
            return None
        if cfg.redis_url:
            return _with_replicas(cfg.redis_url, cfg.replicas)
        if cfg.store == CLUSTER:
            from harness.cluster import LocalCluster

            try:
                self.cluster = LocalCluster().start()
            except FileNotFoundError as e:
                raise ConfigError(f"{e}; or pass --redis-url redis+cluster://host:port") from e
            return _with_replicas(str(self.cluster.url), cfg.replicas)
        if cfg.store == "redis":
            from harness.servers import RedisServer

            try:
                self.redis = RedisServer(durable=True).start()
            except FileNotFoundError as e:
                raise ConfigError(f"{e}; or pass --redis-url redis://host:port/db") from e
            return str(self.redis.url)
        from harness.embedded import EmbeddedProcess

        self.embedded = EmbeddedProcess().start()  # fakeredis, and package.module:factory
        return str(self.embedded.url)

    def pids(self) -> list[int]:
        """The server processes a freeze stops (a cluster's nodes are left running)."""
        pids = [
            self.embedded.pid if self.embedded else None,
            self.redis.pid if self.redis else None,
        ]
        return [p for p in pids if p is not None]

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
        if self.redis is not None:
            self.redis.close()
        if self.cluster is not None:
            self.cluster.close()


def _with_replicas(url: str, replicas: int) -> str:
    if not replicas:
        return url
    return f"{url}{'&' if '?' in url else '/?'}replicas={replicas}"


def run(config: RunConfig | None = None, **overrides: Any) -> Report:
    """Run the harness and return its report (also usable from a user's pytest suite)."""
    cfg = replace(config or RunConfig(), **overrides).resolve()
    return asyncio.run(arun(cfg))


async def arun(cfg: RunConfig, on_progress: Callable[[Progress], None] | None = None) -> Report:
    cfg = cfg.resolve()  # a no-op for a configuration already resolved
    notes: list[str] = []
    if cfg.store == "memory" and cfg.procs > 1:
        notes.append(MEMORY_WARNING)
        cfg = replace(cfg, roles="split")
    servers = _Servers()
    workdir = Path(tempfile.mkdtemp(prefix="kew-harness-"))
    try:
        url = servers.url_for(cfg)
        return await _run(cfg, url, workdir, notes, on_progress, servers)
    finally:
        servers.stop()
        if not cfg.keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def _connect(cfg: RunConfig, url: str | None, namespace: str) -> Store:
    try:
        store = build_store(cfg.store, url, namespace, cfg.result_ttl, cfg.dead_ttl)
    except KewError as e:
        raise ConfigError(str(e)) from e
    try:
        await store.ping()
    except StoreUnavailable as e:
        await store.aclose()
        raise ConfigError(str(e)) from e
    return store


def _plan_children(run: _Run) -> list[ChildSpec]:
    cfg = run.cfg
    if cfg.roles == "mixed":
        roles = [(True, True)] * cfg.procs
    else:
        submitters = max(1, cfg.procs // 2)
        roles = [(True, False)] * submitters + [(False, True)] * (cfg.procs - submitters)
    n_sub = sum(1 for s, _ in roles if s)
    bounds = [cfg.tasks * k // n_sub for k in range(n_sub + 1)]
    start_at = time.time() + 1.0  # after every child has had time to start
    breaker_scenario = cfg.scenario == "breaker"
    downstream = (start_at + 1.0, start_at + 2.0) if breaker_scenario else (0.0, 0.0)
    batch = 10 if breaker_scenario else cfg.batch
    specs, k = [], 0
    for index, (submits, works) in enumerate(roles):
        first, last = (bounds[k], bounds[k + 1]) if submits else (0, 0)
        k += submits
        specs.append(
            ChildSpec(
                index=index,
                submits=submits,
                works=works,
                store=cfg.store,
                server_url=run.url,
                namespace=run.namespace,
                queues=tuple(queue_names(cfg.queues)),
                serializer=cfg.serializer,
                breaker=cfg.breaker,
                secret=run.secret,
                ledger_dir=str(run.ledger_dir),
                first=first,
                last=last,
                salt=cfg.seed * 7919 + index,
                task_kind=cfg.task_kind,
                task_fn=cfg.task or "",
                task_ms=cfg.body_ms,
                scenario=cfg.scenario,
                concurrency=cfg.concurrency,
                lease=cfg.lease_s,
                batch=batch,
                breaker_options=dict(BREAKER_OPTIONS),
                downstream=downstream,
                start_at=start_at,
                marker=run.pattern,
                peers=len(roles),
                cancels_of=(k - submits + 1) % n_sub if submits else 0,
                result_ttl=cfg.result_ttl,
                dead_ttl=cfg.dead_ttl,
            )
        )
    return specs


@dataclass
class _Run:
    """One run's moving parts, shared by the steps below."""

    cfg: RunConfig
    url: str | None
    namespace: str
    ledger_dir: Path
    secret: str
    pattern: bytes
    procs: list[Any] = field(default_factory=list)
    by_pid: dict[int, ChildSpec] = field(default_factory=dict)
    # Pids of submitters known to have submitted their share: once said, it stays said, so
    # only the others' ledgers are read again (each read parses a whole ledger; reading all
    # of them on every tick of a 20,000-task run cost seconds per tick).
    submitted: set[int] = field(default_factory=set)

    def spawn(self, spec: ChildSpec) -> None:
        p = multiprocess.get_context("spawn").Process(target=child_main, args=(spec,), daemon=True)
        p.start()
        self.procs.append(p)
        self.by_pid[p.pid] = spec

    def replace_worker(self, victim: Any) -> None:
        old = self.by_pid[victim.pid]
        self.spawn(dataclasses.replace(old, index=len(self.procs), submits=False, works=True))

    def victims(self) -> list[Any]:
        # Workers only, and only once they have submitted their share: a kill must not
        # make tasks vanish that were never accepted.
        live = [p for p in self.procs if p.is_alive() and self.by_pid[p.pid].works]
        unsure = [p for p in live if self.by_pid[p.pid].submits and p.pid not in self.submitted]
        if unsure:
            paths = [self.ledger_dir / f"p{self.by_pid[p.pid].index}.jsonl" for p in unsure]
            self.submitted |= pids_that_said(self.ledger_dir, Ev.SUBMIT_DONE, paths)
        return [p for p in live if not self.by_pid[p.pid].submits or p.pid in self.submitted]

    def stop_victims(self) -> list[Any]:
        """Workers whose own submitted tasks have all finished: a graceful stop then costs
        nothing even on a store that is not shared (whose tasks would die with it), so it
        tests release() without adding a loss of its own."""
        records = read_all(self.ledger_dir)
        done = {r["id"] for r in records if r["e"] in (Ev.OK, Ev.DEAD)}
        open_by: set[int] = {
            r["p"] for r in records if r["e"] == Ev.SUBMITTED and r["id"] not in done
        }
        return [p for p in self.victims() if p.pid not in open_by]


async def _run(
    cfg: RunConfig,
    url: str | None,
    workdir: Path,
    notes: list[str],
    on_progress: Callable[[Progress], None] | None,
    servers: _Servers,
) -> Report:
    namespace = cfg.namespace or f"kh{uuid.uuid4().hex[:10]}"
    ledger_dir = workdir / "ledger"
    ledger_dir.mkdir()
    store = await _connect(cfg, url, namespace)
    # Every run signs its payloads with a fresh key and marks them with a fresh pattern.
    run = _Run(cfg, url, namespace, ledger_dir, secrets.token_hex(32), secrets.token_bytes(8))
    injector = _injector(run, servers)
    started = time.monotonic()
    specs = _plan_children(run)
    for spec in specs:
        run.spawn(spec)
    server_stalls: list[Record] = []
    pinging = asyncio.Event()
    pinger = asyncio.create_task(ping_server(url, server_stalls, pinging)) if url else None
    try:
        watched = await watch(
            store=store,
            queues=queue_names(cfg.queues),
            tasks=cfg.tasks,
            timeout=cfg.timeout,
            submitters=sum(1 for s in specs if s.submits),
            procs=run.procs,
            ledger_dir=ledger_dir,
            injector=injector,
            on_progress=on_progress,
            longest_body=LONG_BODY_MAX_S if cfg.scenario == "long" else cfg.body_ms / 1000,
            ticks=cfg.scenario == "cron",
        )
    finally:
        injector.heal()
        pinging.set()
        if pinger is not None:
            # Healed above, so the server answers: the last PING ends within a tick.
            done, _ = await asyncio.wait({pinger}, timeout=10)
            if not done:
                pinger.cancel()
    wall = time.monotonic() - started
    _stop_all(run, notes, deadline=started + wall + 15)
    records = read_all(ledger_dir) + server_stalls
    facts = await store_facts(
        store,
        url=url,
        namespace=namespace,
        queues=queue_names(cfg.queues),
        records=records,
        serializer=cfg.serializer,
        secret=run.secret,
        pattern=run.pattern,
        bounds=ttl_bounds(cfg.store, cfg.result_ttl, cfg.dead_ttl),
    )
    per_node = await keys_per_node(store)
    verdict = evaluate(
        records,
        facts,
        roles=cfg.roles,
        scenario=cfg.scenario,
        lease=cfg.lease_s,
        concurrency=cfg.concurrency,
        queues=cfg.queues,
        procs=cfg.procs,
        faults=injector.log,
        breaker=cfg.breaker,
        breaker_options=BREAKER_OPTIONS,
    )
    failures = verdict.failures
    if watched.timed_out:
        failures.insert(0, f"invalid run: not drained within --timeout {cfg.timeout:g} s")
    failures += crash_reports(run.procs, run.by_pid, records, injector.killed, workdir)
    if not cfg.keep:
        for name in queue_names(cfg.queues):
            await store.purge(name)
    await store.aclose()
    data = report_data(cfg, wall, watched.progress.completed, verdict, injector.log, per_node)
    data["failures"] = failures
    data["ok"] = not failures and watched.drained
    if cfg.html:
        from harness.html import write

        write(cfg.html, data, records)
    return Report(data, notes, str(workdir) if cfg.keep else None)


def _injector(run: _Run, servers: _Servers) -> Injector:
    cfg, url = run.cfg, run.url
    return Injector(
        plan_faults(cfg.faults, cfg.seed, cfg.lease_s),
        cfg.seed,
        run.victims,
        run.replace_worker,
        (lambda: restart_in_thread(servers.redis)) if servers.redis is not None else None,
        (lambda: drop_all_clients(url)) if url is not None else None,
        (lambda: failover_in_thread(servers.cluster, queue_names(cfg.queues)[0], cfg.failover_lag))
        if servers.cluster is not None
        else None,
        run.stop_victims,
        lambda: [p.pid for p in run.procs if p.is_alive()] + servers.pids(),
    )


def _stop_all(run: _Run, notes: list[str], deadline: float) -> None:
    """SIGTERM every process still running (a graceful stop), then SIGKILL stragglers."""
    finished = pids_that_said(run.ledger_dir, Ev.BYE)
    for p in run.procs:
        if p.is_alive() and p.pid not in finished:
            os.kill(p.pid, signal.SIGTERM)
    for p in run.procs:
        p.join(max(1.0, deadline - time.monotonic()))
    for p in run.procs:
        if p.is_alive() and p.pid is not None:
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
            notes.append(f"process {p.pid} did not stop within 15 s and was killed")


def pids_that_said(ledger_dir: Path, event: Ev, paths: list[Path] | None = None) -> set[int]:
    """Pids whose ledger holds `event` (each ledger file belongs to one process); only the
    ledgers in `paths`, if given."""
    pids = set()
    for path in ledger_dir.glob("*.jsonl") if paths is None else paths:
        if not path.exists():
            continue
        for r in read_one(path):
            if r["e"] == event:
                pids.add(r["p"])
                break
    return pids
