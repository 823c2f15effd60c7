"""The Store contract for big payloads and results, and for tracebacks: every store (memory,
fakeredis, real Redis, Redis Cluster) keeps them byte for byte up to the queue's
`max_payload_bytes` (16 MiB by default), and the Queue refuses one byte more before the
store sees it.
Run on your own store with `pytest --pyargs harness.contract.store_payloads --kew-store=...`."""

from __future__ import annotations

import os

import pytest

from harness.contract import public_tests, store_test
from kew_plug import Queue
from kew_plug.errors import PayloadTooLarge
from kew_plug.interfaces import Store
from kew_plug.models import TRACEBACK_LIMIT, NewTask, Outcome, OutcomeKind, TaskState
from kew_plug.queue import DEFAULT_MAX_PAYLOAD

LEASE = 30_000
KB, MB = 1024, 1024 * 1024


def blob(size: int) -> bytes:
    """Bytes no store could fake by compressing or truncating unnoticed."""
    return os.urandom(size)


# 6 KiB and one byte over: where the Redis store switches from 64-byte fields to one field.
SIZES = [1 * KB, 6 * KB, 6 * KB + 1, 100 * KB, 1 * MB, 10 * MB, DEFAULT_MAX_PAYLOAD]


@store_test
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s}B")
async def test_payload_and_result_up_to_the_limit_round_trip(
    store: Store, queue_name: str, size: int
) -> None:
    payload, result = blob(size), blob(size)
    report = await store.enqueue(queue_name, [NewTask("big", payload, max_attempts=2)])
    assert report.accepted == ["big"]
    # The same id with the same bytes is recognised as the caller's own earlier write.
    again = await store.enqueue(queue_name, [NewTask("big", payload, max_attempts=2)])
    assert again.duplicates == ["big"] and again.same_payload == ["big"]
    (claim,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    assert claim.payload == payload
    done = Outcome(claim.id, claim.token, OutcomeKind.COMPLETE, result=result)
    assert await store.settle(queue_name, [done]) == [True]
    record = await store.get(queue_name, "big")
    assert record is not None and record.state is TaskState.COMPLETED
    assert record.result == result and not record.has_payload
    assert await store.payload_ids(queue_name) == set()
    await store.purge(queue_name)


@store_test
async def test_a_big_dead_task_keeps_its_payload_for_requeue(store: Store, queue_name: str) -> None:
    payload = blob(1 * MB)
    await store.enqueue(queue_name, [NewTask("big", payload)])
    (claim,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    dead = Outcome(claim.id, claim.token, OutcomeKind.DEAD, error="boom")
    assert await store.settle(queue_name, [dead]) == [True]
    assert await store.requeue(queue_name, ["big"]) == [True]
    (again,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    assert again.payload == payload
    await store.purge(queue_name)


@store_test
async def test_one_byte_over_the_limit_is_refused_and_nothing_stored(
    store: Store, queue_name: str
) -> None:
    arg = blob(100 * KB)
    probe = Queue(store, name=queue_name)
    await probe.submit(len, (arg,), task_id="probe")
    (claim,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    exact = len(claim.payload)  # the serialized envelope of len(arg); the same for any id

    at_limit = Queue(store, name=queue_name, max_payload_bytes=exact)
    assert (await at_limit.submit(len, (arg,), task_id="exact")).accepted
    over = Queue(store, name=queue_name, max_payload_bytes=exact - 1)
    with pytest.raises(PayloadTooLarge, match=f"{exact} bytes, over the limit of {exact - 1}"):
        await over.submit(len, (arg,), task_id="over")
    assert await store.get(queue_name, "over") is None
    assert await store.payload_ids(queue_name) == {"probe", "exact"}


@store_test
async def test_a_failure_keeps_its_traceback_until_success_or_requeue(
    store: Store, queue_name: str
) -> None:
    await store.enqueue(queue_name, [NewTask("a", b"p", max_attempts=3)])
    (c1,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    trace = 'Traceback (most recent call last):\n  File "x.py"\nValueError: one'
    retry = Outcome(c1.id, c1.token, OutcomeKind.RETRY, error="ValueError: one", traceback=trace)
    assert await store.settle(queue_name, [retry]) == [True]
    (record,) = await store.get_many(queue_name, ["a"])
    assert record is not None and record.traceback == trace and record.error == "ValueError: one"

    (c2,) = (await store.claim(queue_name, "w", 1, LEASE)).claims  # delay 0: due at once
    # A failure without a traceback does not leave the previous attempt's behind.
    bare = Outcome(c2.id, c2.token, OutcomeKind.RETRY, error="lease lost")
    assert await store.settle(queue_name, [bare]) == [True]
    record = await store.get(queue_name, "a")
    assert record is not None and record.traceback is None

    (c3,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    done = Outcome(c3.id, c3.token, OutcomeKind.COMPLETE, result=b"ok")
    assert await store.settle(queue_name, [done]) == [True]
    record = await store.get(queue_name, "a")
    assert record is not None and record.traceback is None and record.error is None


@store_test
async def test_a_dead_task_keeps_the_end_of_a_long_traceback(store: Store, queue_name: str) -> None:
    await store.enqueue(queue_name, [NewTask("d", b"p")])
    (claim,) = (await store.claim(queue_name, "w", 1, LEASE)).claims
    trace = "".join(f"  frame {i}\n" for i in range(5000)) + "RuntimeError: the end"
    dead = Outcome(claim.id, claim.token, OutcomeKind.DEAD, error="RuntimeError", traceback=trace)
    assert await store.settle(queue_name, [dead]) == [True]
    record = await store.get(queue_name, "d")
    assert record is not None and record.traceback is not None
    assert len(record.traceback.encode()) <= TRACEBACK_LIMIT < len(trace)
    assert trace.endswith(record.traceback) and record.traceback.endswith("the end")

    assert await store.requeue(queue_name, ["d"]) == [True]
    record = await store.get(queue_name, "d")
    assert record is not None and record.traceback is None and record.error is None


__all__ = public_tests(globals())
