"""Worker under faults: unreadable payloads, results that cannot be stored, long tasks under
short leases, graceful stop, dead workers, an open breaker and a flaky store."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from kew_plug import (
    BreakerState,
    ClaimBatch,
    NewTask,
    Outcome,
    OutcomeKind,
    Queue,
    TaskEvent,
    TaskFailed,
    TaskState,
    Worker,
)
from kew_plug.backends.breakers import LocalBreaker
from kew_plug.backends.memory import MemoryStore
from kew_plug.interfaces import Store
from kew_plug.serializers.pickling import CloudpickleSerializer
from tests.conftest import StoreFactory
from tests.helpers import COUNTS, NOTES, bump, eventually, fast, note

SECRET = "fault-tests-secret-0123456789"

# Module-level state, touched only through module-level functions (they travel by reference).
GATES: dict[str, asyncio.Event] = {}


def add(a: int, b: int) -> int:
    return a + b


def count_call(key: str, extra: Any = None) -> str:
    bump(key)
    return key


class Tripwire:
    """Unpickling this object bumps a counter: proof of whether a payload was unpickled."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (bump, (f"{self.key}:unpickled",))


def make_lock() -> Any:
    return threading.Lock()


def big_result(n: int) -> str:
    return "x" * n


async def long_task(key: str, seconds: float) -> int:
    n = bump(key)
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, done.set)
    await done.wait()
    return n


async def gated(key: str, i: int) -> int:
    bump(f"{key}:start:{i}")
    await GATES[key].wait()
    bump(f"{key}:done:{i}")
    return i


async def stamp(key: str, i: int, hold: float = 0.0) -> int:
    """Notes its start time, then stands for a downstream call lasting `hold` seconds."""
    note(key, time.monotonic())
    if hold:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(hold, done.set)
        await done.wait()
    return i


async def fail_now(message: str) -> None:
    raise RuntimeError(message)


async def record_for(store: Store, queue: str, task_id: str) -> Any:
    record = await store.get(queue, task_id)
    assert record is not None, task_id
    return record


# -- unreadable payloads ---------------------------------------------------------------------


