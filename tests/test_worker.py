"""Worker: where tasks run, closures, arguments, ordering, concurrency, retries and backoff,
timeouts, hostile exceptions, hooks, batched settlement, and a 1000-task mix end to end."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from kew_plug import (
    InvalidArgument,
    Outcome,
    Queue,
    RetryPolicy,
    TaskEvent,
    TaskFailed,
    TaskSpec,
    TaskState,
    Worker,
)
from kew_plug.backends.memory import MemoryStore
from tests.conftest import StoreFactory
from tests.helpers import COUNTS, NOTES, bump, eventually, fast, note

# Module-level state, touched only through module-level functions: those travel by reference
# (closures travel by value and would mutate a copy), so the worker updates these objects.
TOKENS: dict[str, asyncio.Queue[None]] = {}


async def drain(w: Worker, within: float = 20.0) -> None:
    """Run the worker until the queue is empty; a hang fails the test instead of stalling it."""
    await asyncio.wait_for(w.drain(), within)


async def async_where(key: str) -> str:
    note(key, ("async", threading.get_ident()))
    return "async"


def sync_where(key: str) -> str:
    note(key, ("sync", threading.get_ident()))
    return threading.current_thread().name


def combine(a: int, b: int = 0, *rest: int, c: int, **extra: int) -> tuple[Any, ...]:
    return (a, b, rest, c, extra)


async def async_combine(a: int, *, c: int = 0) -> tuple[int, int]:
    return (a, c)


async def record_order(key: str, tag: str) -> str:
    note(key, tag)
    return tag


async def occupy(key: str) -> int:
    """Holds its slot until the test hands out a token; tracks how many run at once."""
    running = bump(f"{key}:running")
    COUNTS[f"{key}:peak"] = max(COUNTS[f"{key}:peak"], running)
    try:
        await TOKENS[key].get()
    finally:
        COUNTS[f"{key}:running"] -= 1
    return bump(f"{key}:done")


async def flaky(key: str, failures: int) -> int:
    n = bump(key)
    note(key, time.monotonic())
    if n <= failures:
        raise ValueError(f"attempt {n} failed")
    return n


def sync_flaky(key: str, failures: int) -> int:
    n = bump(key)
    if n <= failures:
        raise ValueError(f"attempt {n} failed")
    return n


class Boom(Exception):
    pass


def explode(message: str) -> None:
    raise Boom(message)


async def hang(key: str) -> None:
    note(key, "started")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        note(key, "cancelled")
        raise


async def raise_base(kind: str) -> None:
    raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}[kind]("bye")


def sync_raise_base(kind: str) -> None:
    raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}[kind]("bye")


async def double_later(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def returns_coroutine(x: int) -> Any:
    return double_later(x)


async def results(q: Queue, ids: Sequence[str]) -> list[Any]:
    return [await q.result(i, timeout=5) for i in ids]


# -- where and how tasks run -----------------------------------------------------------------


async def test_coroutines_run_on_the_loop_and_plain_functions_in_a_thread(key: str) -> None:
    q = Queue("memory", name="where")
    a = await q.submit(async_where, (key,))
    s = await q.submit(sync_where, (key,))
    await drain(fast(q))
    assert await a.result(timeout=5) == "async"
    assert (await s.result(timeout=5)).startswith("kew-task")
    where = dict(NOTES[key])
    loop_thread = threading.get_ident()
    assert where["async"] == loop_thread
    assert where["sync"] != loop_thread


@pytest.mark.parametrize("serializer", ["cloudpickle", "dill"])
async def test_closures_made_at_run_time(serializer: str) -> None:
    factor, offset = random.randint(2, 9), random.randint(10, 99)

    def scale(x: int) -> int:
        return x * factor

    async def shift(x: int) -> int:
        return x + offset

    q = Queue("memory", serializer, name="closures")
    handles = [
        await q.submit(scale, (5,)),
        await q.submit(shift, (5,)),
        await q.submit(lambda x: x - factor, (5,)),
    ]
    await drain(fast(q))
    assert await results(q, [h.id for h in handles]) == [5 * factor, 5 + offset, 5 - factor]


async def test_args_and_kwargs_reach_the_task() -> None:
    q = Queue("memory", name="args")
    h1 = await q.submit(combine, (1, 2, 3, 4), {"c": 5, "d": 6})
    h2 = await q.submit(combine, (7,), {"c": 8})
    h3 = await q.submit(async_combine, (9,), {"c": 10})
    h4 = await q.submit(async_combine, [11])
    await drain(fast(q))
    assert await results(q, [h1.id, h2.id, h3.id, h4.id]) == [
        (1, 2, (3, 4), 5, {"d": 6}),
        (7, 0, (), 8, {}),
        (9, 10),
        (11, 0),
    ]


async def test_priority_order_with_one_slot(key: str) -> None:
    q = Queue("memory", name="prio")
    priorities = [0, 5, -3, 5, 10, 0, -3, 1, 1000, -1000]
    for i, p in enumerate(priorities):
        await q.submit(record_order, (key, f"{i}:{p}"), priority=p)
    await drain(fast(q, concurrency=1))
    expected = [
        f"{i}:{p}" for i, p in sorted(enumerate(priorities), key=lambda ip: (-ip[1], ip[0]))
    ]
    assert NOTES[key] == expected


async def test_concurrency_limit_is_respected_and_reached(key: str) -> None:
    concurrency, total = 3, 11
    TOKENS[key] = asyncio.Queue()
    q = Queue("memory", name="slots")
    handles = [await q.submit(occupy, (key,)) for _ in range(total)]
    w = fast(q, concurrency=concurrency)
    run = asyncio.create_task(w.drain())
    try:
        for finished in range(total):
            expected = min(concurrency, total - finished)
            await eventually(lambda: _count(f"{key}:running"), lambda n, e=expected: n == e)
            assert COUNTS[f"{key}:done"] == finished
            TOKENS[key].put_nowait(None)  # let exactly one task finish
            await eventually(lambda: _count(f"{key}:done"), lambda n, f=finished: n == f + 1)
        await asyncio.wait_for(run, 5)
    finally:
        TOKENS.pop(key)
        if not run.done():
            w.stop()
            await run
    assert COUNTS[f"{key}:peak"] == concurrency
    assert sorted(await results(q, [h.id for h in handles])) == list(range(1, total + 1))
    assert w.stats.completed == total


async def _count(name: str) -> int:
    return COUNTS[name]


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [flaky, sync_flaky], ids=["async", "sync"])
async def test_failing_then_succeeding_completes(
    make_store: StoreFactory, queue_name: str, key: str, fn: Any
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    handle = await q.submit(fn, (key, 3), retries=3)
    w = fast(q)
    await drain(w)
    assert await handle.result(timeout=5) == 4
    record = await q.info(handle.id)
    assert record is not None
    assert record.state is TaskState.COMPLETED and record.attempts == 4 and record.error is None
    assert COUNTS[key] == 4
    assert (w.stats.retried, w.stats.completed, w.stats.dead) == (3, 1, 0)
    assert await store.payload_ids(queue_name) == set()


async def test_exhausted_retries_dead_letter_with_error_text(
    make_store: StoreFactory, queue_name: str, key: str
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    handle = await q.submit(flaky, (key, 100), retries=2)
    boom = await q.submit(explode, ("it broke",), retries=0)
    w = fast(q)
    await drain(w)
    with pytest.raises(TaskFailed) as info:
        await handle.result(timeout=5)
    assert info.value.error == "ValueError: attempt 3 failed"
    record = await q.info(handle.id)
    assert record is not None and record.state is TaskState.DEAD and record.attempts == 3
    assert COUNTS[key] == 3
    with pytest.raises(TaskFailed, match="Boom: it broke"):
        await boom.result(timeout=5)
    assert sorted(r.id for r in await q.dead()) == sorted([handle.id, boom.id])
    assert await store.payload_ids(queue_name) == set()


async def test_retry_backoff_delays_each_attempt(key: str) -> None:
    policy = RetryPolicy(base=0.05, factor=2.0, jitter=0.5)
    q = Queue("memory", name="backoff")
    handle = await q.submit(flaky, (key, 3), retries=3)
    await drain(fast(q, retry=policy))
    assert await handle.result(timeout=5) == 4
    starts = NOTES[key]
    assert len(starts) == 4
    for attempt, (earlier, later) in enumerate(itertools.pairwise(starts), 1):
        ceiling = policy.base * policy.factor ** (attempt - 1)
        minimum = ceiling * (1 - policy.jitter)
        # Store times are whole milliseconds, hence the small tolerance.
        assert later - earlier >= minimum - 0.003, (attempt, later - earlier, minimum)


async def test_due_retry_is_claimed_without_waiting_for_wait_timeout(key: str) -> None:
    """An idle worker blocked in store.wait must still pick up its own retry when it is due,
    and drain() must return once the last outcome is settled, not a wait_timeout later."""
    q = Queue("memory", name="prompt")
    handle = await q.submit(flaky, (key, 2), retries=2)
    w = Worker(q, retry=RetryPolicy(base=0.02, jitter=0), wait_timeout=30.0)
    started = time.monotonic()
    await asyncio.wait_for(w.drain(), 10)
    elapsed = time.monotonic() - started
    assert await handle.result(timeout=1) == 3
    gaps = [b - a for a, b in itertools.pairwise(NOTES[key])]
    assert all(0.015 <= g < 5 for g in gaps), gaps
    assert elapsed < 5, elapsed


# -- timeouts and hostile exceptions ---------------------------------------------------------


async def test_timeout_cancels_an_async_task(key: str) -> None:
    q = Queue("memory", name="timeouts")
    handle = await q.submit(hang, (key,), timeout=0.1, retries=0)
    quick = await q.submit(double_later, (4,), timeout=5)
    w = fast(q)
    await asyncio.wait_for(w.drain(), 10)
    with pytest.raises(TaskFailed) as info:
        await handle.result(timeout=5)
    assert info.value.error is not None
    assert info.value.error.startswith("TaskTimeout:")
    assert "timeout of 0.1 s" in info.value.error
    assert NOTES[key] == ["started", "cancelled"]
    assert await quick.result(timeout=5) == 8


async def test_queue_default_timeout_applies(key: str) -> None:
    q = Queue("memory", name="timeouts", timeout=0.1, retries=0)
    handle = await q.submit(hang, (key,))
    await asyncio.wait_for(fast(q).drain(), 10)
    with pytest.raises(TaskFailed, match="timeout"):
        await handle.result(timeout=5)


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
@pytest.mark.parametrize("fn", [raise_base, sync_raise_base], ids=["async", "sync"])
async def test_base_exceptions_fail_only_their_task(kind: str, fn: Any) -> None:
    q = Queue("memory", name="hostile")
    bad = await q.submit(fn, (kind,), retries=0, priority=1)  # runs first
    good = [await q.submit(double_later, (i,)) for i in range(5)]
    w = fast(q, concurrency=1)
    await asyncio.wait_for(w.drain(), 10)
    with pytest.raises(TaskFailed) as info:
        await bad.result(timeout=5)
    assert info.value.error == f"{kind}: bye"
    assert await results(q, [h.id for h in good]) == [0, 2, 4, 6, 8]
    assert (w.stats.completed, w.stats.dead) == (5, 1)


async def test_sync_function_returning_a_coroutine_is_awaited() -> None:
    q = Queue("memory", name="coro")
    handle = await q.submit(returns_coroutine, (21,))
    await drain(fast(q))
    assert await handle.result(timeout=5) == 42


# -- hooks -----------------------------------------------------------------------------------


async def test_hooks_receive_events_and_raising_hooks_are_ignored(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, list[TaskEvent]] = {"start": [], "complete": [], "fail": []}

    def sync_hook(kind: str) -> Any:
        return lambda event: seen[kind].append(event)

    def async_hook(kind: str) -> Any:
        async def hook(event: TaskEvent) -> None:
            await asyncio.sleep(0)
            seen[kind].append(event)

        return hook

    def broken(event: TaskEvent) -> None:
        raise RuntimeError("sync hook broke")

    async def broken_async(event: TaskEvent) -> None:
        raise RuntimeError("async hook broke")

    q = Queue("memory", name="hooks")
    ok = await q.submit(double_later, (5,), task_id="ok", priority=1)
    bad = await q.submit(flaky, (key, 100), task_id="bad", retries=1)
    w = fast(
        q,
        concurrency=1,
        on_start=[broken, sync_hook("start"), async_hook("start")],
        on_complete=[sync_hook("complete"), broken_async, async_hook("complete")],
        on_fail=[broken, async_hook("fail"), sync_hook("fail"), broken_async],
    )
    with caplog.at_level(logging.ERROR, logger="kew_plug.worker"):
        await drain(w)

    assert await ok.result(timeout=5) == 10
    with pytest.raises(TaskFailed, match="attempt 2 failed"):
        await bad.result(timeout=5)

    # Each event reached both the sync and the async hook.
    starts = [(e.task_id, e.attempt) for e in seen["start"]]
    assert starts == [("ok", 1), ("ok", 1), ("bad", 1), ("bad", 1), ("bad", 2), ("bad", 2)]
    assert all(isinstance(e, TaskEvent) for kind in seen.values() for e in kind)
    (done, done_again) = seen["complete"]
    assert done == done_again
    assert done.task_id == "ok" and done.result == 10 and done.duration >= 0
    assert done.error is None and done.max_attempts == q.retries + 1
    fails = [(e.task_id, e.attempt, e.will_retry, e.error) for e in seen["fail"]]
    assert fails == [
        ("bad", 1, True, "ValueError: attempt 1 failed"),
        ("bad", 1, True, "ValueError: attempt 1 failed"),
        ("bad", 2, False, "ValueError: attempt 2 failed"),
        ("bad", 2, False, "ValueError: attempt 2 failed"),
    ]

    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum("start hook" in m and "raised for task" in m for m in messages) == 3
    assert sum("complete hook" in m for m in messages) == 1
    assert sum("fail hook" in m for m in messages) == 4
    assert any(r.exc_info and "hook broke" in str(r.exc_info[1]) for r in caplog.records)
    assert (w.stats.completed, w.stats.retried, w.stats.dead) == (1, 1, 1)


# -- settlement ------------------------------------------------------------------------------


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.settle_batches: list[int] = []

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        self.settle_batches.append(len(outcomes))
        return await super().settle(queue, outcomes)


@pytest.mark.parametrize("fn", [double_later, combine], ids=["async", "sync"])
async def test_settlement_is_batched(fn: Any) -> None:
    store = CountingStore()
    q = Queue(store, name="batched")
    specs = [TaskSpec(fn, (i,), {} if fn is double_later else {"c": 0}) for i in range(200)]
    handles = await q.submit_many(specs)
    w = fast(q, concurrency=50)
    await drain(w)
    assert w.stats.completed == 200
    assert sum(store.settle_batches) == 200
    assert len(store.settle_batches) < 200, store.settle_batches
    assert await store.payload_ids(q.name) == set()
    assert (await q.result(handles[7].id, timeout=5)) in (14, (7, 0, (), 0, {}))


# -- the mix ---------------------------------------------------------------------------------


async def test_thousand_task_mix_end_to_end(make_store: StoreFactory, queue_name: str) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    run_id = uuid.uuid4().hex
    factor = random.randint(2, 9)

    def sync_closure(i: int) -> int:
        bump(f"{run_id}:{i}")
        return i * factor

    async def async_closure(i: int) -> int:
        bump(f"{run_id}:{i}")
        await asyncio.sleep(0)
        return i + factor

    def flaky_closure(i: int) -> int:
        if bump(f"{run_id}:{i}") <= 2:
            raise RuntimeError(f"transient {i}")
        return -i

    async def always_failing(i: int) -> None:
        bump(f"{run_id}:{i}")
        raise ValueError(f"no {i}")

    specs: list[TaskSpec] = []
    expected: dict[str, Any] = {}
    runs: dict[str, int] = {}
    for i in range(1000):
        tid = f"task-{i}"
        kind = i % 10
        if kind in (0, 1):
            specs.append(TaskSpec(sync_closure, (i,), task_id=tid))
            expected[tid], runs[tid] = i * factor, 1
        elif kind in (2, 3):
            specs.append(TaskSpec(async_closure, (i,), task_id=tid, priority=i % 3))
            expected[tid], runs[tid] = i + factor, 1
        elif kind in (4, 5):
            specs.append(TaskSpec(flaky_closure, (i,), task_id=tid, retries=2))
            expected[tid], runs[tid] = -i, 3
        elif kind in (6, 7):
            specs.append(TaskSpec(async_closure, (i,), task_id=tid, delay=0.05))
            expected[tid], runs[tid] = i + factor, 1
        elif kind == 8:
            specs.append(TaskSpec(always_failing, (i,), task_id=tid, retries=1))
            expected[tid], runs[tid] = TaskFailed(tid, f"ValueError: no {i}"), 2
        else:
            specs.append(TaskSpec(double_later, (i,), task_id=tid))
            expected[tid], runs[tid] = 2 * i, 1
    handles = await q.submit_many(specs)
    assert all(h.accepted for h in handles)
    deferred = await q.status("task-6")
    assert deferred is TaskState.DEFERRED

    w = fast(q, concurrency=50)
    await asyncio.wait_for(w.drain(), 60)

    for tid, want in expected.items():
        if isinstance(want, TaskFailed):
            with pytest.raises(TaskFailed) as info:
                await q.result(tid, timeout=5)
            assert info.value.error == want.error
        else:
            assert await q.result(tid, timeout=5) == want, tid
    for i in range(1000):
        if i % 10 != 9:
            assert COUNTS[f"{run_id}:{i}"] == runs[f"task-{i}"], i
    stats = await store.stats(queue_name)
    assert stats.pending == 0 and stats.dead == 100
    assert sorted(r.id for r in await q.dead(limit=1000)) == sorted(
        t for t, v in expected.items() if isinstance(v, TaskFailed)
    )
    assert await store.payload_ids(queue_name) == set()
    assert (w.stats.completed, w.stats.dead, w.stats.stale) == (900, 100, 0)
    assert w.stats.retried == 200 * 2 + 100


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency >= 1"),
        ({"concurrency": 2.5}, "concurrency >= 1"),
        ({"concurrency": True}, "concurrency >= 1"),
        ({"lease": 0}, "lease >= 0.05 s"),
        ({"lease": float("nan")}, "lease must be"),
        ({"lease": "5"}, "lease must be a number"),
        ({"shutdown_timeout": -1}, "shutdown_timeout must be >= 0"),
        ({"recover_interval": 0}, "recover_interval >= 0.01 s"),
        ({"recover_interval": -1}, "recover_interval must be >= 0"),
        ({"wait_timeout": 0}, "wait_timeout >= 0.001 s"),
        ({"retry": 3}, "RetryPolicy"),
        ({"on_fail": [print, "x"]}, "on_fail must list callables"),
        ({"executor": "fork"}, "executor in"),
        ({"name": "a{b}"}, "brace"),
    ],
)
def test_worker_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    q = Queue("memory")
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        Worker(q, **options)


def test_worker_needs_a_queue() -> None:
    with pytest.raises(InvalidArgument, match="Worker needs a Queue, not str"):
        Worker("memory")  # type: ignore[arg-type]
