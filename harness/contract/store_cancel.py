"""The Store contract for cancellation and for watching tasks finish: every store (memory,
fakeredis, real Redis, Redis Cluster) cancels waiting and running tasks atomically, fences
off the running claim, deletes the payload, and wakes a watcher when a task finishes.
Run on your own store with `pytest --pyargs harness.contract.store_cancel --kew-store=...`."""

from __future__ import annotations

import asyncio
import time

import pytest

from harness.contract import public_tests, store_test
from kew_plug.errors import Unsupported
from kew_plug.interfaces import Store
from kew_plug.models import CancelOutcome, NewTask, Outcome, OutcomeKind, TaskState

LEASE = 30_000


async def cancel(store: Store, queue: str, ids: list[str]) -> list[CancelOutcome]:
    """Cancellation is optional (the Store default raises Unsupported): such a store skips."""
    try:
        return await store.cancel(queue, ids)
    except Unsupported as e:
        pytest.skip(str(e))


def task(i: str, delay_ms: int = 0) -> NewTask:
    return NewTask(i, f"payload-{i}".encode(), 0, delay_ms, 3)


@store_test
async def test_cancel_waiting_running_finished_and_unknown(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task("run"), task("later", delay_ms=60_000)])
    (claim,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    await store.enqueue(queue_name, [task("ready"), task("done")])
    (done,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    assert done.id == "ready"  # oldest first; complete it as "ready"
    await store.settle(queue_name, [Outcome(done.id, done.token, OutcomeKind.COMPLETE, b"r")])
    outcomes = await cancel(store, queue_name, ["run", "later", "done", "ready", "nope"])
    assert outcomes == [
        CancelOutcome.CANCELLED_RUNNING,
        CancelOutcome.CANCELLED,
        CancelOutcome.CANCELLED,
        CancelOutcome.FINISHED,
        CancelOutcome.UNKNOWN,
    ]
    for task_id in ("run", "later", "done"):
        record = await store.get(queue_name, task_id)
        assert record is not None and record.state is TaskState.CANCELLED
    assert await store.payload_ids(queue_name) == set()
    stats = await store.stats(queue_name)
    assert (stats.queued, stats.scheduled, stats.running) == (0, 0, 0)
    # The running claim is fenced off: no renewal, no settlement, and nothing to claim.
    assert await store.renew(queue_name, [claim], LEASE) == [False]
    complete = Outcome(claim.id, claim.token, OutcomeKind.COMPLETE, b"late")
    assert await store.settle(queue_name, [complete]) == [False]
    assert (await store.get(queue_name, "run")).state is TaskState.CANCELLED  # type: ignore[union-attr]
    assert (await store.claim(queue_name, "w", 10, LEASE)).claims == []
    assert await cancel(store, queue_name, ["run"]) == [CancelOutcome.FINISHED]


@store_test
async def test_watch_wakes_when_a_task_finishes(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task("a"), task("b")])
    claims = (await store.claim(queue_name, "w", 2, LEASE)).claims
    watcher = asyncio.create_task(store.watch(queue_name, ["a", "b"], 30.0))
    await asyncio.sleep(0)  # let it register before anything settles
    a, b = sorted(claims, key=lambda c: c.id)
    await store.settle(queue_name, [Outcome(a.id, a.token, OutcomeKind.COMPLETE, b"1")])
    await asyncio.sleep(0.05)
    assert not watcher.done()  # b is still running
    started = time.monotonic()
    await store.settle(queue_name, [Outcome(b.id, b.token, OutcomeKind.DEAD, error="x")])
    await asyncio.wait_for(watcher, 10)
    assert time.monotonic() - started < 5  # woken, not timed out


@store_test
async def test_watch_wakes_on_cancel_and_returns_for_finished_or_unknown(
    store: Store, queue_name: str
) -> None:
    await store.enqueue(queue_name, [task("c")])
    watcher = asyncio.create_task(store.watch(queue_name, ["c"], 30.0))
    await asyncio.sleep(0.05)
    await cancel(store, queue_name, ["c"])
    await asyncio.wait_for(watcher, 10)
    started = time.monotonic()
    await store.watch(queue_name, ["c", "unknown"], 30.0)  # nothing left to wait for
    assert time.monotonic() - started < 5


@store_test
async def test_watch_times_out_on_an_unfinished_task(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task("slow")])
    started = time.monotonic()
    await store.watch(queue_name, ["slow"], 0.2)
    assert 0.15 <= time.monotonic() - started < 5
    record = await store.get(queue_name, "slow")
    assert record is not None and record.state is TaskState.QUEUED


__all__ = public_tests(globals())
