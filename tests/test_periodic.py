"""Periodic tasks: tick arithmetic in explicit time zones, one task per tick however many
schedulers run, skip or catch up, and ticks that never run before their time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from kew_plug import InvalidArgument, Queue, Worker, current_task
from kew_plug.backends.memory import MemoryStore
from kew_plug.models import TaskState
from kew_plug.periodic import Periodic, Scheduler, tick_of
from tests.helpers import NOTES, eventually, note

T0 = datetime(2026, 12, 2, 13, 0, 0, tzinfo=UTC)


def beat() -> str:
    ctx = current_task()
    assert ctx is not None
    note("beats", (ctx.task_id, time.time()))
    return ctx.task_id


def test_every_ticks_at_multiples_since_the_epoch() -> None:
    entry = Periodic("e", beat, every=15)
    got = list(entry.ticks(T0 + timedelta(seconds=1), T0 + timedelta(seconds=46)))
    assert got == [T0 + timedelta(seconds=s) for s in (15, 30, 45)]


def test_cron_is_read_in_its_time_zone() -> None:
    entry = Periodic("c", beat, cron="0 9 * * *", tz="Europe/Berlin")
    (tick,) = entry.ticks(T0, T0 + timedelta(days=1))
    assert tick == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert tick_of(entry.task_id(tick)) == tick


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "either cron"),
        ({"cron": "* * * * *", "every": 5}, "either cron"),
        ({"cron": "61 * * * *"}, "bad cron expression"),
        ({"every": 0}, "every must be > 0"),
        ({"every": 5, "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 5, "name": "a@b"}, "must not contain '@'"),
    ],
)
def test_bad_schedules_are_refused(options: dict[str, object], message: str) -> None:
    queue = Queue("memory")
    with pytest.raises(InvalidArgument, match=message):
        queue.periodic(beat, **options)  # type: ignore[arg-type]


def test_a_name_is_registered_once() -> None:
    queue = Queue("memory")
    queue.periodic(beat, every=5)
    with pytest.raises(InvalidArgument, match="already registered"):
        queue.periodic(beat, every=10)


async def test_many_schedulers_store_each_tick_once() -> None:
    store = MemoryStore()
    queues = [Queue(store, name="cron") for _ in range(3)]
    for q in queues:
        q.periodic(beat, every=10, name="b")
    schedulers = [Scheduler(q, q.schedules, lookahead=60, clock=lambda: T0) for q in queues]
    stored = [await s.pass_once() for s in schedulers]
    assert stored == [7, 0, 0]  # ticks at 0, +10 .. +60 s, stored by whoever came first
    records = await store.get_many(
        "cron", [f"b@{(T0.timestamp() + s) * 1000:.0f}" for s in (10, 60)]
    )
    assert all(r is not None and r.state is TaskState.DEFERRED for r in records)
    assert await schedulers[0].pass_once() == 0  # nothing new until the clock moves


@pytest.mark.parametrize(("catch_up", "expected"), [(False, 7), (True, 12)])
async def test_missed_ticks_are_skipped_or_caught_up(catch_up: bool, expected: int) -> None:
    queue = Queue("memory", name="cron")
    queue.periodic(beat, every=10, name="b", catch_up=catch_up, catch_up_window=50)
    scheduler = Scheduler(queue, queue.schedules, lookahead=60, clock=lambda: T0)
    assert await scheduler.pass_once() == expected  # 0 .. +60 s; with catch-up from -50 s


async def test_workers_run_every_tick_once_and_never_early() -> None:
    NOTES["beats"].clear()
    store = MemoryStore()
    queues = [Queue(store, name="ticks") for _ in range(2)]
    for q in queues:
        q.periodic(beat, every=0.05, name="fast")
    workers = [Worker(q, concurrency=2) for q in queues]
    running = [asyncio.create_task(w.run()) for w in workers]
    try:
        await eventually(lambda: _count("beats"), lambda n: n >= 8, within=10)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*running)
    beats = NOTES["beats"]
    ids = [task_id for task_id, _ in beats]
    assert len(ids) == len(set(ids))  # each tick once, though two schedulers submitted it
    for task_id, ran_at in beats:
        tick = tick_of(task_id)
        assert tick is not None and ran_at >= tick.timestamp(), (task_id, ran_at)


async def _count(key: str) -> int:
    return len(NOTES[key])
