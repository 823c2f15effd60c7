"""Worker: claims as many tasks as it has free slots, runs them, keeps their leases alive,
settles outcomes in batches, recovers expired leases, and stops gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kew_plug.context import TaskContext, set_current
from kew_plug.errors import PayloadError, SerializationError, TaskTimeout
from kew_plug.hooks import Hook, TaskEvent, run_hooks
from kew_plug.interfaces import BreakerState
from kew_plug.models import Claim, Outcome, OutcomeKind
from kew_plug.queue import Queue
from kew_plug.retry import RetryPolicy

log = logging.getLogger("kew_plug.worker")
LEASE_MARGIN_S = 0.05  # do not start a task this close to the end of its lease

HALF_OPEN_PAUSE = 0.05  # s between claims while another call holds the half-open probe


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    retried: int = 0
    dead: int = 0
    stale: int = 0  # settlements or renewals refused because the lease had been lost
    released: int = 0
    breaker_denied: int = 0
    vanished: int = 0  # queued ids whose record was gone when claimed
    expired_unstarted: int = 0  # claims whose lease ran out before the task could start
    store_errors: int = 0


class _Backoff:
    """Store errors: one log line when trouble starts, one when it ends, sleeps in between."""

    def __init__(self, what: str) -> None:
        self.what, self.failures = what, 0

    def failed(self, exc: BaseException) -> float:
        self.failures += 1
        if self.failures == 1:
            trouble = "unavailable" if isinstance(exc, ConnectionError) else "failing"
            log.warning(
                "store %s during %s (%s: %s); retrying with backoff",
                trouble,
                self.what,
                type(exc).__name__,
                exc,
            )
        return min(5.0, 0.05 * 2.0 ** min(self.failures, 7))

    def ok(self) -> None:
        if self.failures:
            log.warning("store reachable again for %s after %d failures", self.what, self.failures)
            self.failures = 0


class Worker:
    def __init__(
        self,
        queue: Queue,
        *,
        concurrency: int = 10,
        lease: float = 30.0,
        shutdown_timeout: float = 10.0,
        recover_interval: float = 1.0,
        wait_timeout: float = 1.0,
        retry: RetryPolicy | None = None,
        on_start: list[Hook] | None = None,
        on_complete: list[Hook] | None = None,
        on_fail: list[Hook] | None = None,
        on_stale: list[Hook] | None = None,
        name: str | None = None,
    ) -> None:
        if concurrency < 1 or lease <= 0 or shutdown_timeout < 0 or wait_timeout <= 0:
            raise ValueError(
                "Worker needs concurrency >= 1, lease > 0, shutdown_timeout >= 0, wait_timeout > 0"
            )
        self.queue = queue
        self.concurrency = concurrency
        self.lease_ms = int(lease * 1000)
        self.shutdown_timeout = shutdown_timeout
        self.recover_interval = recover_interval
        self.wait_timeout = wait_timeout
        self.retry = retry or RetryPolicy()
        self.hooks: dict[str, list[Hook]] = {
            "start": list(on_start or ()),
            "complete": list(on_complete or ()),
            "fail": list(on_fail or ()),
            "stale": list(on_stale or ()),
        }
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = WorkerStats()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, Claim] = {}  # claimed and not yet settled or released
        self._outbox: list[Outcome] = []
        self._outbox_event = asyncio.Event()
        self._slot_free = asyncio.Event()
        # Set when a retry of ours is scheduled (it may be due before wait() times out) and,
        # with `_eager_wake`, when our last task finishes or is settled. Only then: waking
        # cancels the store's blocking wait, which costs the connection it was on.
        self._wake = asyncio.Event()
        self._eager_wake = False
        self._stop = asyncio.Event()
        self._closing = False
        self._finishing = False
        self._in_flight: set[str] = set()
        self._deadline: dict[str, float] = {}  # claim id -> local monotonic lease deadline
        self._pool: ThreadPoolExecutor | None = None

    # -- public ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop: no new claims; running tasks get shutdown_timeout."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the worker gracefully (call from inside the running loop).
        Unfinished claims are released, so another worker takes them at once."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    async def run(self) -> WorkerStats:
        """Work until `stop()` is called."""
        return await self._run(until_idle=False)

    async def drain(self) -> WorkerStats:
        """Work until the queue has nothing queued, scheduled or running, then stop."""
        return await self._run(until_idle=True)

    # -- main loop ------------------------------------------------------------------------

    async def _run(self, until_idle: bool) -> WorkerStats:
        # Draining must notice at once when the queue went idle; behind a breaker, a probe
        # that finished ends the half-open pause.
        self._eager_wake = until_idle or self.queue.breaker is not None
        await self.queue.store.ping()  # an unreachable or refusing store fails now, in one line
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="kew-task")
        background = [
            asyncio.create_task(self._settler(), name="kew-settler"),
            asyncio.create_task(self._keeper(), name="kew-keeper"),
        ]
        periodic = None
        if self.queue.schedules and not until_idle:  # future ticks would never let a drain end
            from kew_plug.periodic import Scheduler

            scheduler = Scheduler(self.queue, self.queue.schedules)
            periodic = asyncio.create_task(scheduler.run(self._stop), name="kew-periodic")
        try:
            await self._claim_loop(until_idle)
        finally:
            if periodic is not None:
                periodic.cancel()
                await asyncio.gather(periodic, return_exceptions=True)
            await self._shutdown(background)
        return self.stats

    async def _claim_loop(self, until_idle: bool) -> None:
        store, q, breaker = self.queue.store, self.queue.name, self.queue.breaker
        backoff = _Backoff("claim")
        while not self._stop.is_set():
            half_open = False
            free = self.concurrency - len(self._active)
            if free <= 0:
                self._slot_free.clear()
                await self._until(self._slot_free.wait(), None)
                continue
            if breaker is not None:
                state = await breaker.state()
                if state is BreakerState.OPEN:
                    await self._until(self._stop.wait(), max(0.01, await breaker.retry_after()))
                    continue
                if state is BreakerState.HALF_OPEN:
                    free = min(free, breaker.half_open_max_calls)
                    half_open = True
            self._wake.clear()
            # Taken before the call: the store's deadline is at least this plus the lease.
            claimed_at, claimed_wall = time.monotonic(), time.time()
            try:
                batch = await store.claim(q, self.id, free, self.lease_ms)
            except Exception as e:  # a store failure must never kill the worker loop
                self.stats.store_errors += 1
                await self._until(self._stop.wait(), backoff.failed(e))
                continue
            backoff.ok()
            if batch.vanished:
                self.stats.vanished += batch.vanished
                log.warning(
                    "%d queued tasks had no record in the store (deleted by someone else, or "
                    "expired); they cannot run",
                    batch.vanished,
                )
            for claim in batch.claims:
                self._start(claim, claimed_at, claimed_wall)
            if batch.claims and not (len(batch.claims) < free and batch.ready_left == 0):
                if half_open:
                    # While a probe runs, more claims are refused by allow() and released at
                    # once: pace them instead of spinning claim/release against the store.
                    await self._until(self._wake.wait(), HALF_OPEN_PAUSE)
                continue
            if until_idle and not batch.claims and await self._idle():
                return
            timeout = self.wait_timeout
            if batch.next_due_ms is not None:
                timeout = max(0.001, min(timeout, batch.next_due_ms / 1000))
            with contextlib.suppress(ConnectionError):
                await self._until(store.wait(q, timeout), None, self._wake.wait())

    async def _until(
        self,
        aw: Coroutine[Any, Any, Any],
        timeout: float | None,
        also: Coroutine[Any, Any, Any] | None = None,
    ) -> None:
        """Await `aw` but return early when stop() is called, `also` finishes or `timeout`
        passes."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stop.wait())
        extra = asyncio.ensure_future(also) if also is not None else None
        waited = {task, stop} if extra is None else {task, stop, extra}
        try:
            await asyncio.wait(waited, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waited:
                if not t.done():
                    t.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
            for t in waited - {task}:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _idle(self) -> bool:
        if self._active or self._held or self._outbox:
            return False
        try:
            stats = await self.queue.store.stats(self.queue.name)
        except Exception:
            return False  # the store is failing: not idle as far as we can tell
        return stats.pending == 0

    # -- running one task -----------------------------------------------------------------

    def _start(self, claim: Claim, claimed_at: float, claimed_wall: float) -> None:
        self.stats.claimed += 1
        self._held[claim.id] = claim
        self._deadline[claim.id] = claimed_at + self.lease_ms / 1000
        task = asyncio.create_task(self._execute(claim, claimed_wall), name=f"kew-task-{claim.id}")
        self._active[claim.id] = task
        task.add_done_callback(functools.partial(self._finished, claim.id))

    def _finished(self, task_id: str, _: asyncio.Task[None]) -> None:
        self._active.pop(task_id, None)
        self._deadline.pop(task_id, None)
        self._slot_free.set()
        if not self._active and self._eager_wake:
            self._wake.set()

    async def _execute(self, claim: Claim, claimed_wall: float) -> None:
        event = TaskEvent(claim.id, claim.attempt, claim.max_attempts, claimed_at=claimed_wall)
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
            await self._release([claim])
            return
        if time.monotonic() >= self._deadline.get(claim.id, 0.0) - LEASE_MARGIN_S:
            # This process stalled (stopped, swapped, starved) past the lease before the task
            # began: another worker may already have it. Starting now would run it twice.
            self._held.pop(claim.id, None)
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
                self.id,
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
        self._emit(Outcome(claim.id, claim.token, OutcomeKind.COMPLETE, result=blob))
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
            aw = asyncio.get_running_loop().run_in_executor(self._pool, call)
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
            self._emit(
                Outcome(claim.id, claim.token, OutcomeKind.RETRY, error=error, delay_ms=delay_ms)
            )
            self.stats.retried += 1
        else:
            self._emit(Outcome(claim.id, claim.token, OutcomeKind.DEAD, error=error))
            self.stats.dead += 1
            log.warning("task %s dead after attempt %d: %s", claim.id, claim.attempt, error)
        failed = TaskEvent(
            claim.id, claim.attempt, claim.max_attempts, duration, error=error, will_retry=retry
        )
        await run_hooks("fail", self.hooks["fail"], failed)

    # -- settling, renewing, recovering -----------------------------------------------------

    def _emit(self, outcome: Outcome) -> None:
        self._outbox.append(outcome)
        self._outbox_event.set()

    async def _settler(self) -> None:
        """One settle call in flight at a time; outcomes that arrive meanwhile form the next
        batch, so batches grow with load and an idle worker settles at once. Returns once
        closing and the outbox is empty."""
        backoff = _Backoff("settle")
        while not self._finishing:
            if not self._outbox:
                if self._closing:
                    return
                await self._outbox_event.wait()
                self._outbox_event.clear()
                continue
            batch, self._outbox = self._outbox, []
            self._in_flight = {o.id for o in batch}
            try:
                applied = await self.queue.store.settle(self.queue.name, batch)
            except Exception as e:  # a store failure must never kill the worker loop
                self.stats.store_errors += 1
                self._outbox[:0] = batch
                await asyncio.sleep(backoff.failed(e))
                continue
            finally:
                self._in_flight = set()
            backoff.ok()
            for outcome, ok in zip(batch, applied, strict=True):
                self._held.pop(outcome.id, None)
                if not ok:
                    self.stats.stale += 1
                    log.warning("settlement of task %s refused: its lease was lost", outcome.id)
                    event = TaskEvent(outcome.id, 0, 0, token=outcome.token)
                    await run_hooks("stale", self.hooks["stale"], event)
            if (self._eager_wake and not self._held) or any(
                o.kind is OutcomeKind.RETRY for o in batch
            ):
                self._wake.set()

    async def _keeper(self) -> None:
        """Renew held leases every third of the lease; recover expired ones every interval."""
        store, q = self.queue.store, self.queue.name
        renew_every = self.lease_ms / 3000
        last_renew = time.monotonic()
        backoff = _Backoff("renew/recover")
        while not self._finishing:
            await asyncio.sleep(min(self.recover_interval, renew_every))
            try:
                if time.monotonic() - last_renew >= renew_every and self._held:
                    claims = list(self._held.values())
                    sent = time.monotonic()
                    held = await store.renew(q, claims, self.lease_ms)
                    last_renew = time.monotonic()
                    # A claim whose outcome is being settled may be reported lost because
                    # the settlement got there first; the settler reports its own verdict.
                    settling = self._in_flight | {o.id for o in self._outbox}
                    for claim, ok in zip(claims, held, strict=True):
                        if ok and claim.id in self._deadline:
                            self._deadline[claim.id] = sent + self.lease_ms / 1000
                        if ok or claim.id in settling:
                            continue
                        if self._held.pop(claim.id, None) is not None:
                            self.stats.stale += 1
                            log.warning("lease of task %s was lost while it ran", claim.id)
                await store.recover(q)
                backoff.ok()
            except Exception as e:  # a store failure must never kill the worker loop
                self.stats.store_errors += 1
                await asyncio.sleep(backoff.failed(e))

    async def _release(self, claims: list[Claim]) -> None:
        for c in claims:
            self._held.pop(c.id, None)
        if not claims:
            return
        try:
            released = await self.queue.store.release(self.queue.name, claims)
        except Exception as e:  # a store failure must never kill the worker loop
            log.warning(
                "could not release %d claims (%s); their leases will expire", len(claims), e
            )
            return
        self.stats.released += sum(released)

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        settler, keeper = background
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=self.shutdown_timeout)
        unfinished = list(self._active.values())
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished)
        self._closing = True
        self._outbox_event.set()
        await asyncio.wait({settler}, timeout=max(1.0, self.shutdown_timeout))
        # Outcomes not confirmed (server down) stay unsettled; their claims must not be
        # released, or a finished task would run again. Their leases expire instead.
        unconfirmed = self._in_flight | {o.id for o in self._outbox}
        await self._release([c for c in self._held.values() if c.id not in unconfirmed])
        # Also a flag: a client library that swallows a cancellation (seen with redis-py's
        # cluster client while a node was down) must not keep a loop alive forever.
        self._finishing = True
        for task in (settler, keeper):
            task.cancel()
        await asyncio.gather(settler, keeper, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
