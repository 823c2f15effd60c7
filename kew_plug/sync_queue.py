"""SyncQueue: the Queue for code without an event loop, such as a Flask or Django view, a
script or a thread of a WSGI server.

Submits on a store that declares `enqueues_blocking` (Redis from a redis:// or unix:// URL)
go straight from the calling thread over a blocking connection: no loop, no thread hop.
Everything else, and submits on other stores, runs the async `Queue` on an event loop in a
daemon thread of its own, started at first need. Safe to share between threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from kew_plug.errors import StoreUnavailable, TaskExists
from kew_plug.interfaces import Breaker, Serializer, Store
from kew_plug.models import EnqueueReport, NewTask, TaskRecord, TaskState
from kew_plug.queue import Queue, TaskSpec, accepted_per_item

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SyncHandle:
    id: str
    queue: SyncQueue
    accepted: bool = True  # False: the id already existed and nothing was stored

    def result(self, timeout: float | None = None) -> Any:
        return self.queue.result(self.id, timeout)

    def status(self) -> TaskState | None:
        return self.queue.status(self.id)

    def cancel(self) -> bool:
        return self.queue.cancel(self.id)


class SyncQueue:
    """Takes the same parts and options as `Queue` (which it builds: `self.queue`), and
    offers its producer side as blocking calls. Workers stay async (`Worker(queue)` or the
    `kew-plug worker` command); they see no difference."""

    def __init__(
        self,
        store: Store | str = "memory",
        serializer: Serializer | str = "cloudpickle",
        breaker: Breaker | str | None = None,
        **options: Any,
    ) -> None:
        self._around(Queue(store, serializer, breaker, **options))

    @classmethod
    def _wrapping(cls, queue: Queue) -> SyncQueue:
        """A SyncQueue over `queue`, which it then owns (close() closes it). Only for a queue
        made for it (`kew_plug.settings`): one that another event loop uses must not be
        shared, as its connections belong to that loop."""
        sync = cls.__new__(cls)
        sync._around(queue)
        return sync

    def _around(self, queue: Queue) -> None:
        self.queue = queue
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    @property
    def name(self) -> str:
        return self.queue.name

    def submit(
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
    ) -> SyncHandle:
        """`Queue.submit`, blocking: stores one task, or raises `TaskExists`."""
        spec = TaskSpec(fn, args, kwargs or {}, task_id, priority, delay, at, retries, timeout)
        item = self.queue._encode(spec)
        (accepted,) = self._store([item])
        if not accepted:
            raise TaskExists(self.name, item.id)
        return SyncHandle(item.id, self)

    def submit_many(self, specs: Iterable[TaskSpec]) -> list[SyncHandle]:
        """`Queue.submit_many`, blocking: one store call; duplicate ids come back with
        `accepted=False`."""
        items = [self.queue._encode(s) for s in specs]
        if not items:
            return []
        accepted = self._store(items)
        return [SyncHandle(i.id, self, ok) for i, ok in zip(items, accepted, strict=True)]

    def _store(self, items: list[NewTask]) -> list[bool]:
        store = self.queue._open()
        if not store.enqueues_blocking:
            return self._run(self.queue._store_items(items))
        report, retried = self._enqueue(store, items)
        return accepted_per_item(items, report, retried)

    def _enqueue(self, store: Store, items: list[NewTask]) -> tuple[EnqueueReport, bool]:
        """As `Queue._enqueue`: retried with the same ids after a lost reply, so the store
        recognises its own earlier write by the identical payload."""
        retries = self.queue.submit_retries
        for attempt in range(retries + 1):
            try:
                report = store.enqueue_blocking(self.name, items, self.queue.max_size)
                return report, attempt > 0
            except StoreUnavailable:
                if attempt == retries:
                    raise
                items = [replace(i, new_id=False) for i in items]
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    # -- everything else: the async Queue on the loop thread ------------------------------

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        """`Queue.result`: waits for the task without polling; `TaskFailed`, `TaskCancelled`,
        `TimeoutError` or `TaskNotFound` as there."""
        return self._run(self.queue.result(task_id, timeout))

    def wait_many(
        self,
        task_ids: Sequence[str],
        timeout: float | None = None,
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        waiting = self.queue.wait_many(task_ids, timeout, return_exceptions=return_exceptions)
        return self._run(waiting)

    def status(self, task_id: str) -> TaskState | None:
        return self._run(self.queue.status(task_id))

    def info(self, task_id: str) -> TaskRecord | None:
        return self._run(self.queue.info(task_id))

    def cancel(self, task_id: str) -> bool:
        return self._run(self.queue.cancel(task_id))

    def dead(self, limit: int = 100) -> list[TaskRecord]:
        return self._run(self.queue.dead(limit))

    def requeue(self, task_ids: Sequence[str]) -> list[bool]:
        return self._run(self.queue.requeue(task_ids))

    def close(self) -> None:
        """Close the queue (every later call raises `Closed`) and stop the loop thread.
        Idempotent."""
        if not self.queue.closed:
            self._run(self.queue.aclose())
        with self._starting:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.queue.closed:
            coro.close()
            self.queue._open()  # raises Closed
        future = asyncio.run_coroutine_threadsafe(coro, self._started())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # interrupted (Ctrl-C): the call stops on the loop too
            raise

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._starting:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="kew-sync", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop
