"""Queue: a store, a serializer and an optional breaker composed into one submit/result API.
Policy lives here (validation, serialization, signing); the store only moves bytes."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kew_plug import validate
from kew_plug.errors import (
    Closed,
    InvalidArgument,
    PayloadTooLarge,
    QueueFull,
    SerializationError,
    StoreUnavailable,
    TaskExists,
)
from kew_plug.group_commit import GroupCommit
from kew_plug.ids import new_task_id
from kew_plug.interfaces import Breaker, Serializer, Store
from kew_plug.models import CancelOutcome, EnqueueReport, NewTask, TaskRecord, TaskState
from kew_plug.registry import load_object, make_breaker, make_serializer, make_store
from kew_plug.results import wait_for_results

if TYPE_CHECKING:
    from kew_plug.periodic import Periodic

log = logging.getLogger("kew_plug")

SECRET_ENV = "KEW_PLUG_SECRET"
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
# The most concurrent submits one store call carries: items, and payload bytes (a call is
# one message to the store, which must hold it whole).
GROUP_MAX = 1000
GROUP_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task for `Queue.submit_many`. `fn` may be a coroutine function or a plain one."""

    fn: Callable[..., Any]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    priority: int = 0
    delay: float | timedelta | None = None
    at: datetime | None = None
    retries: int | None = None
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class TaskHandle:
    id: str
    queue: Queue
    accepted: bool = True  # False: the id already existed and nothing was stored

    async def result(self, timeout: float | None = None) -> Any:
        return await self.queue.result(self.id, timeout)

    async def status(self) -> TaskState | None:
        return await self.queue.status(self.id)


def signing_keys(secret: str | bytes | Sequence[str | bytes] | None) -> list[bytes] | None:
    """Keys from the argument or, failing that, the KEW_PLUG_SECRET variable (comma-separated
    for rotation: the first signs, all verify)."""
    if secret is None:
        env = os.environ.get(SECRET_ENV)
        if not env:
            return None
        secret = env.split(",")
    items = [secret] if isinstance(secret, str | bytes) else list(secret)
    return [k.encode() if isinstance(k, str) else k for k in items]


def accepted_per_item(items: Sequence[NewTask], report: EnqueueReport, retried: bool) -> list[bool]:
    """Per item, not per id: when an id repeats within the batch the store keeps the first
    occurrence, so only that one is accepted. `retried`: the call was sent again after a
    lost reply, so an id holding exactly our payload was stored by our own lost attempt."""
    fresh = set(report.accepted)
    if retried:
        fresh |= set(report.same_payload)
    accepted = []
    for i in items:
        accepted.append(i.id in fresh)
        fresh.discard(i.id)
    return accepted


