"""Queue: composition from names or objects, submit and its validation, signing, results,
the dead-letter list and requeue."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kew_plug import (
    InvalidArgument,
    NewTask,
    PayloadTooLarge,
    Queue,
    QueueFull,
    RetryPolicy,
    SerializationError,
    TaskExists,
    TaskFailed,
    TaskHandle,
    TaskNotFound,
    TaskSpec,
    TaskState,
    UnknownBackend,
    Worker,
)
from kew_plug.backends.breakers import LocalBreaker
from kew_plug.backends.memory import MemoryStore
from kew_plug.interfaces import Store
from kew_plug.serializers.framing import SIGNED_PREFIX
from kew_plug.serializers.pickling import CloudpickleSerializer, DillSerializer, PickleSerializer
from kew_plug.serializers.signed import Signed
from tests.conftest import StoreFactory
from tests.helpers import eventually

SECRET_A = "a-secret-that-is-long-enough-1"
SECRET_B = "b-secret-that-is-long-enough-2"

# Module-level state: functions defined at module level travel by reference, so the worker
# (same process) mutates these very objects.
CALLS: Counter[str] = Counter()
BROKEN: set[str] = set()


def add(a: int, b: int) -> int:
    return a + b


async def async_add(a: int, b: int) -> int:
    return a + b


def called(key: str) -> str:
    CALLS[key] += 1
    return key


def fails_while_broken(key: str) -> str:
    CALLS[key] += 1
    if key in BROKEN:
        raise RuntimeError(f"{key} is broken")
    return f"fixed {key}"


def always_fails(message: str) -> None:
    raise ValueError(message)


def custom_store_factory() -> MemoryStore:
    store = MemoryStore()
    store.made_by_factory = True  # type: ignore[attr-defined]
    return store


def not_a_store() -> object:
    return object()


async def drain(w: Worker, within: float = 20.0) -> None:
    """Run the worker until the queue is empty; a hang fails the test instead of stalling it."""
    await asyncio.wait_for(w.drain(), within)


def worker(queue: Queue, **options: Any) -> Worker:
    options.setdefault("retry", RetryPolicy(base=0.01))
    options.setdefault("wait_timeout", 0.05)
    return Worker(queue, **options)


async def nothing_stored(store: Store, name: str) -> bool:
    stats = await store.stats(name)
    return stats.pending == 0 and stats.dead == 0 and await store.payload_ids(name) == set()


async def peek_payload(store: Store, name: str) -> bytes:
    """The raw stored payload of the one ready task, read through claim and handed back."""
    batch = await store.claim(name, "peek", 1, 10_000)
    (claim,) = batch.claims
    assert await store.release(name, batch.claims) == [True]
    return claim.payload


# -- composition ---------------------------------------------------------------------------


def test_composition_by_names() -> None:
    q = Queue("memory", "cloudpickle", "local")
    assert isinstance(q.store, MemoryStore)
    assert isinstance(q.serializer, CloudpickleSerializer)
    assert isinstance(q.breaker, LocalBreaker)
    assert isinstance(Queue("memory", "dill").serializer, DillSerializer)
    assert isinstance(Queue("memory", "pickle").serializer, PickleSerializer)
    assert Queue("memory", "pickle", "none").breaker is None
    assert Queue().breaker is None


def test_composition_by_objects() -> None:
    store, ser, breaker = MemoryStore(), DillSerializer(), LocalBreaker(failure_threshold=3)
    q = Queue(store, ser, breaker, name="objects")
    assert q.store is store
    assert q.serializer is ser
    assert q.breaker is breaker
    assert q.name == "objects"


def test_composition_by_module_factory_strings() -> None:
    q = Queue(
        "tests.test_queue:custom_store_factory",
        "kew_plug.serializers.pickling:DillSerializer",
        "kew_plug.backends.breakers:LocalBreaker",
    )
    assert isinstance(q.store, MemoryStore)
    assert getattr(q.store, "made_by_factory", False)
    assert isinstance(q.serializer, DillSerializer)
    assert isinstance(q.breaker, LocalBreaker)
    assert isinstance(Queue("kew_plug.backends.memory:MemoryStore").store, MemoryStore)


@pytest.mark.parametrize(
    ("kwargs", "kind", "known"),
    [
        (
            {"store": "mongo"},
            "store",
            ["memory", "fakeredis", "redis://", "rediss://", "unix://", "redis+cluster://"],
        ),
        ({"serializer": "json"}, "serializer", ["cloudpickle", "dill", "pickle"]),
        ({"breaker": "global"}, "breaker", ["local", "redis"]),
    ],
)
def test_unknown_names_raise_listing_the_known_ones(
    kwargs: dict[str, str], kind: str, known: list[str]
) -> None:
    with pytest.raises(UnknownBackend) as info:
        Queue(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert f"unknown {kind}" in message
    assert repr(next(iter(kwargs.values()))) in message
    for name in known:
        assert name in message
    assert isinstance(info.value, LookupError)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"store": "no_such_module_xyz:Factory"}, "cannot import 'no_such_module_xyz'"),
        ({"store": "kew_plug.backends.memory:NoSuchThing"}, "has no 'NoSuchThing'"),
        ({"store": "tests.test_queue:not_a_store"}, "not a store"),
        ({"serializer": "kew_plug.backends.memory:MemoryStore"}, "not a serializer"),
        ({"store": "rediss//127.0.0.1:6379/0"}, "a URL with a mistyped scheme"),
        ({"store": "redis:/127.0.0.1/0"}, "a URL with a mistyped scheme"),
    ],
)
def test_bad_module_factory_strings_say_what_is_wrong(kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(UnknownBackend, match=needle):
        Queue(**kwargs)  # type: ignore[arg-type]


def test_redis_breaker_on_memory_store_is_refused_clearly() -> None:
    with pytest.raises(UnknownBackend) as info:
        Queue("memory", "cloudpickle", "redis")
    message = str(info.value)
    assert "MemoryStore cannot share breaker state" in message
    assert "'redis'" in message


# -- submit --------------------------------------------------------------------------------


async def test_submit_returns_a_handle(make_store: StoreFactory, queue_name: str) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    handle = await q.submit(add, (2, 3), task_id="sum-1")
    assert isinstance(handle, TaskHandle)
    assert handle.id == "sum-1" and handle.accepted and handle.queue is q
    assert await handle.status() is TaskState.QUEUED
    anonymous = await q.submit(async_add, (4,), {"b": 5})
    assert anonymous.id and anonymous.id != "sum-1"
    await drain(worker(q))
    assert await handle.result(timeout=5) == 5
    assert await anonymous.result(timeout=5) == 9
    assert await handle.status() is TaskState.COMPLETED
    assert await store.payload_ids(queue_name) == set()


async def test_duplicate_task_id_raises_and_leaves_original(
    make_store: StoreFactory, queue_name: str
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    await q.submit(add, (1, 1), task_id="once", priority=3)
    with pytest.raises(TaskExists, match="'once'") as info:
        await q.submit(add, (100, 100), task_id="once", priority=7, retries=9)
    assert info.value.task_id == "once"
    record = await q.info("once")
    assert record is not None
    assert record.priority == 3 and record.max_attempts == q.retries + 1
    assert (await store.stats(queue_name)).queued == 1
    await drain(worker(q))
    assert await q.result("once", timeout=5) == 2


async def test_submit_many_reports_duplicates_per_item(
    make_store: StoreFactory, queue_name: str
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    await q.submit(add, (0, 0), task_id="old")
    handles = await q.submit_many(
        [
            TaskSpec(add, (1, 1), task_id="new-1"),
            TaskSpec(add, (9, 9), task_id="old"),
            TaskSpec(add, (2, 2), task_id="new-2"),
            TaskSpec(add, (7, 7), task_id="new-1"),  # repeated inside the batch
        ]
    )
    assert [(h.id, h.accepted) for h in handles] == [
        ("new-1", True),
        ("old", False),
        ("new-2", True),
        ("new-1", False),
    ]
    assert (await store.stats(queue_name)).queued == 3
    await drain(worker(q))
    assert await q.result("old", timeout=5) == 0
    assert await q.result("new-1", timeout=5) == 2  # the first spec with that id won
    assert await q.result("new-2", timeout=5) == 4
    assert await q.submit_many([]) == []


@pytest.mark.parametrize("kind", ["lambda", "closure"])
async def test_pickle_refuses_lambda_and_closure_at_submit(kind: str) -> None:
    offset = 3
    if kind == "lambda":
        fn = lambda x: x + offset  # noqa: E731
        needle = "<lambda>"
    else:

        def shifted(x: int) -> int:
            return x + offset

        fn, needle = shifted, "<locals>.shifted"
    q = Queue("memory", "pickle", name="strict")
    with pytest.raises(SerializationError) as info:
        await q.submit(fn, (1,))
    message = str(info.value)
    assert needle in message
    assert "'pickle'" in message
    assert info.value.serializer == "pickle"
    assert await nothing_stored(q.store, q.name)


@pytest.mark.parametrize(("args", "kwargs", "needle"), [
    ((1, threading.Lock()), {}, "cannot serialize args[1] (lock) of task"),
    ((), {"guard": threading.Lock()}, "cannot serialize kwargs['guard'] (lock) of task"),
])  # fmt: skip
async def test_an_argument_that_cannot_be_serialized_is_named(
    args: tuple[Any, ...], kwargs: dict[str, Any], needle: str
) -> None:
    q = Queue("memory", name="strict", secret=SECRET_A)  # signing wraps the serializer
    with pytest.raises(SerializationError) as info:
        await q.submit(add, args, kwargs)
    message = str(info.value)
    assert needle in message and "tests.test_queue.add" in message
    # The cause once, from the serializer that failed: no nested "cannot serialize".
    assert message.count("cannot serialize") == 1 and "TypeError" in message
    assert await nothing_stored(q.store, q.name)


async def test_pickle_refusal_in_a_batch_stores_nothing() -> None:
    q = Queue("memory", "pickle", name="strict")
    with pytest.raises(SerializationError, match="<lambda>"):
        await q.submit_many([TaskSpec(add, (1, 2)), TaskSpec(lambda: 1)])
    assert await nothing_stored(q.store, q.name)


NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"task_id": ""}, "task id must not be empty"),
        ({"task_id": "x" * 257}, "task id is 257 chars long"),
        ({"task_id": 42}, "task id must be a str"),
        ({"task_id": "a{b}"}, "contains a brace"),
        ({"task_id": "line\nbreak"}, "control character"),
        ({"priority": 1001}, "priority 1001 is outside"),
        ({"priority": -1001}, "priority -1001 is outside"),
        ({"priority": True}, "priority must be an int"),
        ({"priority": 1.5}, "priority must be an int"),
        ({"delay": -1}, "delay must be >= 0"),
        ({"delay": math.nan}, "delay must be"),
        ({"delay": math.inf}, "delay must be"),
        ({"delay": 10**12}, "at most"),
        ({"delay": timedelta(days=-1)}, "delay must be >= 0"),
        ({"delay": "5"}, "delay must be a number"),
        ({"delay": 1, "at": NOW}, "either delay or at"),
        ({"at": NOW + timedelta(days=3650)}, "at most"),
        ({"at": "tomorrow"}, "at must be a datetime"),
        ({"timeout": -1}, "timeout must be > 0"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"timeout": math.nan}, "timeout must be"),
        ({"retries": -1}, "retries must be an int"),
        ({"retries": 2.0}, "retries must be an int"),
        ({"retries": 10**6}, "retries must be an int"),
        ({"args": "hello"}, "a single argument needs a trailing comma"),
        ({"args": b"raw"}, "args must be a tuple or list of arguments, not a bytes"),
        ({"args": 5}, "args must be a tuple or list of arguments, not int"),
        ({"args": {"a": 1}}, "keywords go in kwargs"),
        ({"args": (i for i in range(2))}, "not generator"),
        ({"kwargs": [("a", 1)]}, "kwargs must be a mapping"),
        ({"kwargs": {1: 2}}, "kwargs names must be str, got 1"),
    ],
)
async def test_bad_input_is_refused_naming_the_problem(kwargs: dict[str, Any], needle: str) -> None:
    q = Queue("memory", name="strict")
    kwargs.setdefault("args", (1, 2))
    with pytest.raises(InvalidArgument) as info:
        await q.submit(add, **kwargs)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)
    assert await nothing_stored(q.store, q.name)


async def test_args_may_be_any_sequence_but_text() -> None:
    q = Queue("memory", name="sequences")
    handles = [await q.submit(add, args) for args in ((1, 2), [1, 2], range(1, 3))]
    await worker(q).drain()
    assert [await h.result(timeout=5) for h in handles] == [3, 3, 3]


async def test_non_callable_task_is_refused() -> None:
    q = Queue("memory")
    with pytest.raises(InvalidArgument, match="must be callable"):
        await q.submit(42)  # type: ignore[arg-type]
    assert await nothing_stored(q.store, q.name)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("", "queue name must not be empty"),
        ("q" * 257, "queue name is 257 chars long"),
        (7, "queue name must be a str"),
        ("{tag}", "contains a brace"),
    ],
)
def test_bad_queue_names_are_refused(name: Any, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle.replace("{", r"\{")):
        Queue("memory", name=name)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"retries": -1}, "retries must be an int"),
        ({"timeout": -2}, "timeout must be"),
        ({"max_size": 0}, "max_size must be a positive int"),
        ({"max_size": 2.5}, "max_size must be a positive int"),
    ],
)
def test_bad_queue_options_are_refused(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        Queue("memory", **kwargs)


async def test_limits_on_ids_are_inclusive() -> None:
    q = Queue("memory", name="n" * 256)
    handle = await q.submit(add, (1, 2), task_id="t" * 256, priority=1000)
    assert handle.accepted
    await q.submit(add, (1, 2), priority=-1000, retries=0, timeout=0.5, delay=0)


async def test_payload_over_max_payload_bytes_is_refused() -> None:
    q = Queue("memory", max_payload_bytes=1000)
    await q.submit(add, ("a" * 100, "b"))  # under the limit: fine
    with pytest.raises(PayloadTooLarge) as info:
        await q.submit(add, ("x" * 5000, "y"))
    assert info.value.limit == 1000 and info.value.size > 5000
    assert "over the limit of 1000 bytes" in str(info.value)
    assert (await q.store.stats(q.name)).queued == 1


async def test_max_size_raises_queue_full_and_stores_nothing(
    make_store: StoreFactory, queue_name: str
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name, max_size=3)
    await q.submit_many([TaskSpec(add, (i, i), task_id=f"t{i}") for i in range(2)])
    with pytest.raises(QueueFull, match="max_size=3"):
        await q.submit_many([TaskSpec(add, (i, i), task_id=f"t{i}") for i in range(2, 4)])
    assert (await store.stats(queue_name)).queued == 2
    assert await q.info("t2") is None and await q.info("t3") is None
    await q.submit(add, (2, 2), task_id="t2", delay=60)  # deferred tasks count too
    with pytest.raises(QueueFull):
        await q.submit(add, (3, 3), task_id="t3")
    assert await q.info("t3") is None
    assert await store.payload_ids(queue_name) == {"t0", "t1", "t2"}


async def test_delay_and_at_defer_the_task(make_store: StoreFactory, queue_name: str) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    by_delay = await q.submit(add, (1, 2), delay=60)
    by_timedelta = await q.submit(add, (1, 2), delay=timedelta(minutes=1))
    by_at = await q.submit(add, (1, 2), at=datetime.now(UTC) + timedelta(minutes=1))
    past_at = await q.submit(add, (1, 2), at=datetime.now(UTC) - timedelta(minutes=1))
    now = await q.submit(add, (1, 2))
    for handle in (by_delay, by_timedelta, by_at):
        assert await handle.status() is TaskState.DEFERRED
    assert await past_at.status() is TaskState.QUEUED
    assert await now.status() is TaskState.QUEUED
    stats = await store.stats(queue_name)
    assert stats.scheduled == 3 and stats.queued == 2


# -- signing -------------------------------------------------------------------------------


async def test_secret_signs_payloads_and_other_secret_cannot_read_them(
    make_store: StoreFactory, queue_name: str
) -> None:
    store = make_store()
    signer = Queue(store, name=queue_name, secret=SECRET_A)
    assert isinstance(signer.serializer, Signed)
    handle = await signer.submit(called, ("signed-task",))
    assert (await peek_payload(store, queue_name)).startswith(SIGNED_PREFIX)

    stranger = Queue(store, name=queue_name, secret=SECRET_B)
    before = CALLS["signed-task"]
    await drain(worker(stranger))
    assert CALLS["signed-task"] == before  # never ran
    record = await signer.info(handle.id)
    assert record is not None and record.state is TaskState.DEAD
    assert record.error is not None and record.error.startswith("PayloadError:")
    assert "signature matches no configured key" in record.error
    with pytest.raises(TaskFailed, match="PayloadError"):
        await signer.result(handle.id, timeout=5)


async def test_same_secret_round_trips(make_store: StoreFactory, queue_name: str) -> None:
    store = make_store()
    q = Queue(store, name=queue_name, secret=SECRET_A)
    handle = await q.submit(add, (20, 22))
    # A second queue object with the old key among its keys (rotation) can run it.
    rotated = Queue(store, name=queue_name, secret=[SECRET_B, SECRET_A])
    await drain(worker(rotated))
    # The result is signed with the rotated queue's first key, so read it back there.
    assert await rotated.result(handle.id, timeout=5) == 42


async def test_secret_from_environment_enables_signing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEW_PLUG_SECRET", f"{SECRET_A},{SECRET_B}")
    q = Queue("memory", name="env")
    assert isinstance(q.serializer, Signed)
    await q.submit(add, (1, 2))
    assert (await peek_payload(q.store, q.name)).startswith(SIGNED_PREFIX)
    # The second key verifies too (rotation); an explicit secret overrides the variable.
    assert isinstance(Queue("memory", secret=SECRET_B).serializer, Signed)
    monkeypatch.delenv("KEW_PLUG_SECRET")
    q2 = Queue("memory", name="plain")
    assert not isinstance(q2.serializer, Signed)
    await q2.submit(add, (1, 2))
    assert not (await peek_payload(q2.store, q2.name)).startswith(SIGNED_PREFIX)


async def test_env_secret_mismatch_dead_letters_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    monkeypatch.setenv("KEW_PLUG_SECRET", SECRET_B)
    signed = Queue(store, name="env")
    handle = await signed.submit(called, ("env-signed",))
    monkeypatch.setenv("KEW_PLUG_SECRET", SECRET_A)
    await drain(worker(Queue(store, name="env")))
    with pytest.raises(TaskFailed, match="signature matches no configured key"):
        await signed.result(handle.id, timeout=5)


# -- results, dead letters, requeue --------------------------------------------------------


async def test_result_errors() -> None:
    q = Queue("memory", name="results")
    dead = await q.submit(always_fails, ("kaput",), retries=0)
    waiting = await q.submit(add, (1, 2), delay=60)
    with pytest.raises(TaskNotFound, match="no task 'missing' in queue 'results'"):
        await q.result("missing", timeout=1)
    with pytest.raises(TimeoutError):
        await q.result(waiting.id, timeout=0.05)
    # The deferred task would keep drain() waiting: run the worker until the failure lands.
    w = worker(q)
    run = asyncio.create_task(w.run())
    with pytest.raises(TaskFailed) as info:
        await dead.result(timeout=5)
    w.stop()
    await run
    assert info.value.task_id == dead.id
    assert info.value.error == "ValueError: kaput"
    assert "ValueError: kaput" in str(info.value)
    assert await waiting.status() is TaskState.DEFERRED


async def test_dead_lists_records_and_requeue_runs_them_again(
    make_store: StoreFactory, queue_name: str
) -> None:
    store = make_store()
    q = Queue(store, name=queue_name)
    keys = [f"{queue_name}-{i}" for i in range(3)]
    BROKEN.update(keys[:2])
    handles = [await q.submit(fails_while_broken, (k,), task_id=k, retries=1) for k in keys]
    await drain(worker(q))
    dead = await q.dead()
    assert sorted(r.id for r in dead) == sorted(keys[:2])
    for record in dead:
        assert record.state is TaskState.DEAD
        assert record.attempts == 2
        assert record.error == f"RuntimeError: {record.id} is broken"
    assert await handles[2].result(timeout=5) == f"fixed {keys[2]}"
    assert await q.dead(limit=1) == dead[:1]

    BROKEN.difference_update(keys)
    assert await q.requeue([*keys[:2], keys[2], "nope"]) == [True, True, False, False]
    assert await q.dead() == []
    for k in keys[:2]:
        record = await q.info(k)
        assert record is not None and record.state is TaskState.QUEUED and record.attempts == 0
    await drain(worker(q))
    for k in keys[:2]:
        assert await q.result(k, timeout=5) == f"fixed {k}"
        assert CALLS[k] == 3  # two failed attempts, then the requeued run
    assert await store.payload_ids(queue_name) == set()


async def test_queue_is_an_async_context_manager() -> None:
    async with Queue("memory", name="ctx") as q:
        await q.store.enqueue(q.name, [NewTask("raw", b"x")])
        assert await q.status("raw") is TaskState.QUEUED
        assert await q.status("other") is None


def test_a_missing_optional_dependency_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "dill", None)  # import dill now raises ImportError
    with pytest.raises(UnknownBackend, match=r"pip install 'kew-plug\[dill\]'"):
        Queue("memory", "dill")


def test_a_lazily_exported_part_names_its_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import kew_plug

    monkeypatch.setitem(sys.modules, "fakeredis", None)
    monkeypatch.delitem(sys.modules, "kew_plug.backends.fake", raising=False)
    monkeypatch.delitem(kew_plug.__dict__, "FakeRedisStore", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'kew-plug\[fakeredis\]'"):
        kew_plug.FakeRedisStore  # noqa: B018


async def test_a_task_scheduled_for_later_is_not_counted_as_waiting(
    make_store: StoreFactory,
) -> None:
    # Periodic ticks are submitted ahead of their time: an idle queue must not look late,
    # nor a busy one whose ticks wait a moment in the ready set.
    store = make_store()
    q = Queue(store, name="oldest")
    await q.submit(add, (1, 2), delay=300)
    assert await store.oldest_waiting_ms(q.name) is None
    submitted_ms = time.time() * 1000
    await q.submit(add, (1, 2), delay=0.3)
    due_ms = await eventually(lambda: store.oldest_waiting_ms(q.name), lambda t: t is not None)
    assert due_ms > submitted_ms + 150  # since it came due, not since its submit
    # A claim promotes it to the ready set (and takes a task of higher priority instead):
    # it still waits since it came due.
    first = await q.submit(add, (3, 4), priority=5)
    batch = await store.claim(q.name, "inspector", 1, 60_000)
    assert [c.id for c in batch.claims] == [first.id]
    assert await store.oldest_waiting_ms(q.name) == due_ms
