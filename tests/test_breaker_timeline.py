"""Breaker accounting on the breaker's own clock: synthetic ledgers for each rule, then the
harness against a breaker that grants calls while open."""

from __future__ import annotations

import asyncio
import contextvars
import time
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import tasks
from harness.breaker_timeline import analyse
from harness.child import ChildSpec, after_every_peer_started
from harness.ledger import LedgerWriter, read_all
from harness.recording import TRIPPED_MARKER
from kew_plug.context import TaskContext, set_current

A, B = 100, 200  # process ids
RESET_US = 300_000
T0 = 1_700_000_000_000_000  # a server clock, microseconds


def cfg(p: int = A, shared: bool = True, max_calls: int = 1) -> dict[str, Any]:
    return {
        "e": "bcfg", "p": p, "t": 0.0, "c": "q", "sh": shared, "reset_us": RESET_US,
        "max_calls": max_calls, "threshold": 5, "kind": "TestBreaker",
    }  # fmt: skip


def dec(kind: str, at: int, opened: int, p: int = A, shared: bool = True) -> dict[str, Any]:
    return {
        "e": "bdec",
        "p": p,
        "t": 0.0,
        "c": "q",
        "sh": shared,
        "bk": kind,
        "bt": at,
        "bn": opened,
    }


def call(
    at: int, opened: int, p: int = A, ok: bool = True, wall: float = 0.0, **kw: Any
) -> dict[str, Any]:
    fields = {"c": "q", "sh": True, "bk": "granted", "bt": at, "bn": opened, **kw}
    return {"e": "call", "p": p, "t": wall, "id": f"t{at}", "k": 1, "ok": ok, **fields}


def grant_and_call(at: int, opened: int, p: int = A, wall: float = 0.0) -> list[dict[str, Any]]:
    return [dec("granted", at, opened, p), call(at, opened, p, wall=wall)]


def test_a_call_granted_before_the_trip_is_not_while_open_whenever_it_starts() -> None:
    # Granted in process B 1 us before A's failure tripped the circuit; by the wall clocks B's
    # call starts well after A wrote its trip. The old check counted it; it is correct.
    records = [cfg(A), cfg(B), dec("tripped", T0, 1, A)]
    records += grant_and_call(T0 - 1, 0, B, wall=5.0)
    report, failures = analyse(records)
    assert report["calls_while_open"] == 0 and failures == []


def test_a_grant_after_the_trip_counts_even_in_the_same_microsecond() -> None:
    records = [cfg(), dec("tripped", T0, 1)]
    records += grant_and_call(T0, 0, B)  # same microsecond, but it had not seen the trip
    records += grant_and_call(T0, 1, B)  # same microsecond, saw it: open
    records += grant_and_call(T0 + RESET_US - 1, 1, B)  # last microsecond of the open period
    report, failures = analyse(records)
    assert report["calls_while_open"] == 2 and report["grants_while_open"] == 2
    assert failures == [
        "breaker: 2 downstream calls were granted while the circuit was open (2 grants in "
        "all), on the breaker's own clock"
    ]


def test_reset_timeout_after_the_trip_is_half_open_and_one_probe_is_allowed() -> None:
    records = [cfg(), dec("tripped", T0, 1)]
    records += [dec("probe", T0 + RESET_US, 1), call(T0 + RESET_US, 1, bk="probe")]
    records += [dec("closed", T0 + RESET_US + 50, 1)]
    records += grant_and_call(T0 + RESET_US + 60, 1)  # closed again: an ordinary call
    report, failures = analyse(records)
    assert (report["calls_while_open"], report["half_open_probes"]) == (0, 1)
    assert report["probes_per_episode"] == [1] and failures == []


def test_a_second_probe_in_one_episode_fails_whatever_the_breaker_calls_it() -> None:
    records = [cfg(), dec("tripped", T0, 1)]
    records += [dec("probe", T0 + RESET_US + 5, 1, A), dec("granted", T0 + RESET_US + 9, 1, B)]
    report, failures = analyse(records)
    assert report["half_open_probes"] == 2
    assert failures == ["breaker: 2 probes in one half-open episode (at most 1 allowed)"]