class Queue:
    """A named queue over a Store. Parts may be objects or registry names:
    `Queue("redis://localhost/0", "dill", "redis", name="emails", secret=...)`."""

    def __init__(
        self,
        store: Store | str = "memory",
        serializer: Serializer | str = "cloudpickle",
        breaker: Breaker | str | None = None,
        *,
        name: str = "default",
        secret: str | bytes | Sequence[str | bytes] | None = None,
        retries: int = 2,
        timeout: float | None = None,
        max_size: int | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        breaker_options: Mapping[str, float] | None = None,
        submit_retries: int = 3,
    ) -> None:
        self.name = validate.name("queue name", name)
        self.store = make_store(store)
        inner = make_serializer(serializer)
        keys = signing_keys(secret)
        if keys is not None:
            signed_cls = load_object("kew_plug.serializers.signed:Signed", "serializer", ["signed"])
            inner = signed_cls(inner, keys)
        elif self.store.networked:
            log.warning(
                "queue %r: payloads are not signed; anyone who can write to the store can run "
                "code in every worker. Pass secret=... or set %s.",
                self.name,
                SECRET_ENV,
            )
        self.serializer: Serializer = inner
        # Plain pickle sends functions by name, which a worker cannot resolve for __main__.
        self._by_name = inner.name.rsplit(":", 1)[-1] == "pickle"
        self.breaker = make_breaker(breaker, self.store, self.name, **(breaker_options or {}))
        self.retries = validate.retries(retries)
        self.timeout = None if timeout is None else validate.seconds("timeout", timeout)
        if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
            raise InvalidArgument(f"max_size must be a positive int or None, got {max_size!r}")
        self.max_size = max_size
        self.max_payload_bytes = max_payload_bytes
        self.submit_retries = validate.retries(submit_retries)
        self.closed = False
        self.schedules: list[Periodic] = []
        # One line of waiting submits per event loop: a future belongs to its loop.
        self._groups: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, GroupCommit[NewTask, bool | QueueFull]
        ] = weakref.WeakKeyDictionary()

    def _open(self) -> Store:
        """The store, or `Closed` once this queue was closed."""
        if self.closed:
            raise Closed(f"queue {self.name!r}")
        return self.store

    def periodic(
        self,
        fn: Callable[..., Any],
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        catch_up: bool = False,
        catch_up_window: float = 3600.0,
        priority: int = 0,
        retries: int | None = None,
        timeout: float | None = None,
        lookahead: float = 60.0,
    ) -> Periodic:
        """Run `fn` on a schedule: `cron="*/5 * * * *"` in time zone `tz`, or `every=`
        seconds (ticks at multiples of it since the epoch). Every Worker of this queue
        submits the ticks; the store keeps one task per tick. `name` (default: the
        function's qualified name) must be the same in every process. With `catch_up`, a
        starting worker also submits the ticks of the last `catch_up_window` seconds that
        nobody submitted; without it they are skipped. Ticks are submitted `lookahead`
        seconds ahead of their time."""
        from kew_plug.periodic import Periodic

        entry = Periodic(
            name=name or f"{fn.__module__}.{fn.__qualname__}",
            fn=fn,
            cron=cron,
            every=every,
            tz=tz,
            args=validate.args(args),
            kwargs=validate.kwargs(kwargs or {}),
            catch_up=catch_up,
            catch_up_window=catch_up_window,
            priority=priority,
            retries=retries,
            timeout=timeout,
            lookahead=lookahead,
        )
        if any(e.name == entry.name for e in self.schedules):
            raise InvalidArgument(f"a periodic task named {entry.name!r} is already registered")
        self.schedules.append(entry)
        return entry

    # -- submitting ---------------------------------------------------------------------

    def _culprit(self, envelope: tuple[Any, ...]) -> str:
        """Which argument the serializer refused ("args[1] (lock) of "), found by trying
        each alone; empty when it is the function itself or no single one fails."""
        _, args, kwargs, _ = envelope
        named = [(f"args[{i}]", v) for i, v in enumerate(args)]
        named += [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
        for label, value in named:
            try:
                self.serializer.dumps(value)
            except SerializationError:
                return f"{label} ({type(value).__qualname__}) of "
        return ""

    def _encode(self, spec: TaskSpec) -> NewTask:
        if not callable(spec.fn):
            raise InvalidArgument(f"task function must be callable, not {type(spec.fn).__name__}")
        # Short, since the id is stored three times; generated ids need no checking.
        given = spec.task_id
        task_id = new_task_id() if given is None else validate.name("task id", given)
        timeout = self.timeout if spec.timeout is None else spec.timeout
        if timeout is not None:
            timeout = validate.seconds("timeout", timeout, allow_zero=False)
        if self._by_name and _in_main(spec.fn):
            raise SerializationError(
                f"task {_describe(spec.fn)}",
                self.serializer.name,
                "pickle sends functions by name, and a function defined in __main__ cannot be "
                "imported by a worker process; move it to a module or use cloudpickle or dill",
            )
        envelope = (spec.fn, validate.args(spec.args), validate.kwargs(spec.kwargs), timeout)
        try:
            payload = self.serializer.dumps(envelope)
        except SerializationError as e:
            what = f"{self._culprit(envelope)}task {_describe(spec.fn)}"
            raise SerializationError(what, self.serializer.name, _root_cause(e)) from e
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload of task {_describe(spec.fn)}", len(payload), self.max_payload_bytes
            )
        retries = self.retries if spec.retries is None else validate.retries(spec.retries)
        plain = type(spec.priority) is int and not spec.priority
        plain = plain and spec.delay is None and spec.at is None
        return NewTask(
            id=task_id,
            payload=payload,
            priority=0 if plain else validate.priority(spec.priority),
            delay_ms=0 if plain else validate.delay_ms(spec.delay, spec.at),
            max_attempts=retries + 1,
            new_id=given is None,
        )

    async def submit(
        self,
        fn: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> TaskHandle:
        """Store one task; raises `TaskExists` if `task_id` is already in the queue.
        Submits made concurrently (from many requests of a web app, say) share one store call:
        see kew_plug/group_commit.py."""
        spec = TaskSpec(fn, args, kwargs or {}, task_id, priority, delay, at, retries, timeout)
        self._open()
        item = self._encode(spec)
        loop = asyncio.get_running_loop()
        group = self._groups.get(loop)
        if group is None:
            group = self._groups[loop] = GroupCommit(
                self._store_group, GROUP_MAX, GROUP_MAX_BYTES, lambda i: len(i.payload)
            )
        if not await group.submit(item):
            raise TaskExists(self.name, item.id)
        return TaskHandle(item.id, self, True)

    async def submit_many(self, specs: Iterable[TaskSpec]) -> list[TaskHandle]:
        """Store many tasks in one store call. Every spec is validated and serialized first,
        so a bad one refuses the batch before anything is stored. Duplicate ids come back
        with `accepted=False`."""
        self._open()
        items = [self._encode(s) for s in specs]
        if not items:
            return []
        accepted = await self._store_items(items)
        return [TaskHandle(i.id, self, ok) for i, ok in zip(items, accepted, strict=True)]

    async def _store_group(self, items: list[NewTask]) -> list[bool | QueueFull]:
        """The items of concurrent submits in one call. When max_size refuses the group,
        one by one, so each submit gets the answer it would have had alone."""
        try:
            return list(await self._store_items(items))
        except QueueFull:
            if len(items) == 1:
                raise
        answers: list[bool | QueueFull] = []
        for item in items:
            try:
                answers += await self._store_items([item])
            except QueueFull as e:
                answers.append(e)
        return answers

    async def _store_items(self, items: list[NewTask]) -> list[bool]:
        """The items in one call; per item, whether it was accepted."""
        report, retried = await self._enqueue(items)
        return accepted_per_item(items, report, retried)

    async def _enqueue(self, items: list[NewTask]) -> tuple[EnqueueReport, bool]:
        """Enqueue, retrying a few times when the store is unreachable. A reply lost after the
        store acted must not turn into a second copy of the task: retries carry the same
        ids, and the store recognises its own earlier write by the identical payload."""
        for attempt in range(self.submit_retries + 1):
            try:
                return await self._open().enqueue(self.name, items, self.max_size), attempt > 0
            except StoreUnavailable:
                if attempt == self.submit_retries:
                    raise
                # The lost attempt may have stored them: from now on the ids are not new.
                items = [replace(i, new_id=False) for i in items]
                await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    # -- reading back ---------------------------------------------------------------------

    async def info(self, task_id: str) -> TaskRecord | None:
        """The task's record (state, attempts, last error and, after a failed attempt, its
        formatted traceback in `traceback`), or None for an unknown or expired id."""
        return await self._open().get(self.name, task_id)

    async def status(self, task_id: str) -> TaskState | None:
        record = await self._open().get(self.name, task_id)
        return None if record is None else record.state

    async def result(self, task_id: str, timeout: float | None = None) -> Any:
        """Wait for the task to finish and return its value; `TaskFailed` if it ended dead,
        `TaskCancelled` if it was cancelled, `TimeoutError` after `timeout` seconds,
        `TaskNotFound` (a `LookupError`) for an unknown id. Wakes when the task settles,
        without polling."""
        self._open()
        (value,) = await wait_for_results(self, [task_id], timeout, return_exceptions=False)
        return value

    async def wait_many(
        self,
        task_ids: Sequence[str],
        timeout: float | None = None,
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Wait for every task and return their values in order, like `asyncio.gather`: the
        first failed or cancelled task raises, or with `return_exceptions` its exception
        (`TaskFailed`, `TaskCancelled`) takes its place. `TimeoutError` after `timeout`."""
        self._open()
        return await wait_for_results(self, task_ids, timeout, return_exceptions)

    async def cancel(self, task_id: str) -> bool:
        """Cancel a task: a waiting one never runs; a running one is fenced off and its
        worker cancels it within one renewal interval (a coroutine is cancelled, a process
        task killed; a thread cannot be stopped, but its result is refused). Either way its
        payload is deleted and `result()` raises `TaskCancelled`. False if the task had
        already finished or is unknown."""
        (outcome,) = await self._open().cancel(self.name, [task_id])
        return outcome in (CancelOutcome.CANCELLED, CancelOutcome.CANCELLED_RUNNING)

    async def dead(self, limit: int = 100) -> list[TaskRecord]:
        store = self._open()
        records = [await store.get(self.name, i) for i in await store.dead_ids(self.name, limit)]
        return [r for r in records if r is not None]

    async def requeue(self, task_ids: Sequence[str]) -> list[bool]:
        return await self._open().requeue(self.name, task_ids)

    async def aclose(self) -> None:
        """Close the breaker and the store; every later call raises `Closed`. Idempotent."""
        self.closed = True
        if self.breaker is not None:
            await self.breaker.aclose()
        await self.store.aclose()

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _in_main(fn: Callable[..., Any]) -> bool:
    return getattr(fn, "__module__", None) == "__main__"


def _root_cause(error: SerializationError) -> BaseException | str:
    """What the innermost serializer raised (a wrapper such as Signed adds a layer)."""
    while isinstance(error.__cause__, SerializationError):
        error = error.__cause__
    return error.__cause__ or str(error)


def _describe(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or repr(fn)[:80]
    return f"{module}.{qualname}"
