"""Runs one harness pass: owns the servers, spawns the processes, watches the ledgers, stops
the workers once the run has drained, then checks ledgers and store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
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

from harness.checks import StoreFacts, evaluate
from harness.child import ChildSpec, build_store, child_main
from harness.config import CLUSTER, ConfigError, RunConfig
from harness.faults import (
    Injector,
    drop_all_clients,
    failover_in_thread,
    plan_faults,
    restart_in_thread,
)
from harness.ledger import LedgerTail, read_all
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
class Progress:
    submitted: int = 0
    completed: int = 0
    dead: int = 0
    executed: int = 0


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
    cfg = replace(config or RunConfig(), **overrides)
    cfg.validate()
    return asyncio.run(arun(cfg))


async def arun(cfg: RunConfig, on_progress: Callable[[Progress], None] | None = None) -> Report:
    cfg.validate()
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


async def _connect(spec: str, url: str | None, namespace: str) -> Store:
    try:
        store = build_store(spec, url, namespace)
    except KewError as e:
        raise ConfigError(str(e)) from e
    try:
        await store.ping()
    except StoreUnavailable as e:
        await store.aclose()
        raise ConfigError(str(e)) from e
    return store


def _plan_children(
    cfg: RunConfig, url: str | None, namespace: str, ledger_dir: Path, secret: str
) -> list[ChildSpec]:
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
                server_url=url,
                namespace=namespace,
                queues=tuple(queue_names(cfg.queues)),
                serializer=cfg.serializer,
                breaker=cfg.breaker,
                secret=secret,
                ledger_dir=str(ledger_dir),
                first=first,
                last=last,
                salt=cfg.seed * 7919 + index,
                task_kind=cfg.task_kind,
                task_fn=cfg.task or "",
                task_ms=cfg.task_ms,
                scenario=cfg.scenario,
                concurrency=cfg.concurrency,
                lease=cfg.lease,
                batch=batch,
                breaker_options=dict(BREAKER_OPTIONS),
                downstream=downstream,
                start_at=start_at,
                peers=len(roles),
            )
        )
    return specs


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
    store = await _connect(cfg.store, url, namespace)
    ctx = multiprocess.get_context("spawn")
    secret = secrets.token_hex(32)  # every run signs its payloads with a fresh key
    specs = _plan_children(cfg, url, namespace, ledger_dir, secret)
    procs: list[Any] = []
    by_pid: dict[int, ChildSpec] = {}

    def spawn(spec: ChildSpec) -> None:
        p = ctx.Process(target=child_main, args=(spec,), daemon=True)
        p.start()
        procs.append(p)
        by_pid[p.pid] = spec

    def replace_worker(victim: Any) -> None:
        old = by_pid[victim.pid]
        spawn(dataclasses.replace(old, index=len(procs), submits=False, works=True))

    def victims() -> list[Any]:
        # Workers only, and only once they have submitted their share: a kill must not
        # make tasks vanish that were never accepted.
        done = _said(ledger_dir, "subdone")
        return [
            p
            for p in procs
            if p.is_alive() and by_pid[p.pid].works and (not by_pid[p.pid].submits or p.pid in done)
        ]

    injector = Injector(
        plan_faults(cfg.faults, cfg.seed, cfg.lease),
        cfg.seed,
        victims,
        replace_worker,
        (lambda: restart_in_thread(servers.redis)) if servers.redis is not None else None,
        (lambda: drop_all_clients(url)) if url is not None else None,
        (lambda: failover_in_thread(servers.cluster, queue_names(cfg.queues)[0], cfg.failover_lag))
        if servers.cluster is not None
        else None,
    )
    started = time.monotonic()
    for spec in specs:
        spawn(spec)
    try:
        progress, drained, timed_out = await _watch(
            cfg, store, procs, specs, ledger_dir, on_progress, injector
        )
    finally:
        injector.heal()
    wall = time.monotonic() - started
    finished = _said(ledger_dir, "bye")
    for p in procs:
        if p.is_alive() and p.pid not in finished:
            os.kill(p.pid, signal.SIGTERM)  # workers stop gracefully
    for p in procs:
        p.join(max(1.0, 15 - (time.monotonic() - started - wall)))
    for p in procs:
        if p.is_alive() and p.pid is not None:
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
            notes.append(f"process {p.pid} did not stop within 15 s and was killed")
    records = read_all(ledger_dir)
    facts = await _store_facts(store, namespace, records, cfg, secret)
    per_node = await _keys_per_node(store, namespace)
    verdict = evaluate(
        records,
        facts,
        roles=cfg.roles,
        scenario=cfg.scenario,
        lease=cfg.lease,
        killed_pids=frozenset(injector.killed),
        breaker=cfg.breaker,
        breaker_options=BREAKER_OPTIONS,
    )
    failures = verdict.failures
    if timed_out:
        failures.insert(0, f"invalid run: not drained within --timeout {cfg.timeout:g} s")
    # SIGTERM is the harness's own stop. It kills by default only a process still starting
    # up (its handler comes first, before any store access), which has done no work.
    started_up = {r["p"] for r in records if r["e"] == "hello"}
    crashed = {
        p.pid: p.exitcode
        for p in procs
        if p.exitcode not in (0, None)
        and p.pid not in injector.killed
        and not (p.exitcode == -signal.SIGTERM and p.pid not in started_up)
    }
    if crashed:
        failures.append(
            f"processes exited abnormally (pid: exit code): {crashed} (see {workdir}/p*.log)"
        )
    if not cfg.keep:
        for name in queue_names(cfg.queues):
            await store.purge(name)
    await store.aclose()
    completed = progress.completed
    data: dict[str, Any] = {
        "ok": not failures and drained,
        "tasks": cfg.tasks,
        "procs": cfg.procs,
        "store": cfg.store,
        "serializer": cfg.serializer,
        "breaker": cfg.breaker,
        "roles": cfg.roles,
        "scenario": cfg.scenario,
        "faults": cfg.faults,
        "queues": cfg.queues,
        "replicas": cfg.replicas,
        "failover_lag": cfg.failover_lag,
        "seed": cfg.seed,
        "wall_s": round(wall, 3),
        "tasks_per_s": round(completed / wall, 1) if wall else 0.0,
        "checks": verdict.checks,
        "per_process": verdict.per_process,
        "failures": failures,
        "fault_log": injector.log,
        "keys_per_node": per_node,
        **verdict.details,
    }
    return Report(data, notes, str(workdir) if cfg.keep else None)


def _said(ledger_dir: Path, event: str) -> set[int]:
    """Pids whose ledger holds `event` (each ledger file belongs to one process)."""
    pids = set()
    for path in ledger_dir.glob("*.jsonl"):
        data = path.read_bytes()
        if f'"e":"{event}"'.encode() in data:
            pids.add(int(json.loads(data.split(b"\n", 1)[0])["p"]))
    return pids


async def _watch(
    cfg: RunConfig,
    store: Store,
    procs: list[Any],
    specs: list[ChildSpec],
    ledger_dir: Path,
    on_progress: Callable[[Progress], None] | None,
    injector: Injector,
) -> tuple[Progress, bool, bool]:
    """Follow the ledgers until every accepted task reached an end and the store is empty."""
    tail, progress = LedgerTail(ledger_dir), Progress()
    accepted: set[str] = set()
    finished: set[str] = set()
    submitters_done = 0
    n_submitters = sum(1 for s in specs if s.submits)
    deadline = time.monotonic() + cfg.timeout
    last_change, stall_limit = time.monotonic(), (2.0 if not store.shared else None)
    while True:
        changed = False
        for r in tail.poll():
            changed = True
            e = r["e"]
            if e == "sub":
                accepted.add(r["id"])
            elif e in ("ok", "dead"):
                finished.add(r["id"])
            elif e == "run":
                progress.executed += 1
            elif e == "subdone":
                submitters_done += 1
        progress.submitted, progress.completed = len(accepted), len(finished & accepted)
        if on_progress is not None:
            on_progress(progress)
        now = time.monotonic()
        if changed:
            last_change = now
        await injector.tick(progress.completed / max(1, cfg.tasks))
        healed = not injector.busy
        if healed and submitters_done == n_submitters and store.shared:
            # Drained when the store holds nothing unfinished; whatever the ledgers then
            # lack is lost, which the checker reports.
            try:
                pending = 0
                for name in queue_names(cfg.queues):
                    pending += (await store.stats(name)).pending
            except StoreUnavailable:
                pending = -1  # restarting or dropped: look again on the next tick
            if pending == 0:
                return progress, True, False
        elif healed and submitters_done == n_submitters and accepted <= finished:
            return progress, True, False
        stalled = stall_limit is not None and now - last_change > stall_limit
        if stalled and submitters_done == n_submitters:
            return progress, True, False  # a process-local store: nothing more will come
        if any(p.exitcode not in (None, 0) and p.pid not in injector.killed for p in procs):
            return progress, False, False  # reported as an abnormal exit by the caller
        if now > deadline:
            return progress, False, True
        await asyncio.sleep(0.05)


async def _store_facts(
    store: Store, namespace: str, records: list[dict[str, Any]], cfg: RunConfig, secret: str
) -> StoreFacts:
    if not store.shared:
        return StoreFacts(shared=False)
    names = queue_names(cfg.queues)
    left = 0
    for name in names:
        left += len(await store.payload_ids(name))
    facts = StoreFacts(shared=True, payloads_left=left)
    keys = getattr(store, "keys", None)
    if keys is not None and cfg.store != "memory":
        facts.keys_without_ttl = await _keys_without_ttl(store, namespace, names)
    facts.results = await _read_results(store, records, cfg, secret)
    return facts


async def _keys_per_node(store: Store, namespace: str) -> dict[str, int]:
    """How many of the run's keys each server holds (one entry unless on a cluster)."""
    try:
        return await store.keys_per_node()
    except StoreUnavailable:
        return {}