def test_a_probe_that_never_reported_expires_and_a_new_one_is_allowed() -> None:
    first = T0 + RESET_US
    records = [cfg(), dec("tripped", T0, 1), dec("probe", first, 1)]
    records += [dec("probe", first + RESET_US - 1, 1)]  # too early: two at once
    report, _ = analyse(records)
    assert report["half_open_probes"] == 2
    records[-1] = dec("probe", first + RESET_US, 1)  # the first has expired
    report, failures = analyse(records)
    assert report["half_open_probes"] == 1 and failures == []


def test_local_breakers_are_judged_per_process_only() -> None:
    # A's circuit is open; B's own circuit is closed, and the clocks of A and B differ.
    records = [cfg(A, shared=False), cfg(B, shared=False)]
    records += [dec("tripped", 5_000, 1, A, shared=False)]
    records += [dec("granted", 5_010, 0, B, shared=False), call(5_010, 0, B, sh=False)]
    report, failures = analyse(records)
    assert report["calls_while_open"] == 0 and failures == []
    records += [dec("granted", 5_020, 1, A, shared=False), call(5_020, 1, A, sh=False)]
    report, failures = analyse(records)
    assert report["calls_while_open"] == 1 and len(failures) == 1


def test_calls_without_decision_times_cannot_pass() -> None:
    records = [cfg(), dec("tripped", T0, 1)]
    records += [{"e": "call", "p": A, "t": 1.0, "id": "x", "k": 1, "ok": True}]
    report, failures = analyse(records)
    assert report["calls_without_decision_time"] == 1
    assert any("does not report Breaker.last_decision" in f for f in failures)


def test_a_circuit_that_never_opens_fails() -> None:
    report, failures = analyse([cfg(), *grant_and_call(T0, 0)])
    assert report["opened"] == 0
    assert failures == ["breaker: the circuit never opened during the downstream outage"]


def test_the_harness_catches_a_breaker_that_grants_calls_while_open() -> None:
    report = harness.run(
        procs=2,
        tasks=300,
        scenario="breaker",
        breaker="tests.broken_breakers:factory",
        progress=False,
        timeout=60,
    )
    assert not report.ok
    assert report.data["breaker_report"]["calls_while_open"] > 0
    assert {f.split(":")[0] for f in report.data["failures"]} == {"breaker"}


async def test_the_outage_moves_to_after_the_last_process_started(tmp_path: Path) -> None:
    spec = ChildSpec(
        index=0, submits=True, works=True, store="fakeredis", server_url=None, namespace="n",
        queues=("q",), serializer="cloudpickle", breaker="redis", secret="s",
        ledger_dir=str(tmp_path), first=0, last=10, salt=0, task_kind="closure", task_fn="",
        task_ms=0.0, scenario="breaker", concurrency=1, lease=10.0, batch=10,
        breaker_options={}, downstream=(101.0, 102.0), start_at=100.0, peers=2,
    )  # fmt: skip
    late = LedgerWriter(tmp_path / "p1.jsonl")
    LedgerWriter(tmp_path / "p0.jsonl").write("hello")
    moved = asyncio.create_task(after_every_peer_started(spec))
    await asyncio.sleep(0.05)
    assert not moved.done()  # still waiting for the second process
    late.write("hello")
    aligned = await asyncio.wait_for(moved, 5)
    last_hello = max(r["t"] for r in read_all(tmp_path))
    assert aligned.start_at == last_hello + 0.5
    assert aligned.downstream == (aligned.start_at + 1.0, aligned.start_at + 2.0)


def test_the_outage_lasts_until_a_breaker_opened_within_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "LEDGER", LedgerWriter(tmp_path / "p0.jsonl"))

    def call(plan: tasks.Plan) -> bool:
        """True when the downstream answered."""

        def body() -> bool:
            set_current(TaskContext("q", "t1", 1, 3, 1, "w"))
            try:
                tasks.execute(1, 0, plan)
            except tasks.DownstreamDown:
                return False
            return True

        return contextvars.copy_context().run(body)

    now = time.time()
    window_over = tasks.Plan(down_from=now - 2, down_until=now - 1)
    grace_over = tasks.Plan(down_from=now - 20, down_until=now - 1 - tasks.OUTAGE_GRACE_S)
    assert not call(window_over)  # no breaker has opened yet: still down
    assert call(grace_over)  # but not for ever
    (tmp_path / TRIPPED_MARKER).touch()
    assert call(window_over)
    calls = [r for r in read_all(tmp_path) if r["e"] == "call"]
    assert [r["ok"] for r in calls] == [False, True, True]