async def test_corrupt_payload_dead_letters_only_that_task(
    make_store: StoreFactory, queue_name: str
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    good = [await q.submit(add, (i, i)) for i in range(5)]
    await store.enqueue(queue_name, [NewTask("garbage", b"\x00\xffnot a payload", max_attempts=5)])
    w = fast(q)
    await asyncio.wait_for(w.drain(), 10)
    record = await record_for(store, queue_name, "garbage")
    assert record.state is TaskState.DEAD
    assert record.error.startswith("PayloadError:")
    assert "corrupt or foreign bytes" in record.error
    assert record.attempts == 1  # unreadable bytes are not retried
    assert [await h.result(timeout=5) for h in good] == [0, 2, 4, 6, 8]
    assert (w.stats.completed, w.stats.dead) == (5, 1)
    assert await store.payload_ids(queue_name) == set()


async def test_readable_bytes_that_are_not_a_task_dead_letter_instead_of_hanging(
    queue_name: str,
) -> None:
    store = MemoryStore()
    q = Queue(store, name=queue_name)
    ok = await q.submit(add, (1, 2))
    blob = CloudpickleSerializer().dumps(42)  # well framed, but no task envelope
    await store.enqueue(queue_name, [NewTask("not-a-task", blob, max_attempts=3)])
    await asyncio.wait_for(fast(q).drain(), 10)
    record = await record_for(store, queue_name, "not-a-task")
    assert record.state is TaskState.DEAD
    assert record.error.startswith("PayloadError:")
    assert "not a kew-plug task envelope" in record.error
    assert await ok.result(timeout=5) == 3
    assert await store.payload_ids(queue_name) == set()


async def test_payload_from_another_serializer_names_both(
    make_store: StoreFactory, queue_name: str, key: str
) -> None:
    store = make_store()
    writer = Queue(store, "dill", name=queue_name)
    handle = await writer.submit(count_call, (key,))
    reader = Queue(store, "cloudpickle", name=queue_name)
    await asyncio.wait_for(fast(reader).drain(), 10)
    with pytest.raises(TaskFailed) as info:
        await reader.result(handle.id, timeout=5)
    error = info.value.error or ""
    assert error.startswith("PayloadError:")
    assert "'dill'" in error and "'cloudpickle'" in error
    assert COUNTS[key] == 0
    assert await store.payload_ids(queue_name) == set()


async def test_signed_queue_refuses_unsigned_payload_without_unpickling(
    make_store: StoreFactory, queue_name: str, key: str
) -> None:
    store = make_store()
    plain = Queue(store, name=queue_name)
    signed = Queue(store, name=queue_name, secret=SECRET)
    unsigned = await plain.submit(count_call, (key, Tripwire(f"{key}-plain")))
    control = await signed.submit(count_call, (f"{key}-ok", Tripwire(f"{key}-signed")))
    await asyncio.wait_for(fast(signed).drain(), 10)

    assert COUNTS[f"{key}-plain:unpickled"] == 0  # the spy: never unpickled
    assert COUNTS[key] == 0  # never ran
    record = await record_for(store, queue_name, unsigned.id)
    assert record.state is TaskState.DEAD
    assert record.error.startswith("PayloadError:")
    assert "unsigned payload refused" in record.error
    # Control: the signed payload is unpickled (so the spy works) and runs.
    assert COUNTS[f"{key}-signed:unpickled"] == 1
    assert await signed.result(control.id, timeout=5) == f"{key}-ok"
    assert COUNTS[f"{key}-ok"] == 1


async def test_unserializable_result_dead_letters_with_clear_message(key: str) -> None:
    q = Queue("memory", name="results", max_payload_bytes=10_000)
    lock = await q.submit(make_lock, retries=3)
    big = await q.submit(big_result, (50_000,), retries=3)
    fine = await q.submit(big_result, (10,))
    w = fast(q)
    await asyncio.wait_for(w.drain(), 10)
    with pytest.raises(TaskFailed) as info:
        await lock.result(timeout=5)
    error = info.value.error or ""
    assert error.startswith("result could not be serialized")
    assert "'cloudpickle'" in error and "lock" in error
    with pytest.raises(TaskFailed, match=r"result is 5\d{4} bytes, over the limit of 10000"):
        await big.result(timeout=5)
    assert await fine.result(timeout=5) == "x" * 10
    for handle in (lock, big):
        record = await q.info(handle.id)
        assert record is not None and record.attempts == 1  # not retried
    assert await q.store.payload_ids(q.name) == set()


# -- leases, stop, recovery ------------------------------------------------------------------


async def test_lease_is_renewed_while_a_long_task_runs(
    make_store: StoreFactory, queue_name: str, key: str
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    handle = await q.submit(long_task, (key, 1.2), retries=3)
    w = fast(q, lease=0.3, concurrency=4)
    recovered: list[str] = []
    finished = asyncio.Event()

    async def recoverer() -> int:
        other = make_store()  # another connection, as another process would have
        calls = 0
        while not finished.is_set():
            report = await other.recover(queue_name)
            recovered.extend(report.requeued + report.dead)
            calls += 1
            await asyncio.sleep(0.01)  # pacing, not synchronization
        return calls

    rec = asyncio.create_task(recoverer())
    try:
        await asyncio.wait_for(w.drain(), 10)
    finally:
        finished.set()
        calls = await rec
    assert calls > 20  # recover ran many times across several lease lengths
    assert recovered == []
    assert COUNTS[key] == 1
    assert await handle.result(timeout=5) == 1
    record = await record_for(store, queue_name, handle.id)
    assert record.state is TaskState.COMPLETED and record.attempts == 1
    assert w.stats.stale == 0


async def test_graceful_stop_releases_blocked_claims(
    make_store: StoreFactory, queue_name: str, key: str
) -> None:
    n = 3
    store = make_store()
    q = Queue(store, name=queue_name)
    GATES[key] = asyncio.Event()
    try:
        quick = await q.submit(add, (2, 2), priority=5)
        handles = [await q.submit(gated, (key, i)) for i in range(n)]
        handed_back: list[TaskEvent] = []
        w = fast(q, concurrency=n + 1, shutdown_timeout=0.1, on_release=[handed_back.append])
        run = asyncio.create_task(w.run())
        await eventually(
            lambda: _sum(f"{key}:start:{i}" for i in range(n)), lambda s: s == n, within=5
        )
        await eventually(lambda: quick.status(), lambda s: s is TaskState.COMPLETED)
        w.stop()
        stats = await asyncio.wait_for(run, 5)
        assert stats.released == n
        assert sorted(e.task_id for e in handed_back) == sorted(h.id for h in handles)
        assert stats.completed == 1
        for h in handles:
            record = await record_for(store, queue_name, h.id)
            assert record.state is TaskState.QUEUED and record.attempts == 0
            assert record.has_payload
        assert (await store.stats(queue_name)).queued == n

        GATES[key].set()
        later = fast(q)
        await asyncio.wait_for(later.drain(), 10)
    finally:
        GATES.pop(key)
    assert [await h.result(timeout=5) for h in handles] == list(range(n))
    for i in range(n):
        assert COUNTS[f"{key}:done:{i}"] == 1
        assert COUNTS[f"{key}:start:{i}"] == 2  # cancelled once, then run to the end
    assert later.stats.completed == n
    assert await quick.result(timeout=5) == 4
    assert await store.payload_ids(queue_name) == set()


async def _sum(keys: Any) -> int:
    return sum(COUNTS[k] for k in keys)


class WaitSpy(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def wait(self, queue: str, timeout: float) -> bool:
        self.waiting.set()
        return await super().wait(queue, timeout)


async def test_stop_interrupts_an_idle_worker_waiting_on_the_store() -> None:
    store = WaitSpy()
    q = Queue(store, name="idle")
    w = Worker(q, wait_timeout=30.0)
    run = asyncio.create_task(w.run())
    await asyncio.wait_for(store.waiting.wait(), 5)
    w.stop()
    stats = await asyncio.wait_for(run, 5)
    assert stats.claimed == 0


async def test_claim_of_a_dead_worker_is_recovered_and_run(
    make_store: StoreFactory, queue_name: str, key: str
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    handle = await q.submit(count_call, (key,), retries=2)
    batch = await store.claim(queue_name, "dead-worker", 1, 50)  # never renewed or settled
    (zombie,) = batch.claims
    assert (await record_for(store, queue_name, handle.id)).state is TaskState.RUNNING
    w = fast(q, recover_interval=0.05)
    await asyncio.wait_for(w.drain(), 10)
    assert await handle.result(timeout=5) == key
    assert COUNTS[key] == 1
    record = await record_for(store, queue_name, handle.id)
    assert record.state is TaskState.COMPLETED and record.attempts == 2
    # The dead worker waking up later cannot overwrite the outcome.
    late = Outcome(zombie.id, zombie.token, OutcomeKind.COMPLETE, result=b"zombie")
    assert await store.settle(queue_name, [late]) == [False]
    assert await handle.result(timeout=5) == key
    assert await store.payload_ids(queue_name) == set()


# -- breaker ---------------------------------------------------------------------------------


class TimedBreaker(LocalBreaker):
    """Records the monotonic time of the first transition to open."""

    opened_at: float | None = None

    async def record_failure(self) -> None:
        await super().record_failure()
        if self.opened_at is None and await self.state() is BreakerState.OPEN:
            self.opened_at = time.monotonic()


async def test_open_breaker_holds_tasks_without_failing_them(key: str) -> None:
    breaker = TimedBreaker(failure_threshold=2, reset_timeout=0.3)
    q = Queue("memory", "cloudpickle", breaker, name="guarded")
    w = fast(q, concurrency=4)
    run = asyncio.create_task(w.run())
    try:
        failing = [await q.submit(fail_now, (f"down {i}",), retries=0) for i in range(2)]
        await eventually(lambda: breaker.state(), lambda s: s is BreakerState.OPEN)
        assert breaker.opened_at is not None
        # The half-open probe takes 0.25 s: meanwhile the worker must not spin claiming and
        # releasing the other tasks.
        later = [await q.submit(stamp, (key, i, 0.25 if i == 0 else 0.0)) for i in range(6)]
        values = [await h.result(timeout=5) for h in later]
    finally:
        w.stop()
        await asyncio.wait_for(run, 5)
    assert values == list(range(6))
    half_open_at = breaker.opened_at + breaker.reset_timeout
    starts = NOTES[key]
    assert len(starts) == 6  # each ran exactly once
    # The breaker records the open time a moment before TimedBreaker does: allow 5 ms.
    assert min(starts) >= half_open_at - 0.005, min(starts) - breaker.opened_at
    for h in later:
        record = await q.info(h.id)
        assert record is not None
        assert record.state is TaskState.COMPLETED and record.attempts == 1
    for h in failing:
        with pytest.raises(TaskFailed, match="RuntimeError: down"):
            await h.result(timeout=5)
    assert sorted(r.id for r in await q.dead()) == sorted(h.id for h in failing)
    assert await breaker.state() is BreakerState.CLOSED
    assert w.stats.dead == 2 and w.stats.completed == 6
    assert w.stats.breaker_denied <= 15, w.stats.breaker_denied


# -- a flaky store ---------------------------------------------------------------------------


class FlakyStore(MemoryStore):
    """Raises ConnectionError from claim (and settle) a set number of times."""

    def __init__(self, claim_failures: int = 0, settle_failures: int = 0) -> None:
        super().__init__()
        self.claim_failures = claim_failures
        self.settle_failures = settle_failures
        self.settle_calls = 0

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        if self.claim_failures > 0:
            self.claim_failures -= 1
            raise ConnectionError("store down (claim)")
        return await super().claim(queue, worker, limit, lease_ms)

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        self.settle_calls += 1
        if self.settle_failures > 0:
            self.settle_failures -= 1
            raise ConnectionError("store down (settle)")
        return await super().settle(queue, outcomes)


async def test_claim_connection_errors_are_logged_and_retried(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(claim_failures=3)
    q = Queue(store, name="flaky")
    handles = [await q.submit(count_call, (f"{key}:{i}",)) for i in range(5)]
    w = fast(q)
    with caplog.at_level(logging.WARNING, logger="kew_plug.worker"):
        await asyncio.wait_for(w.drain(), 10)
    assert store.claim_failures == 0
    assert w.stats.store_errors == 3
    assert [await h.result(timeout=5) for h in handles] == [f"{key}:{i}" for i in range(5)]
    assert all(COUNTS[f"{key}:{i}"] == 1 for i in range(5))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("store unavailable during claim" in m for m in messages) == 1
    assert any("store down (claim)" in m for m in messages)
    assert any("reachable again for claim after 3 failures" in m for m in messages)


async def test_settle_connection_errors_keep_outcomes_until_accepted(key: str) -> None:
    store = FlakyStore(settle_failures=2)
    q = Queue(store, name="flaky")
    handles = [await q.submit(count_call, (f"{key}:{i}",)) for i in range(5)]
    w = fast(q)
    await asyncio.wait_for(w.drain(), 10)
    assert w.stats.store_errors == 2 and store.settle_calls >= 3
    assert [await h.result(timeout=5) for h in handles] == [f"{key}:{i}" for i in range(5)]
    assert all(COUNTS[f"{key}:{i}"] == 1 for i in range(5))
    assert await store.payload_ids(q.name) == set()


class SettleRacesRenew(MemoryStore):
    """Makes a lease renewal land while a settlement is in flight: the settle is applied first,
    and its reply reaches the worker only after the renewal's reply."""

    def __init__(self) -> None:
        super().__init__()
        self.settling = asyncio.Event()
        self.renewing = asyncio.Event()
        self.settled = asyncio.Event()
        self.raced = False

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        self.settling.set()
        if not self.raced:
            await self.renewing.wait()
        applied = await super().settle(queue, outcomes)
        self.settled.set()
        if not self.raced:
            self.raced = True
            for _ in range(10):  # let the renewal's reply be handled before this one
                await asyncio.sleep(0)
        return applied

    async def renew(self, queue: str, claims: Sequence[Any], lease_ms: int) -> list[bool]:
        if self.settling.is_set() and not self.raced:
            self.renewing.set()
            await self.settled.wait()
        return await super().renew(queue, claims, lease_ms)


async def stall_loop(seconds: float) -> str:
    time.sleep(seconds)  # noqa: ASYNC251 -- blocks the loop: the stall under test, not a wait
    return "done"


async def test_a_worker_that_stalls_past_its_lease_hears_of_the_lapse() -> None:
    q = Queue("memory", name="lapse")
    handle = await q.submit(stall_loop, (0.5,))
    lapses: list[TaskEvent] = []
    # No recovery of its own within the test: the late settlement is then accepted.
    w = fast(q, lease=0.2, recover_interval=60, on_lapse=[lapses.append])
    await asyncio.wait_for(w.drain(), 10)
    assert await handle.result(timeout=5) == "done"
    # The stalled task's lease ran out by the worker's own clock; heard once, not again
    # when its late renewal and its settlement were confirmed.
    assert [e.task_id for e in lapses] == [handle.id]
    assert w.stats.lapsed == 1
    assert "before a renewal or settlement was confirmed" in (lapses[0].error or "")


async def test_renewal_racing_a_settlement_is_not_reported_as_a_lost_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SettleRacesRenew()
    q = Queue(store, name="race")
    handle = await q.submit(add, (1, 2))
    w = fast(q, lease=0.3)
    with caplog.at_level(logging.WARNING, logger="kew_plug.worker"):
        await asyncio.wait_for(w.drain(), 10)
    assert store.raced  # the race did happen
    assert await handle.result(timeout=5) == 3
    assert w.stats.stale == 0
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
