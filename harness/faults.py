"""Fault injection: SIGKILL a worker (a replacement is started), SIGSTOP one past its lease
and SIGCONT it (the zombie), restart the store server the harness owns, drop every client
connection, kill a cluster primary so its replica takes over. Faults fire at points of
progress chosen by the seed; each is logged with its time so the report can say what
happened when."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    kind: str
    at: float  # fraction of tasks completed when it fires
    duration: float = 0.0  # pauses: how long the process stays stopped
    fired: bool = False


def plan_faults(counts: dict[str, int], seed: int, lease: float) -> list[Fault]:
    rng = random.Random(seed)
    faults: list[Fault] = []
    for _ in range(counts.get("kill", 0)):
        faults.append(Fault("kill", rng.uniform(0.05, 0.85)))
    for n in range(counts.get("pause", 0)):
        # Alternate zombies (stopped past the lease) with short stops that must cost nothing.
        long = n % 2 == 0
        faults.append(Fault("pause", rng.uniform(0.05, 0.7), lease * (1.6 if long else 0.3)))
    for _ in range(counts.get("restart", 0)):
        faults.append(Fault("restart", rng.uniform(0.2, 0.7)))
    for _ in range(counts.get("drop", 0)):
        faults.append(Fault("drop", rng.uniform(0.1, 0.8)))
    for _ in range(counts.get("stop", 0)):
        # A graceful stop mid-run: the worker releases what it holds; a replacement starts.
        faults.append(Fault("stop", rng.uniform(0.2, 0.6)))
    for _ in range(counts.get("failover", 0)):
        faults.append(Fault("failover", rng.uniform(0.15, 0.6)))
    for _ in range(counts.get("freeze", 0)):
        # The whole machine stalls (every process of the run and its server) past the lease.
        faults.append(Fault("freeze", rng.uniform(0.2, 0.6), lease * 1.5))
    return sorted(faults, key=lambda f: f.at)


@dataclass
class Injector:
    faults: list[Fault]
    seed: int
    victims: Callable[[], list[Any]]  # live worker processes that may be killed or paused
    replace: Callable[[Any], None]  # start a worker in place of a killed one
    restart_server: Callable[[], Awaitable[None]] | None
    drop_clients: Callable[[], Awaitable[int]] | None
    failover: Callable[[], Awaitable[dict[str, Any]]] | None = None
    stop_victims: Callable[[], list[Any]] | None = None  # those a graceful stop may hit
    # Every process a freeze stops: the run's and its server's. A freeze explains nothing
    # in the checks: what it costs must be explained by what the workers saw themselves.
    everyone: Callable[[], list[int]] | None = None
    started: float = field(default_factory=time.monotonic)
    log: list[dict[str, Any]] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    stopped: set[int] = field(default_factory=set)  # sent SIGTERM mid-run
    paused: dict[int, float] = field(default_factory=dict)  # pid -> resume time

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed + 1)

    @property
    def busy(self) -> bool:
        """Faults still to fire, or a process still stopped: the run has not healed."""
        return any(not f.fired for f in self.faults) or bool(self.paused)

    def _note(self, kind: str, **detail: Any) -> None:
        # `wall` is on the ledgers' clock, so the checker can place faults next to runs.
        self.log.append(
            {
                "kind": kind,
                "t": round(time.monotonic() - self.started, 3),
                "wall": time.time(),
                **detail,
            }
        )

    async def tick(self, fraction: float) -> None:
        now = time.monotonic()
        for pid, resume in list(self.paused.items()):
            if now >= resume:
                os.kill(pid, signal.SIGCONT)
                del self.paused[pid]
                self._note("resume", pid=pid)
        for fault in self.faults:
            if fault.fired or fraction < fault.at:
                continue
            if await self._fire(fault):
                fault.fired = True
                break  # at most one fault per tick, so they spread out
            # It cannot fire yet (no process it may hit): the next may, so faults still land
            # while tasks run instead of queueing behind this one until the work is done.

    async def _fire(self, fault: Fault) -> bool:
        if fault.kind in ("kill", "pause", "stop"):
            pick = self.stop_victims if fault.kind == "stop" and self.stop_victims else self.victims
            candidates = [p for p in pick() if p.pid not in self.paused]
            if not candidates:
                return False
            victim = self.rng.choice(candidates)
            if fault.kind == "kill":
                os.kill(victim.pid, signal.SIGKILL)
                self.killed.add(victim.pid)
                self._note("kill", pid=victim.pid)
                self.replace(victim)
            elif fault.kind == "stop":
                os.kill(victim.pid, signal.SIGTERM)
                self.stopped.add(victim.pid)
                self._note("stop", pid=victim.pid)
                self.replace(victim)
            else:
                os.kill(victim.pid, signal.SIGSTOP)
                self.paused[victim.pid] = time.monotonic() + fault.duration
                self._note("pause", pid=victim.pid, seconds=round(fault.duration, 2))
            return True
        if fault.kind == "freeze" and self.everyone is not None:
            pids = [p for p in self.everyone() if p not in self.paused]
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            resume = time.monotonic() + fault.duration
            self.paused.update(dict.fromkeys(pids, resume))
            self._note("freeze", pids=len(pids), seconds=round(fault.duration, 2))
            return True
        # A restart or failover is noted when it is over, but placed where it began: what it
        # explains (a claim or settlement cut off, a lease run out meanwhile) starts there.
        if fault.kind == "restart" and self.restart_server is not None:
            t, wall = round(time.monotonic() - self.started, 3), time.time()
            await self.restart_server()
            self._note("restart", t=t, wall=wall)
            return True
        if fault.kind == "failover" and self.failover is not None:
            started, t, wall = (
                time.monotonic(),
                round(time.monotonic() - self.started, 3),
                time.time(),
            )
            detail = await self.failover()
            seconds = round(time.monotonic() - started, 2)
            self._note("failover", t=t, wall=wall, seconds=seconds, **detail)
            return True
        if fault.kind == "drop" and self.drop_clients is not None:
            dropped = await self.drop_clients()
            self._note("drop", connections=dropped)
            return True
        return False

    def abandon(self) -> None:
        """The run stopped making progress before these faults' turn came: skip them (a
        stalled run must end and report what it lost, not wait for a fault forever)."""
        for fault in self.faults:
            if not fault.fired:
                fault.fired = True
                self._note("skipped", fault=fault.kind)

    def heal(self) -> None:
        """Resume anything still stopped (a run that ends early must not leave zombies)."""
        for pid in list(self.paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            del self.paused[pid]

    def summary(self) -> dict[str, Any]:
        return {"log": self.log, "killed": sorted(self.killed)}


async def drop_all_clients(url: str) -> int:
    """CLIENT KILL every normal connection (the workers', and ours, which reconnects)."""
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(url)
    try:
        killed: int = await admin.client_kill_filter(_type="normal", skipme=True)
        return killed
    finally:
        await admin.aclose()


async def restart_in_thread(server: Any) -> None:
    await asyncio.to_thread(server.restart)


async def failover_in_thread(cluster: Any, queue: str, lag: float = 0.0) -> dict[str, Any]:
    """Kill the primary serving `queue` (or, if it has no replica left, another primary that
    has one), so a replica takes over: an unplanned failover under load. With `lag`, its
    replica has fallen that many seconds behind when it dies."""

    def go() -> dict[str, Any]:
        import redis
        from redis.crc import key_slot

        slot = key_slot(queue.encode())
        candidates = [port for _, port in cluster.primaries() if cluster.replicas_of(port)]
        if not candidates:
            return {"skipped": "no primary has a live replica"}
        with redis.Redis("127.0.0.1", candidates[0], socket_timeout=2) as r:
            ranges = r.execute_command("CLUSTER", "SLOTS")
        owner = next((int(row[2][1]) for row in ranges if row[0] <= slot <= row[1]), None)
        port = owner if owner in candidates else candidates[0]
        new = cluster.failover(port, how="kill", lag=lag)
        promoted_at = time.monotonic()
        # Restarted, the old primary rejoins as the new one's replica, so a run with
        # replicas=1 can acknowledge writes on that shard again.
        cluster.rejoin(port)
        rejoin_s = round(time.monotonic() - promoted_at, 2)
        return {
            "queue": queue,
            "old_primary": port,
            "new_primary": new,
            "lag_s": lag,
            "rejoin_s": rejoin_s,
        }

    result: dict[str, Any] = await asyncio.to_thread(go)
    return result