async def _keys_without_ttl(store: Any, namespace: str, queues: list[str]) -> int:
    live = {key for name in queues for key in store.keys(name).live_structures}
    names = [k.decode() for k in await store.scan(f"{namespace}:*")]
    candidates = [k for k in names if k not in live]
    if not candidates:
        return 0
    async with store.client.pipeline(transaction=False) as pipe:
        for k in candidates:
            pipe.pttl(k)
        ttls = await pipe.execute()
    return sum(1 for t in ttls if t == -1)


async def _read_results(
    store: Store, records: list[dict[str, Any]], cfg: RunConfig, secret: str
) -> dict[str, Any]:
    from kew_plug.queue import Queue

    names = queue_names(cfg.queues)
    by_queue: dict[str, list[str]] = {name: [] for name in names}
    for r in records:
        if r["e"] == "sub":
            # Ids are <namespace>-<i>, and task i went to queue i mod K.
            by_queue[names[int(r["id"].rsplit("-", 1)[1]) % len(names)]].append(r["id"])
    serializer = Queue(store, cfg.serializer, name=QUEUE, secret=secret).serializer
    out: dict[str, Any] = {}
    for name, ids in by_queue.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            recs = await store.get_many(name, chunk)
            for task_id, rec in zip(chunk, recs, strict=True):
                if rec is not None and rec.result is not None:
                    try:
                        # Compared with ledger values, which went through JSON.
                        out[task_id] = json.loads(json.dumps(serializer.loads(rec.result)))
                    except KewError as e:
                        out[task_id] = f"<unreadable result: {e}>"
    return out
