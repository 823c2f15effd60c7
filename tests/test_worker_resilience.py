"""The worker keeps what a failure teaches and survives what the store throws at it: each
failed attempt's traceback reaches the store, the on_fail hooks and one log line; any
exception from any store or breaker call is backed off and logged once; a dead worker's
tasks are recovered within 10 s with the defaults, logged and counted."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence

import pytest

from kew_plug import (
    BreakerState,
    Claim,
    ClaimBatch,
    Outcome,
    OutcomeKind,
    Queue,
    QueueStats,
    RecoverReport,
    RetryPolicy,
    TaskEvent,
    Worker,
)
from kew_plug.backends.breakers import LocalBreaker
from kew_plug.backends.memory import MemoryStore
from kew_plug.runner import TRACEBACK_LIMIT
from tests.helpers import COUNTS, bump, eventually, fast


def explode(key: str) -> None:
    bump(key)
    raise ValueError(f"exploded {key}")


def huge_error() -> None:
    raise ValueError("x" * 100_000)


async def slow_count(key: str, seconds: float) -> str:
    bump(key)
    await asyncio.sleep(seconds)
    return key


class SettleSpy(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[Outcome] = []

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        self.outcomes.extend(outcomes)
        return await super().settle(queue, outcomes)


async def test_each_failed_attempt_keeps_its_traceback(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SettleSpy()
    q = Queue(store, name="tb")
    events: list[TaskEvent] = []
    handle = await q.submit(explode, (key,), retries=1)
    with caplog.at_level(logging.WARNING, logger="kew_plug.worker"):
        await asyncio.wait_for(fast(q, on_fail=[events.append]).drain(), 10)
    kinds = [(o.kind, o.error) for o in store.outcomes]
    error = f"ValueError: exploded {key}"
    assert kinds == [(OutcomeKind.RETRY, error), (OutcomeKind.DEAD, error)]
    for outcome in store.outcomes:  # what the store is asked to keep, RETRY and DEAD alike
        assert outcome.traceback is not None
        assert "in explode" in outcome.traceback
        assert outcome.traceback.rstrip().endswith(f"ValueError: exploded {key}")
    assert [(e.attempt, e.will_retry) for e in events] == [(1, True), (2, False)]
    assert [e.traceback for e in events] == [o.traceback for o in store.outcomes]
    # Logged once per attempt, at WARNING, with the task id, the attempt and the traceback.
    logged = [r.getMessage() for r in caplog.records if handle.id in r.getMessage()]
    assert len(logged) == 2
    assert logged[0].startswith(f"task {handle.id} attempt 1 of 2 failed (retry in ")
    assert logged[1].startswith(f"task {handle.id} attempt 2 of 2 failed (dead)")
    assert all("in explode" in m for m in logged)


async def test_traceback_is_bounded_keeping_its_end() -> None:
    store = SettleSpy()
    q = Queue(store, name="tb-big")
    await q.submit(huge_error, retries=0)
    await asyncio.wait_for(fast(q).drain(), 10)
    (outcome,) = store.outcomes
    assert outcome.traceback is not None
    assert len(outcome.traceback.encode()) <= TRACEBACK_LIMIT  # stores keep it whole
    cut, kept = outcome.traceback.split("\n", 1)
    assert re.fullmatch(r"\[\d+ earlier bytes cut\]", cut)
    assert len(outcome.traceback.encode()) > TRACEBACK_LIMIT - 10
    assert kept.rstrip().endswith("x" * 1000)  # the error itself, at the end, is kept


async def test_info_shows_the_last_traceback(key: str) -> None:
    q = Queue("memory", name="tb-info")
    handle = await q.submit(explode, (key,), retries=0)
    await asyncio.wait_for(fast(q).drain(), 10)
    record = await q.info(handle.id)
    assert record is not None and record.traceback is not None
    assert "in explode" in record.traceback


async def fails_first_slowly(key: str) -> str:
    n = bump(key)
    await asyncio.sleep(0.15 if n == 1 else 0.5)
    if n == 1:
        raise RuntimeError("first attempt fails")
    return key


class RenewRacesReclaim(MemoryStore):
    """Holds a renewal of a task's first claim until the task failed, was settled for a
    retry and was claimed again: the reply (False, for the old token) arrives last."""

    def __init__(self) -> None:
        super().__init__()
        self.reclaimed = asyncio.Event()
        self.raced = False

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        batch = await super().claim(queue, worker, limit, lease_ms)
        if any(c.attempt == 2 for c in batch.claims):
            self.reclaimed.set()
        return batch

    async def renew(self, queue: str, claims: Sequence[Claim], lease_ms: int) -> list[bool]:
        if not self.raced and any(c.attempt == 1 for c in claims):
            self.raced = True
            await self.reclaimed.wait()
        return await super().renew(queue, claims, lease_ms)


async def test_renewal_of_an_old_claim_does_not_drop_the_new_claim(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RenewRacesReclaim()
    q = Queue(store, name="reclaim")
    handle = await q.submit(fails_first_slowly, (key,), retries=1)
    worker = fast(q, lease=0.3, retry=RetryPolicy(base=0.01, jitter=0))
    with caplog.at_level(logging.WARNING, logger="kew_plug.worker"):
        await asyncio.wait_for(worker.drain(), 10)
    assert store.raced and store.reclaimed.is_set()  # the race did happen
    assert await handle.result(timeout=5) == key and COUNTS[key] == 2
    assert worker.stats.stale == 0
    assert not [r for r in caplog.records if "lost" in r.getMessage()]


RUNNING: Counter[str] = Counter()


async def occupy(key: str, seconds: float) -> None:
    RUNNING[key] += 1
    RUNNING[f"{key}:max"] = max(RUNNING[f"{key}:max"], RUNNING[key])
    await asyncio.sleep(seconds)
    RUNNING[key] -= 1


async def fails_then_occupies(key: str) -> None:
    if bump(key) == 1:
        raise RuntimeError("first attempt fails")
    await occupy(key, 0.6)


async def test_a_slow_fail_hook_does_not_free_the_slot_of_the_tasks_retry(key: str) -> None:
    """The first attempt's on_fail hook is still running when its retry is claimed and
    started: the end of the first attempt must not count as the end of the second."""
    q = Queue("memory", name="slots")
    await q.submit(fails_then_occupies, (key,), retries=1)
    later = [await q.submit(occupy, (key, 0.3), delay=0.3) for _ in range(2)]
    retry_started = asyncio.Event()

    def on_start(ev: TaskEvent) -> None:
        if ev.attempt == 2:
            retry_started.set()

    async def on_fail(ev: TaskEvent) -> None:
        await asyncio.wait_for(retry_started.wait(), 5)

    worker = fast(
        q,
        concurrency=2,
        retry=RetryPolicy(base=0.01, jitter=0),
        on_start=[on_start],
        on_fail=[on_fail],
    )
    await asyncio.wait_for(worker.drain(), 20)
    assert [await h.result(timeout=5) for h in later] == [None, None]
    assert RUNNING[f"{key}:max"] == 2  # never 3 tasks on 2 slots


# -- store and breaker failures ---------------------------------------------------------------

FAILURES = {"claim": 3, "wait": 3, "renew": 2, "settle": 2, "recover": 2, "stats": 2}
BREAKER_FAILURES = {"state": 2, "allow": 2, "record_success": 2}


class ChaosStore(MemoryStore):
    """Each listed call raises RuntimeError (not a ConnectionError) its first few times."""

    def __init__(self) -> None:
        super().__init__()
        self.left = Counter(FAILURES)

    def _maybe_fail(self, call: str) -> None:
        if self.left[call] > 0:
            self.left[call] -= 1
            raise RuntimeError(f"chaos in {call}")

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        self._maybe_fail("claim")
        return await super().claim(queue, worker, limit, lease_ms)

    async def wait(self, queue: str, timeout: float) -> bool:
        self._maybe_fail("wait")
        return await super().wait(queue, timeout)

    async def renew(self, queue: str, claims: Sequence[Claim], lease_ms: int) -> list[bool]:
        self._maybe_fail("renew")
        return await super().renew(queue, claims, lease_ms)

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        self._maybe_fail("settle")
        return await super().settle(queue, outcomes)

    async def recover(self, queue: str) -> RecoverReport:
        self._maybe_fail("recover")
        return await super().recover(queue)

    async def stats(self, queue: str) -> QueueStats:
        self._maybe_fail("stats")
        return await super().stats(queue)


async def test_any_exception_from_any_store_call_is_backed_off_and_logged_once(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = ChaosStore()
    q = Queue(store, name="chaos")
    worker = fast(q, concurrency=2, lease=1.5, recover_interval=0.05, wait_timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="kew_plug.worker"):
        running = asyncio.create_task(worker.run())
        # Tasks longer than a third of the lease, so renewals happen while they run.
        handles = [await q.submit(slow_count, (f"{key}:{i}", 1.0)) for i in range(4)]
        results = [await h.result(timeout=20) for h in handles]
        unspent = lambda: asyncio.sleep(0, store.left.total() - store.left["stats"])  # noqa: E731
        await eventually(unspent, lambda n: n == 0, 20)
        worker.stop()
        await asyncio.wait_for(running, 20)
        # Only drain() asks the store for its stats; those fail too at first.
        drainer = fast(q, wait_timeout=0.05)
        await asyncio.wait_for(drainer.drain(), 20)
    assert results == [f"{key}:{i}" for i in range(4)]
    assert all(COUNTS[f"{key}:{i}"] == 1 for i in range(4))  # each ran once
    assert store.left.total() == 0
    assert worker.stats.store_errors + drainer.stats.store_errors == sum(FAILURES.values())
    messages = [r.getMessage() for r in caplog.records]
    for call in FAILURES:
        started = [m for m in messages if f"store failing during {call} " in m]
        assert len(started) == 1, (call, started)  # one line when trouble starts
        assert f"chaos in {call}" in started[0]


class ChaosBreaker(LocalBreaker):
    """A breaker whose (shared) state is unreachable for its first few calls of each kind."""

    def __init__(self) -> None:
        super().__init__(failure_threshold=5, reset_timeout=1.0)
        self.left = Counter(BREAKER_FAILURES)

    def _maybe_fail(self, call: str) -> None:
        if self.left[call] > 0:
            self.left[call] -= 1
            raise RuntimeError(f"breaker store down ({call})")

    async def state(self) -> BreakerState:
        self._maybe_fail("state")
        return await super().state()

    async def allow(self) -> bool:
        self._maybe_fail("allow")
        return await super().allow()

    async def record_success(self) -> None:
        self._maybe_fail("record_success")
        await super().record_success()


async def test_a_failing_breaker_neither_kills_the_worker_nor_loses_tasks(key: str) -> None:
    breaker = ChaosBreaker()
    q = Queue("memory", breaker=breaker, name="chaos-breaker")
    handles = [await q.submit(slow_count, (f"{key}:{i}", 0.0)) for i in range(6)]
    handed_back: list[TaskEvent] = []
    worker = fast(q, concurrency=2, on_release=[handed_back.append])
    await asyncio.wait_for(worker.drain(), 30)
    assert breaker.left.total() == 0
    assert [await h.result(timeout=5) for h in handles] == [f"{key}:{i}" for i in range(6)]
    assert all(COUNTS[f"{key}:{i}"] == 1 for i in range(6))
    assert worker.stats.store_errors == sum(BREAKER_FAILURES.values())
    # Each claim refused by a failing allow() was handed back unstarted, attempt not counted.
    assert len(handed_back) == BREAKER_FAILURES["allow"] == worker.stats.released
    assert {e.task_id for e in handed_back} <= {h.id for h in handles}
    assert all(e.attempt == 1 and e.token for e in handed_back)


# -- recovery ---------------------------------------------------------------------------------


async def test_dead_workers_task_runs_within_10_s_with_defaults(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    q = Queue("memory", name="recovery")
    handle = await q.submit(slow_count, (key, 0.0))
    defaults = Worker(q)
    # A worker claims the task with the default lease and dies (never renews or settles).
    batch = await q.store.claim(q.name, "dead-worker", 1, defaults.lease_ms)
    assert [c.id for c in batch.claims] == [handle.id]
    died = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="kew_plug.worker"):
        await asyncio.wait_for(defaults.drain(), 20)
    took = time.monotonic() - died
    assert await handle.result(timeout=5) == key and COUNTS[key] == 1
    assert took < 10, took
    assert (defaults.stats.recovered, defaults.stats.recovered_dead) == (1, 0)
    lines = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
    assert lines == [
        "recovered 1 tasks of queue 'recovery' whose lease expired (worker died or stalled): "
        "1 requeued, 0 dead (attempts used up)"
    ]


async def test_recovery_counts_tasks_whose_attempts_were_used_up(key: str) -> None:
    q = Queue("memory", name="recovery-dead")
    handles = [await q.submit(slow_count, (f"{key}:{i}", 0.0), retries=0) for i in range(3)]
    await q.store.claim(q.name, "dead-worker", 3, 100)
    worker = fast(q, recover_interval=0.05)
    await asyncio.wait_for(worker.drain(), 10)
    assert (worker.stats.recovered, worker.stats.recovered_dead) == (0, 3)
    assert sorted(r.id for r in await q.dead()) == sorted(h.id for h in handles)
