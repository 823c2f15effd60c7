"""The runner: one claimed task from bytes to outcome. It decodes the payload, asks the
breaker, checks the lease is still good, calls the function (coroutines on the loop, plain
functions in the executor: threads or processes), encodes the result, and puts the outcome
in the outbox. A failed attempt keeps its traceback, bounded, for the store, the on_fail
hooks and one log line."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from kew_plug.backoff import Backoff
from kew_plug.context import TaskContext, set_current
from kew_plug.errors import PayloadError, SerializationError, TaskTimeout
from kew_plug.executors import Executor
from kew_plug.hooks import Hook, TaskEvent, run_hooks
from kew_plug.interfaces import Breaker
from kew_plug.leases import LeaseBook
from kew_plug.models import Claim, Outcome, OutcomeKind
from kew_plug.outbox import Outbox
from kew_plug.queue import Queue
from kew_plug.retry import RetryPolicy
from kew_plug.stats import WorkerStats

log = logging.getLogger("kew_plug.worker")
TRACEBACK_LIMIT = 8192  # bytes of a failed attempt's traceback kept: what stores keep too


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
        executor: Executor,
    ) -> None:
        """`executor` runs the plain (sync) functions; coroutines run on the loop."""
        self.queue, self.worker_id, self.book, self.outbox = queue, worker_id, book, outbox
        self.stats, self.retry, self.hooks, self.executor = stats, retry, hooks, executor
        self._breaker_backoff = Backoff("breaker")

    async def execute(self, claim: Claim, claimed_wall: float) -> None:
        event = TaskEvent(claim.id, claim.attempt, claim.max_attempts, claimed_at=claimed_wall)
        envelope = await self._decode(claim, event)
        if envelope is None or not await self._admit(claim):
            return
        fn, args, kwargs, timeout = envelope
        if self.hooks["start"]:  # no coroutine to make and await when nobody listens
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
            await self._failed_call(claim, event, e, started)
            return
        duration = time.monotonic() - started
        blob = await self._encode(claim, event, result)
        if blob is None:
            return
        await self._breaker_says(True)
        self.outbox.put(Outcome(claim.id, claim.token, OutcomeKind.COMPLETE, result=blob))
        self.stats.completed += 1
        if self.hooks["complete"]:
            done = TaskEvent(claim.id, claim.attempt, claim.max_attempts, duration, result=result)
            await run_hooks("complete", self.hooks["complete"], done)

    async def _decode(self, claim: Claim, event: TaskEvent) -> tuple[Any, Any, Any, Any] | None:
        """The task envelope (fn, args, kwargs, timeout), or None after dead-lettering it:
        unreadable bytes will not become readable by retrying."""
        try:
            envelope = self.queue.serializer.loads(claim.payload)
        except PayloadError as e:
            await self._fail(claim, event, f"PayloadError: {e}", final=True)
            return None
        try:
            fn, args, kwargs, timeout = envelope
        except (TypeError, ValueError):
            # Readable bytes that are not a task: left unsettled, the claim would be held and
            # renewed forever. Dead-letter it like any other unreadable payload.
            what = f"payload is a {type(envelope).__name__}, not a kew-plug task envelope"
            await self._fail(claim, event, f"PayloadError: {what}", final=True)
            return None
        return fn, args, kwargs, timeout

    async def _admit(self, claim: Claim) -> bool:
        """May the task start? Not while the breaker refuses (the claim is handed back), and
        not when this process stalled (stopped, swapped, starved) past the lease before the
        task began: another worker may already have it, and starting would run it twice."""
        breaker = self.queue.breaker
        if breaker is not None and not await self._allowed(breaker):
            await self.book.release([claim])
            return False
        if not self.book.startable(claim.id):
            self.book.drop(claim.id, claim.token)
            self.stats.expired_unstarted += 1
            log.warning("lease of task %s ran out before it started; left for recovery", claim.id)
            return False
        return True

    async def _encode(self, claim: Claim, event: TaskEvent, result: Any) -> bytes | None:
        """The result's bytes, or None after dead-lettering a result that cannot be stored
        (running the task again would not change that)."""
        try:
            blob = self.queue.serializer.dumps(result)
        except SerializationError as e:
            await self._fail(claim, event, f"result could not be serialized: {e}", final=True)
            return None
        if len(blob) > self.queue.max_payload_bytes:
            msg = f"result is {len(blob)} bytes, over the limit of {self.queue.max_payload_bytes}"
            await self._fail(claim, event, msg, final=True)
            return None
        return blob

    async def _allowed(self, breaker: Breaker) -> bool:
        try:
            allowed = await breaker.allow()
        except Exception as e:  # a shared breaker's store failing: hand the task back
            self.stats.store_errors += 1
            self._breaker_backoff.failed(e)
            return False
        self._breaker_backoff.ok()
        if not allowed:
            self.stats.breaker_denied += 1
        return allowed

    async def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        ends = None if timeout is None else loop.time() + timeout
        if inspect.iscoroutinefunction(fn):
            return await _awaited(fn(*args, **kwargs), timeout)
        try:
            result = await self.executor.run(fn, args, kwargs, timeout)
        finally:
            self.stats.abandoned_threads = self.executor.abandoned
            self.stats.killed_processes = self.executor.killed
        if inspect.isawaitable(result):  # a sync function that returned a coroutine
            result = await _awaited(result, None if ends is None else ends - loop.time())
        return result

    async def _failed_call(
        self, claim: Claim, event: TaskEvent, e: BaseException, started: float
    ) -> None:
        await self._breaker_says(False)
        await self._fail(
            claim,
            event,
            f"{type(e).__name__}: {e}",
            final=False,
            duration=time.monotonic() - started,
            trace=bounded_traceback(e),
        )

    async def _breaker_says(self, ok: bool) -> None:
        breaker = self.queue.breaker
        if breaker is None:
            return
        try:
            await (breaker.record_success() if ok else breaker.record_failure())
        except Exception as e:  # the breaker's store failing must not lose the outcome
            self.stats.store_errors += 1
            self._breaker_backoff.failed(e)
        else:
            self._breaker_backoff.ok()

    async def _fail(
        self,
        claim: Claim,
        event: TaskEvent,
        error: str,
        *,
        final: bool,
        duration: float = 0.0,
        trace: str | None = None,
    ) -> None:
        retry = not final and claim.attempt < claim.max_attempts
        if retry:
            delay = self.retry.delay(claim.attempt)
            outcome = Outcome(
                claim.id,
                claim.token,
                OutcomeKind.RETRY,
                error=error,
                delay_ms=int(delay * 1000),
                traceback=trace,
            )
            self.stats.retried += 1
            then = f"retry in {delay:.2f} s"
        else:
            outcome = Outcome(claim.id, claim.token, OutcomeKind.DEAD, error=error, traceback=trace)
            self.stats.dead += 1
            then = "dead"
        self.outbox.put(outcome)
        log.warning(
            "task %s attempt %d of %d failed (%s): %s%s",
            claim.id,
            claim.attempt,
            claim.max_attempts,
            then,
            error,
            "" if trace is None else "\n" + trace.rstrip(),
        )
        failed = TaskEvent(
            claim.id,
            claim.attempt,
            claim.max_attempts,
            duration,
            error=error,
            will_retry=retry,
            traceback=trace,
        )
        await run_hooks("fail", self.hooks["fail"], failed)


async def _awaited(aw: Awaitable[Any], timeout: float | None) -> Any:
    """Await a task's coroutine within its timeout; TaskTimeout names the limit and chains
    the cancellation, so the traceback shows where the coroutine was when time ran out."""
    if timeout is None:  # no scope to enter and leave (two more coroutines) on every task
        return await aw
    try:
        async with asyncio.timeout(None if timeout is None else max(0.0, timeout)) as scope:
            return await aw
    except TimeoutError as e:
        if scope.expired():
            raise TaskTimeout(f"ran over its timeout of {timeout} s; cancelled") from e
        raise


def bounded_traceback(e: BaseException, limit: int = TRACEBACK_LIMIT) -> str:
    """The formatted traceback in at most `limit` UTF-8 bytes, a note of the cut included:
    its end is kept, where the innermost frames and the error are."""
    text = "".join(traceback.format_exception(e))
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    keep = limit - len(f"[{len(data)} earlier bytes cut]\n")
    tail = data[-keep:].decode("utf-8", "ignore")
    return f"[{len(data) - keep} earlier bytes cut]\n{tail}"
