"""The runner: one claimed task from bytes to outcome. It decodes the payload, asks the
breaker, checks the lease is still good, calls the function (coroutines on the loop, plain
functions in a thread), encodes the result, and puts the outcome in the outbox."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kew_plug.context import TaskContext, set_current
from kew_plug.errors import PayloadError, SerializationError, TaskTimeout
from kew_plug.hooks import Hook, TaskEvent, run_hooks
from kew_plug.leases import LeaseBook
from kew_plug.models import Claim, Outcome, OutcomeKind
from kew_plug.outbox import Outbox
from kew_plug.queue import Queue
from kew_plug.retry import RetryPolicy
from kew_plug.stats import WorkerStats

log = logging.getLogger("kew_plug.worker")


class Runner:
    def __init__(
        self,
        queue: Queue,
        worker_id: str,
        book: LeaseBook,
        outbox: Outbox,
        stats: WorkerStats,
        retry: RetryPolicy,
        hooks: dict[str, list[Hook]],
        pool: ThreadPoolExecutor,
    ) -> None:
        self.queue, self.worker_id, self.book, self.outbox = queue, worker_id, book, outbox
        self.stats, self.retry, self.hooks, self.pool = stats, retry, hooks, pool

    async def execute(self, claim: Claim, claimed_wall: float) -> None:
        event = TaskEvent(claim.id, claim.attempt, claim.max_attempts)
        try:
            envelope = self.queue.serializer.loads(claim.payload)
        except PayloadError as e:
            # Unreadable bytes will not become readable by retrying: dead-letter at once.
            await self._fail(claim, event, f"PayloadError: {e}", final=True)
            return
        try:
            fn, args, kwargs, timeout = envelope
        except (TypeError, ValueError):
            # Readable bytes that are not a task: left unsettled, the claim would be held and
            # renewed forever. Dead-letter it like any other unreadable payload.
            what = f"payload is a {type(envelope).__name__}, not a kew-plug task envelope"
            await self._fail(claim, event, f"PayloadError: {what}", final=True)
            return
        breaker = self.queue.breaker
        if breaker is not None and not await breaker.allow():
            self.stats.breaker_denied += 1
            await self.book.release([claim])
            return
        if not self.book.startable(claim.id):
            # This process stalled (stopped, swapped, starved) past the lease before the task
            # began: another worker may already have it. Starting now would run it twice.
            self.book.drop(claim.id)
            self.stats.expired_unstarted += 1
            log.warning("lease of task %s ran out before it started; left for recovery", claim.id)
            return
        await run_hooks("start", self.hooks["start"], event)
        # Each asyncio task has its own context copy, so this is visible only to this task
        # (and to its thread, which runs in a copy of this context).
        set_current(
            TaskContext(
                self.queue.name,
                claim.id,
                claim.attempt,
                claim.max_attempts,
                claim.token,
                self.worker_id,
                claimed_wall,
            )
        )
        started = time.monotonic()
        try:
            result = await self._call(fn, args, kwargs, timeout)
        except asyncio.CancelledError:
            raise  # only shutdown cancels a task; its claim is released, not failed
        except BaseException as e:
            await self._failed_call(claim, event, f"{type(e).__name__}: {e}", started)
            return
        duration = time.monotonic() - started
        try:
            blob = self.queue.serializer.dumps(result)
        except SerializationError as e:
            await self._fail(claim, event, f"result could not be serialized: {e}", final=True)
            return
        if len(blob) > self.queue.max_payload_bytes:
            msg = f"result is {len(blob)} bytes, over the limit of {self.queue.max_payload_bytes}"
            await self._fail(claim, event, msg, final=True)
            return
        if breaker is not None:
            await breaker.record_success()
        self.outbox.put(Outcome(claim.id, claim.token, OutcomeKind.COMPLETE, result=blob))
        self.stats.completed += 1
        done = TaskEvent(claim.id, claim.attempt, claim.max_attempts, duration, result=result)
        await run_hooks("complete", self.hooks["complete"], done)

    async def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        if inspect.iscoroutinefunction(fn):
            aw: Any = fn(*args, **kwargs)
        else:
            ctx = contextvars.copy_context()
            call = functools.partial(ctx.run, fn, *args, **kwargs)
            aw = asyncio.get_running_loop().run_in_executor(self.pool, call)
        if timeout is None:
            result = await aw
            if inspect.isawaitable(result):  # a sync function that returned a coroutine
                result = await result
            return result
        try:
            async with asyncio.timeout(timeout) as scope:
                result = await aw
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            if scope.expired():
                raise TaskTimeout(f"ran over its timeout of {timeout} s; cancelled") from None
            raise
        return result

    async def _failed_call(
        self, claim: Claim, event: TaskEvent, error: str, started: float
    ) -> None:
        if self.queue.breaker is not None:
            await self.queue.breaker.record_failure()
        await self._fail(claim, event, error, final=False, duration=time.monotonic() - started)

    async def _fail(
        self, claim: Claim, event: TaskEvent, error: str, *, final: bool, duration: float = 0.0
    ) -> None:
        retry = not final and claim.attempt < claim.max_attempts
        if retry:
            delay_ms = int(self.retry.delay(claim.attempt) * 1000)
            self.outbox.put(
                Outcome(claim.id, claim.token, OutcomeKind.RETRY, error=error, delay_ms=delay_ms)
            )
            self.stats.retried += 1
        else:
            self.outbox.put(Outcome(claim.id, claim.token, OutcomeKind.DEAD, error=error))
            self.stats.dead += 1
            log.warning("task %s dead after attempt %d: %s", claim.id, claim.attempt, error)
        failed = TaskEvent(
            claim.id, claim.attempt, claim.max_attempts, duration, error=error, will_retry=retry
        )
        await run_hooks("fail", self.hooks["fail"], failed)
