"""The Store contract: what every Store owes, whatever it is built on. This project runs it
on memory, fakeredis, real Redis and Redis Cluster; run it on yours with

    pytest --pyargs harness.contract.store --kew-store=myapp.queueing:make_store

Each test gets stores made by your factory on an event loop of its own (see
`harness.contract`); `make_store()` returns a store sharing state with the test's others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from harness.contract import eventually, public_tests, store_test
from kew_plug.errors import QueueFull, Unsupported
from kew_plug.interfaces import Store
from kew_plug.models import Claim, NewTask, Outcome, OutcomeKind, TaskState

StoreFactory = Callable[..., Store]
LEASE = 30_000


def task(i: int | str, priority: int = 0, delay_ms: int = 0, attempts: int = 3) -> NewTask:
    return NewTask(f"t{i}", f"payload-{i}".encode(), priority, delay_ms, attempts)


async def claim_all(store: Store, q: str, limit: int = 100, lease: int = LEASE) -> list[Claim]:
    return (await store.claim(q, "w", limit, lease)).claims


@store_test
async def test_enqueue_stores_record_and_payload(store: Store, queue_name: str) -> None:
    report = await store.enqueue(queue_name, [task(1), task(2)])
    assert report.accepted == ["t1", "t2"] and report.duplicates == []
    record = await store.get(queue_name, "t1")
    assert record is not None
    assert record.state is TaskState.QUEUED and record.has_payload and record.attempts == 0
    assert await store.payload_ids(queue_name) == {"t1", "t2"}
    assert await store.get(queue_name, "missing") is None


@store_test
async def test_duplicate_ids_reported_per_item_and_never_overwritten(
    store: Store, queue_name: str
) -> None:
    await store.enqueue(queue_name, [task(1)])
    clash = NewTask("t1", b"other", 5)
    report = await store.enqueue(queue_name, [clash, task(2), NewTask("t2", b"again")])
    assert report.accepted == ["t2"]
    assert report.duplicates == ["t1", "t2"]
    (c1, c2) = await claim_all(store, queue_name)
    assert {c1.payload, c2.payload} == {b"payload-1", b"payload-2"}


@store_test
async def test_max_size_refuses_the_whole_batch(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(i) for i in range(3)], max_size=4)
    with pytest.raises(QueueFull, match="max_size=4"):
        await store.enqueue(queue_name, [task(10), task(11)], max_size=4)
    assert (await store.stats(queue_name)).queued == 3
    assert await store.get(queue_name, "t10") is None
    await store.enqueue(queue_name, [task(10)], max_size=4)
    assert (await store.stats(queue_name)).queued == 4


@store_test
async def test_blocking_enqueue_is_the_same_enqueue(store: Store, queue_name: str) -> None:
    """A store declaring `enqueues_blocking` enqueues from a thread with no event loop
    exactly as `enqueue` does: reports, duplicates, max_size. Others refuse it."""
    if not store.enqueues_blocking:
        with pytest.raises(Unsupported):
            store.enqueue_blocking(queue_name, [task(1)])
        assert (await store.stats(queue_name)).queued == 0
        return
    report = await asyncio.to_thread(store.enqueue_blocking, queue_name, [task(1), task(2)])
    assert report.accepted == ["t1", "t2"] and report.duplicates == []
    clash = [NewTask("t1", b"other"), task(3)]
    report = await asyncio.to_thread(store.enqueue_blocking, queue_name, clash, 4)
    assert report.accepted == ["t3"] and report.duplicates == ["t1"]
    with pytest.raises(QueueFull, match="max_size=4"):
        await asyncio.to_thread(store.enqueue_blocking, queue_name, [task(4), task(5)], 4)
    assert (await store.stats(queue_name)).queued == 3
    claims = await claim_all(store, queue_name)
    assert sorted(c.payload for c in claims) == [b"payload-1", b"payload-2", b"payload-3"]


@store_test
async def test_claim_order_is_priority_then_age(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(1, 0), task(2, 5), task(3, 0), task(4, 5), task(5, -1)])
    order = [c.id for c in await claim_all(store, queue_name)]
    assert order == ["t2", "t4", "t1", "t3", "t5"]


@store_test
async def test_claim_respects_limit_and_counts_attempt(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(i) for i in range(5)])
    first = await claim_all(store, queue_name, limit=2)
    assert len(first) == 2 and all(c.attempt == 1 for c in first)
    assert len({c.token for c in first}) == 2
    stats = await store.stats(queue_name)
    assert (stats.queued, stats.running) == (3, 2)


@store_test
async def test_deferred_tasks_do_not_block_ready_ones(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task("late", priority=9, delay_ms=60_000), task("now")])
    batch = await store.claim(queue_name, "w", 10, LEASE)
    assert [c.id for c in batch.claims] == ["tnow"]
    assert batch.next_due_ms is not None and 50_000 < batch.next_due_ms <= 60_000
    record = await store.get(queue_name, "tlate")
    assert record is not None and record.state is TaskState.DEFERRED
    assert (await store.stats(queue_name)).scheduled == 1


@store_test
async def test_deferred_task_becomes_claimable_when_due(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task("soon", delay_ms=150)])
    assert await claim_all(store, queue_name) == []
    claims = await eventually(lambda: claim_all(store, queue_name), bool)
    assert [c.id for c in claims] == ["tsoon"]


@store_test
async def test_concurrent_claims_hand_each_task_out_once(
    make_store: StoreFactory, queue_name: str
) -> None:
    stores = [make_store() for _ in range(5)]
    await stores[0].enqueue(queue_name, [task(i) for i in range(10)])
    batches = await asyncio.gather(
        *(stores[i % 5].claim(queue_name, f"w{i}", 1, LEASE) for i in range(50))
    )
    ids = [c.id for b in batches for c in b.claims]
    assert sorted(ids) == sorted(f"t{i}" for i in range(10))
    assert len(ids) == 10


@store_test
async def test_settle_complete_keeps_result_and_deletes_payload(
    store: Store, queue_name: str
) -> None:
    await store.enqueue(queue_name, [task(1)])
    (c,) = await claim_all(store, queue_name)
    assert await store.settle(queue_name, [Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"R")]) == [
        True
    ]
    record = await store.get(queue_name, "t1")
    assert record is not None
    assert record.state is TaskState.COMPLETED and record.result == b"R"
    assert not record.has_payload
    assert await store.payload_ids(queue_name) == set()
    stats = await store.stats(queue_name)
    assert stats.pending == 0


@store_test
async def test_stale_token_changes_nothing(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(1)])
    (c,) = await claim_all(store, queue_name)
    stale = Outcome(c.id, c.token + 1000, OutcomeKind.COMPLETE, b"bad")
    assert await store.settle(queue_name, [stale]) == [False]
    record = await store.get(queue_name, "t1")
    assert record is not None and record.state is TaskState.RUNNING and record.has_payload
    good = Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"ok")
    assert await store.settle(queue_name, [good]) == [True]
    other = Outcome(c.id, c.token, OutcomeKind.DEAD, error="late")
    assert await store.settle(queue_name, [other]) == [False]
    record = await store.get(queue_name, "t1")
    assert record is not None and record.state is TaskState.COMPLETED and record.result == b"ok"


@pytest.mark.parametrize("kind", list(OutcomeKind))
@store_test
async def test_a_repeated_settlement_is_reported_applied_and_changes_nothing(
    store: Store, queue_name: str, kind: OutcomeKind
) -> None:
    """A settle whose reply was lost is sent again with the same token; it already took
    effect, so it is not a stale lease."""
    await store.enqueue(queue_name, [task(1)])
    (c,) = await claim_all(store, queue_name)
    outcome = Outcome(c.id, c.token, kind, b"R", error="e", delay_ms=60_000)
    assert await store.settle(queue_name, [outcome]) == [True]
    before, stats = await store.get(queue_name, "t1"), await store.stats(queue_name)
    assert await store.settle(queue_name, [outcome]) == [True]
    after = await store.get(queue_name, "t1")
    assert before is not None and after is not None
    assert (after.state, after.attempts, after.token) == (
        before.state,
        before.attempts,
        before.token,
    )
    assert await store.stats(queue_name) == stats


@store_test
async def test_settle_batch_mixes_outcomes(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(i) for i in range(3)])
    c0, c1, c2 = await claim_all(store, queue_name)
    applied = await store.settle(
        queue_name,
        [
            Outcome(c0.id, c0.token, OutcomeKind.COMPLETE, b"r0"),
            Outcome(c1.id, c1.token, OutcomeKind.RETRY, error="boom", delay_ms=60_000),
            Outcome(c2.id, c2.token, OutcomeKind.DEAD, error="fatal"),
        ],
    )
    assert applied == [True, True, True]
    states = [(await store.get(queue_name, f"t{i}")) for i in range(3)]
    assert [s.state for s in states if s] == [
        TaskState.COMPLETED,
        TaskState.RETRYING,
        TaskState.DEAD,
    ]
    assert states[1] is not None and states[1].error == "boom"
    assert states[2] is not None and states[2].error == "fatal"
    assert await store.dead_ids(queue_name) == ["t2"]
    assert await store.payload_ids(queue_name) == {"t1"}
    stats = await store.stats(queue_name)
    assert (stats.queued, stats.scheduled, stats.running, stats.dead) == (0, 1, 0, 1)


@store_test
async def test_retry_becomes_claimable_after_its_delay(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(1)])
    (c,) = await claim_all(store, queue_name)
    await store.settle(queue_name, [Outcome(c.id, c.token, OutcomeKind.RETRY, delay_ms=100)])
    (again,) = await eventually(lambda: claim_all(store, queue_name), bool)
    assert again.id == "t1" and again.attempt == 2 and again.token != c.token
    assert again.payload == b"payload-1"


@store_test
async def test_dead_task_can_be_requeued(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(1)])
    (c,) = await claim_all(store, queue_name)
    await store.settle(queue_name, [Outcome(c.id, c.token, OutcomeKind.DEAD, error="x")])
    assert await store.requeue(queue_name, ["t1", "nope"]) == [True, False]
    assert await store.dead_ids(queue_name) == []
    (again,) = await claim_all(store, queue_name)
    assert again.payload == b"payload-1" and again.attempt == 1


@store_test
async def test_release_returns_claim_without_counting_attempt(
    store: Store, queue_name: str
) -> None:
    await store.enqueue(queue_name, [task(1)])
    (c,) = await claim_all(store, queue_name)
    assert await store.release(queue_name, [c]) == [True]
    assert await store.release(queue_name, [c]) == [False]
    (again,) = await claim_all(store, queue_name)
    assert again.attempt == 1
    assert await store.settle(queue_name, [Outcome(c.id, c.token, OutcomeKind.COMPLETE)]) == [False]


@store_test
async def test_renew_extends_held_leases_and_reports_lost(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(1), task(2)])
    c1, c2 = await claim_all(store, queue_name, lease=300)
    await store.settle(queue_name, [Outcome(c2.id, c2.token, OutcomeKind.COMPLETE)])
    assert await store.renew(queue_name, [c1, c2], 60_000) == [True, False]
    # Let the original 300 ms lease run out: only the renewal keeps c1 from being recovered.
    await asyncio.sleep(0.4)
    assert (await store.recover(queue_name)).requeued == []
    record = await store.get(queue_name, "t1")
    assert record is not None and record.state is TaskState.RUNNING


@store_test
async def test_recover_requeues_expired_lease_and_fences_the_zombie(
    store: Store, queue_name: str
) -> None:
    await store.enqueue(queue_name, [task(1)])
    (zombie,) = await claim_all(store, queue_name, lease=50)
    report = await eventually(lambda: store.recover(queue_name), lambda r: bool(r.requeued))
    assert report.requeued == ["t1"] and report.dead == []
    (fresh,) = await claim_all(store, queue_name)
    assert fresh.attempt == 2 and fresh.token != zombie.token
    late = Outcome(zombie.id, zombie.token, OutcomeKind.COMPLETE, b"zombie")
    assert await store.settle(queue_name, [late]) == [False]
    assert await store.renew(queue_name, [zombie], LEASE) == [False]
    ok = Outcome(fresh.id, fresh.token, OutcomeKind.COMPLETE, b"fresh")
    assert await store.settle(queue_name, [ok]) == [True]
    record = await store.get(queue_name, "t1")
    assert record is not None and record.result == b"fresh"


@store_test
async def test_recover_dead_letters_when_attempts_exhausted(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(1, attempts=1)])
    await claim_all(store, queue_name, lease=50)
    report = await eventually(lambda: store.recover(queue_name), lambda r: bool(r.dead))
    assert report.dead == ["t1"]
    record = await store.get(queue_name, "t1")
    assert record is not None and record.state is TaskState.DEAD
    assert record.error is not None and "lease expired" in record.error
    assert await store.payload_ids(queue_name) == set()


@store_test
async def test_wait_wakes_on_enqueue_and_times_out_when_idle(
    make_store: StoreFactory, queue_name: str
) -> None:
    waiter, producer = make_store(), make_store()
    assert await waiter.wait(queue_name, 0.05) is False
    pending = asyncio.ensure_future(waiter.wait(queue_name, 5.0))
    await asyncio.sleep(0)  # let the waiter block before the enqueue it must see
    await producer.enqueue(queue_name, [task(1)])
    assert await asyncio.wait_for(pending, 3.0) is True


@store_test
async def test_results_expire_after_result_ttl(make_store: StoreFactory, queue_name: str) -> None:
    store = make_store(result_ttl=0.2)
    await store.enqueue(queue_name, [task(1)])
    (c,) = await claim_all(store, queue_name)
    await store.settle(queue_name, [Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"R")])
    assert await store.get(queue_name, "t1") is not None
    await eventually(lambda: store.get(queue_name, "t1"), lambda r: r is None)


@store_test
async def test_purge_removes_only_its_own_queue(store: Store, queue_name: str) -> None:
    other = f"{queue_name}-other"
    await store.enqueue(queue_name, [task(1)])
    await store.enqueue(other, [task(2)])
    assert await store.purge(queue_name) >= 1
    assert await store.get(queue_name, "t1") is None
    assert (await store.stats(queue_name)).pending == 0
    assert await store.get(other, "t2") is not None


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 200, 5000])
@store_test
async def test_payloads_of_any_size_come_back_byte_for_byte(
    store: Store, queue_name: str, size: int
) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    await store.enqueue(queue_name, [NewTask("big", payload, max_attempts=2)])
    (c,) = await claim_all(store, queue_name)
    assert c.payload == payload
    await store.settle(queue_name, [Outcome(c.id, c.token, OutcomeKind.DEAD, error="x")])
    assert await store.payload_ids(queue_name) == set()
    assert await store.requeue(queue_name, ["big"]) == [True]
    (again,) = await claim_all(store, queue_name)
    assert again.payload == payload
    assert await store.payload_ids(queue_name) == {"big"}


@store_test
async def test_running_tasks_show_their_deadline_and_worker(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [task(1), task(2)])
    (claim,) = (await store.claim(queue_name, "worker-a", 1, LEASE)).claims
    running = await store.running(queue_name)
    assert [(r.id, r.worker) for r in running] == [(claim.id, "worker-a")]
    deadline = await store.lease_deadline_ms(queue_name, claim.id)
    assert deadline is not None and running[0].deadline_ms == deadline
    record = await store.get(queue_name, claim.id)
    assert record is not None and record.worker == "worker-a"


HELD = "held-task"


@store_test
async def test_contents_show_payloads_until_they_are_gone(store: Store, queue_name: str) -> None:
    """`contents()` is optional (None: the store cannot tell); when given it is complete."""
    if await store.contents() is None:
        pytest.skip("the store does not report its contents")
    # Not hex, so it cannot turn up by chance in a random namespace or queue name.
    marker = b"contents-" + queue_name.encode() * 3
    await store.enqueue(queue_name, [NewTask(HELD, marker)])
    held = [e for e in await store.contents() or [] if marker in e.data]
    assert held and any(HELD in e.name for e in held)
    (claim,) = await claim_all(store, queue_name)
    await store.settle(queue_name, [Outcome(claim.id, claim.token, OutcomeKind.COMPLETE, b"r")])
    entries = await store.contents() or []
    assert not [e for e in entries if marker in e.data]
    mine = [e for e in entries if HELD in e.name]
    assert mine and all(0 < e.ttl_ms <= 3600 * 1000 for e in mine)


__all__ = public_tests(globals())
