"""Stalls the harness sees for itself: a worker process's event loop running late (its own
ticker), and the store's server answering late (the parent's pings on a connection of its
own). A lease a worker could not hold explains a rerun only with such evidence: a store
that merely answers its renewals late, on a machine that never stalled, explains nothing.

Records: `stall` (a worker's loop was late) and `sstall` (the server was late), each with
`s` and `u`, the wall-clock interval that was lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import defaultdict

from harness.events import Ev, Record
from harness.ledger import LedgerWriter
from kew_plug.backends.redis.pipe import Pipe

TICK_S = 0.05
# Delays shorter than this are noise; any longer one is recorded, so that evidence of a
# long stall is never missed between two ticks.
RECORD_S = 0.025


async def watch_loop(ledger: LedgerWriter) -> None:
    """Until cancelled: record each stretch in which this process's event loop ran late."""
    while True:
        before, wall = time.monotonic(), time.time()
        await asyncio.sleep(TICK_S)
        late = time.monotonic() - before - TICK_S
        if late >= RECORD_S:
            ledger.write(Ev.STALL, s=wall + TICK_S, u=wall + TICK_S + late)


async def ping_server(url: str, out: list[Record], stop: asyncio.Event) -> None:
    """Until `stop`: record each PING of the server that took longer than RECORD_S (a plain
    redis:// or unix:// server; a cluster's nodes are not watched). Stopped by an event,
    not a cancellation, which a client library may swallow mid-command."""
    if not url.startswith(("redis://", "unix://")):
        return
    # The lean connection: one socket, closed for sure by aclose() (no ResourceWarning when
    # the loop ends), and a watchdog that fails a PING no answer comes to.
    try:
        client = Pipe(url, timeout=60)
    except ValueError:
        return  # a URL the lean connection does not speak: no evidence from the server
    try:
        while not stop.is_set():
            wall, sent = time.time(), time.monotonic()
            with contextlib.suppress(Exception):  # a restart fault: evidence, not an error
                await client.execute("PING")
            took = time.monotonic() - sent
            if took >= RECORD_S:
                stall: Record = {"e": Ev.SERVER_STALL, "p": os.getpid(), "t": wall}
                stall["s"], stall["u"] = wall, wall + took
                out.append(stall)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)
    finally:
        await client.aclose()


class Evidence:
    """Stalls by process, and the server's, to weigh against a window of time."""

    def __init__(self, records: list[Record]) -> None:
        self.by_pid: dict[int, list[tuple[float, float]]] = defaultdict(list)
        self.server: list[tuple[float, float]] = []
        for r in records:
            if r["e"] == Ev.STALL:
                self.by_pid[r["p"]].append((float(r["s"]), float(r["u"])))
            elif r["e"] == Ev.SERVER_STALL:
                self.server.append((float(r["s"]), float(r["u"])))

    def lost(self, pid: int, start: float, end: float) -> float:
        """Seconds within [start, end] in which process `pid` or the server was stalled.
        Either delays a renewal, so their times add up; a stretch in which both stalled
        (a machine stall stops both) counts once."""
        return _covered([*self.by_pid.get(pid, []), *self.server], start, end)


def _covered(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """Length of the union of `intervals` within [start, end]."""
    total, reach = 0.0, start
    for s, u in sorted(intervals):
        s, u = max(s, reach), min(u, end)
        if u > s:
            total += u - s
            reach = u
    return total


def lapse_window(record: Record, lease: float) -> tuple[float, float]:
    """From when the lapsed lease last began to when its worker heard of the lapse."""
    heard = float(record["t"])
    late = float(record.get("l", 0.0))
    return heard - late - lease, heard
