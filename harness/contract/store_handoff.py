"""The Store contract for hand-offs (`Store.hands_off`): a submit may claim a task for a worker
that offered its free slots and hand it over while the worker waits. A handed task is a
claim like any other (fenced, renewable, recovered when its lease runs out), never overtakes
a task that was already waiting, and goes back to the queue when its worker withdraws.
A store without hand-offs skips. Run on your own store with
`pytest --pyargs harness.contract.store_handoff --kew-store=...`."""

from __future__ import annotations

import pytest

from harness.contract import eventually, public_tests, store_test
from kew_plug.interfaces import Store
from kew_plug.models import NewTask, Outcome, OutcomeKind, TaskState

LEASE = 30_000
OFFER = 30_000  # ms: longer than any test, so no offer lapses by chance
# ms: a lease the test waits out. Not much shorter: an inbox lives two leases, and under a
# loaded CI the wait that takes the hand-off may come 100 ms after the submit (seen).
STALL_LEASE = 500


def task(i: str) -> NewTask:
    return NewTask(i, f"payload-{i}".encode(), 0, 0, 3)


def needs_hand_offs(store: Store) -> None:
    if not store.hands_off:
        pytest.skip(f"{type(store).__name__} does not hand tasks to workers")


@store_test
async def test_a_submit_hands_the_task_to_the_waiting_worker(store: Store, queue_name: str) -> None:
    needs_hand_offs(store)
    offered = await store.claim_and_offer(queue_name, "w", 2, LEASE, OFFER)
    assert offered.claims == []
    await store.enqueue(queue_name, [task("a")])
    woken = await store.wait_handed(queue_name, "w", 5.0)
    (claim,) = woken.claims
    assert (claim.id, claim.attempt, claim.max_attempts, claim.payload) == ("a", 1, 3, b"payload-a")
    record = await store.get(queue_name, "a")
    assert record is not None and record.state is TaskState.RUNNING and record.worker == "w"
    assert await store.renew(queue_name, [claim], LEASE) == [True]
    done = Outcome("a", claim.token, OutcomeKind.COMPLETE, b"r")
    assert await store.settle(queue_name, [done]) == [True]
    assert (await store.stats(queue_name)).pending == 0


@store_test
async def test_a_hand_off_never_overtakes_a_waiting_task(store: Store, queue_name: str) -> None:
    needs_hand_offs(store)
    await store.enqueue(queue_name, [task("first")])
    (held,) = (await store.claim(queue_name, "other", 1, LEASE)).claims
    assert (await store.claim_and_offer(queue_name, "w", 1, LEASE, OFFER)).claims == []
    assert await store.release(queue_name, [held]) == [True]  # "first" waits again
    await store.enqueue(queue_name, [task("second")])
    woken = await store.wait_handed(queue_name, "w", 5.0)
    assert woken.claims == []  # a wake-up: claim, as any worker would
    batch = await store.claim_and_offer(queue_name, "w", 1, LEASE, OFFER)
    assert [c.id for c in batch.claims] == ["first"]


@store_test
async def test_a_handed_task_whose_lease_runs_out_is_recovered_and_fenced(
    store: Store, queue_name: str
) -> None:
    needs_hand_offs(store)
    await store.claim_and_offer(queue_name, "stalled", 1, STALL_LEASE, OFFER)
    await store.enqueue(queue_name, [task("a")])
    (zombie,) = (await store.wait_handed(queue_name, "stalled", 5.0)).claims
    # It stalls past its lease: only the lease brings the task back.
    report = await eventually(lambda: store.recover(queue_name), lambda r: bool(r.requeued))
    assert report.requeued == ["a"]
    (fresh,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    assert fresh.attempt == 2 and fresh.token != zombie.token
    late = Outcome("a", zombie.token, OutcomeKind.COMPLETE, b"zombie")
    assert await store.settle(queue_name, [late]) == [False]
    assert await store.renew(queue_name, [zombie], LEASE) == [False]


@store_test
async def test_what_a_dead_worker_never_took_is_recovered_and_cleared(
    store: Store, queue_name: str
) -> None:
    needs_hand_offs(store)
    await store.claim_and_offer(queue_name, "gone", 1, 50, OFFER)
    await store.enqueue(queue_name, [task("a")])
    report = await eventually(lambda: store.recover(queue_name), lambda r: bool(r.requeued))
    assert report.requeued == ["a"]
    assert await store.withdraw(queue_name, "gone") == []  # no payload left in its inbox
    (fresh,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    assert (fresh.id, fresh.payload) == ("a", b"payload-a")


@store_test
async def test_withdraw_gives_back_what_was_handed_and_ends_the_offer(
    store: Store, queue_name: str
) -> None:
    needs_hand_offs(store)
    await store.claim_and_offer(queue_name, "w", 3, LEASE, OFFER)
    await store.enqueue(queue_name, [task("a")])
    (untaken,) = await store.withdraw(queue_name, "w")
    assert untaken.id == "a"
    assert await store.release(queue_name, [untaken]) == [True]
    await store.enqueue(queue_name, [task("b")])  # no offer left: it waits in the queue
    batch = await store.claim(queue_name, "v", 2, LEASE)
    assert [(c.id, c.attempt) for c in batch.claims] == [("a", 1), ("b", 1)]


@store_test
async def test_tasks_handed_while_the_worker_was_busy_come_with_its_next_claim(
    store: Store, queue_name: str
) -> None:
    needs_hand_offs(store)
    await store.claim_and_offer(queue_name, "w", 2, LEASE, OFFER)
    await store.enqueue(queue_name, [task("a"), task("b"), task("c")])
    batch = await store.claim_and_offer(queue_name, "w", 5, LEASE, OFFER)
    # Two were handed over (two slots offered) and one waited: all three come back once.
    assert sorted(c.id for c in batch.claims) == ["a", "b", "c"]
    assert all(c.attempt == 1 and c.age_ms >= 0 for c in batch.claims)
    assert len({c.token for c in batch.claims}) == 3


__all__ = public_tests(globals())
