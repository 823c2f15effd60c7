"""The ledger's vocabulary, defined once: every event kind a process writes, and the short
field names its records carry (the ledger is written per task, so names stay short)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


class Ev(StrEnum):
    HELLO = "hello"  # a process started: i (index), submits, works
    INTENT = "int"  # about to submit task id
    SUBMITTED = "sub"  # the store accepted id: x (expected value), d (delay s), f (planned
    #                    failures), r (priority), b (enqueue batch number)
    SUBMIT_DONE = "subdone"  # this process has submitted its whole share
    RUN = "run"  # a body started: id, a (attempt), k (fencing token), c (claim sent, wall s)
    ERROR = "err"  # a planned failure: id, a, k
    OK = "ok"  # a body returned: id, a, k, v (value)
    DEAD = "dead"  # the worker's hook saw the task die: id, a, err
    STALE = "stale"  # a settlement was refused as stale: id, k
    RELEASED = "rel"  # the worker handed a claim back unfinished (breaker, stop): id, k
    LAPSED = "lapse"  # the worker's lease on claim k ran out by its own clock: id, k, l
    #                   (how late its renewal or settlement was confirmed, s)
    STALL = "stall"  # this process's event loop ran late over [s, u] (harness.stalls)
    SERVER_STALL = "sstall"  # the store's server answered a PING late over [s, u]
    CALL = "call"  # a downstream call of the breaker scenario: id, k, ok
    BREAKER_OPEN = "bopen"  # this process's breaker tripped
    PROBE = "probe"  # a half-open probe was granted here
    BREAKER_CONFIG = "bcfg"  # a breaker's options and clock domain (recording.py)
    BREAKER_DECISION = "bdec"  # a breaker decision on the breaker's own clock (recording.py)
    CANCEL = "cancel"  # another process cancelled id: ok (acknowledged: it was not finished)
    #                    w (waiting or running when cancelled, as planned), t after the ack
    STATS = "stats"  # the worker's own counters at its end
    BYE = "bye"  # the process is exiting normally


class Record(TypedDict, total=False):
    """One ledger line. `e`, `p` (pid) and `t` (wall clock, s) are on every record; the
    others depend on `e` (see `Ev`)."""

    e: str
    p: int
    t: float
    id: str
    a: int
    k: int
    c: float
    x: object
    v: object
    d: float
    f: int
    r: int
    b: int
    ok: bool
    err: str
    i: int
    submits: bool
    works: bool
    released: int  # STATS carries every WorkerStats counter; these are read back
    store_errors: int
    lapsed: int
    l: float  # noqa: E741 -- LAPSED: how late, s
    s: float  # STALL, SERVER_STALL: the interval lost
    u: float
