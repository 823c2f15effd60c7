"""Worker: claims as many tasks as it has free slots and hands each to the runner. Its parts
have one job each: the runner (kew_plug/runner.py) turns a claim into an outcome, the outbox
(outbox.py) settles outcomes in batches, the lease book (leases.py) renews what is held and
releases what a stopping worker will not finish, and a recovery loop hands back the expired
leases of workers that died."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from kew_plug import validate
from kew_plug.backoff import Backoff
from kew_plug.errors import InvalidArgument
from kew_plug.executors import make_executor
from kew_plug.hooks import Hook, TaskEvent, run_hooks
from kew_plug.interfaces import Breaker, BreakerState
from kew_plug.leases import LeaseBook, recover_loop
from kew_plug.models import Claim
from kew_plug.outbox import Outbox
from kew_plug.queue import Queue
from kew_plug.retry import RetryPolicy
from kew_plug.runner import Runner
from kew_plug.stats import WorkerStats

log = logging.getLogger("kew_plug.worker")
EXECUTORS = ("thread", "process")
MIN_LEASE_S = 0.05  # renewal runs every third of the lease: shorter would spin
MIN_INTERVAL_S = 0.01
MIN_WAIT_S = 0.001
HALF_OPEN_PAUSE = 0.05  # s between claims while another call holds the half-open probe
# Why a running task is cancelled: its thread's or process's log line says which.
LEASE_LOST = "its lease was lost (the task was cancelled, or recovered after its lease ran out)"
STOPPING = "the worker stopped before it finished"
# An offer of hand-offs lapses this long after the worker's wait would have timed out, so a
# worker that died waiting is handed tasks for at most wait_timeout plus this.
OFFER_SLACK_MS = 250

__all__ = ["Worker", "WorkerStats"]


class Worker:
    """Runs the tasks of one queue in this process's event loop.

    Parameters (all but `queue` keyword-only; bad values raise `InvalidArgument`):

    - `queue`: the `Queue` whose tasks to run; its store, serializer and breaker are used.
    - `concurrency` (10): tasks run at once; also how many are claimed at most per call.
    - `lease` (5.0 s): how long a claim stays ours without renewal. Renewed every third of
      it while the task runs, so tasks may run far longer; if this process dies, its tasks
      run elsewhere about `lease + recover_interval` later. At least 0.05 s.
    - `shutdown_timeout` (10.0 s): on stop, how long running tasks may finish before they
      are cancelled and their claims released (>= 0).
    - `recover_interval` (1.0 s): how often this worker hands back expired leases of dead
      or stalled workers (`Store.recover`). At least 0.01 s: it must not spin.
    - `wait_timeout` (1.0 s): the longest an idle worker blocks in `Store.wait` before it
      claims again (a wake-up usually comes much sooner). At least 0.001 s.
    - `retry` (`RetryPolicy()`): backoff between failed attempts.
    - `on_start`, `on_complete`, `on_fail`, `on_stale`, `on_release`, `on_lapse`: hooks
      (plain or async callables taking a `TaskEvent`); one that raises is logged and
      ignored. `on_fail` gets each failed attempt with its error, traceback and whether it
      will be retried; `on_stale` a settlement refused because the lease had been lost;
      `on_release` each claim handed back unfinished, its attempt not counted (the breaker
      refused it, or the worker stopped), so that the task runs again from the queue;
      `on_lapse` each claim whose lease ran out by this worker's own clock before a renewal
      or its settlement was confirmed (the process stalled, or the store answered too
      slowly: the task may run again elsewhere; `duration` is how late, s).
    - `name`: this worker's id in the store (default `host:pid:random`).
    - `executor` ("thread"): where plain (sync) functions run; coroutines always run on the
      loop. "thread": daemon threads; a task past its timeout fails at once and its thread,
      which Python cannot kill, is abandoned (counted in `stats.abandoned_threads`) without
      keeping the process from exiting. "process": one process per slot, so CPU-bound
      functions use several cores, and a task past its timeout is killed with its process,
      which is replaced. Functions, arguments and results must then pickle (cloudpickle).
    """

    def __init__(
        self,
        queue: Queue,
        *,
        concurrency: int = 10,
        lease: float = 5.0,
        shutdown_timeout: float = 10.0,
        recover_interval: float = 1.0,
        wait_timeout: float = 1.0,
        retry: RetryPolicy | None = None,
        on_start: list[Hook] | None = None,
        on_complete: list[Hook] | None = None,
        on_fail: list[Hook] | None = None,
        on_stale: list[Hook] | None = None,
        on_release: list[Hook] | None = None,
        on_lapse: list[Hook] | None = None,
        name: str | None = None,
        executor: str = "thread",
    ) -> None:
        if not isinstance(queue, Queue):
            raise InvalidArgument(f"Worker needs a Queue, not {type(queue).__name__}")
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise InvalidArgument(f"Worker needs concurrency >= 1 (an int), got {concurrency!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgument(f"Worker needs retry to be a RetryPolicy, not {retry!r}")
        if executor not in EXECUTORS:
            raise InvalidArgument(f"Worker needs executor in {EXECUTORS}, got {executor!r}")
        self.queue = queue
        self.concurrency = concurrency
        self.lease_ms = int(_seconds("lease", lease, MIN_LEASE_S) * 1000)
        self.shutdown_timeout = _seconds("shutdown_timeout", shutdown_timeout, 0.0)
        self.recover_interval = _seconds("recover_interval", recover_interval, MIN_INTERVAL_S)
        self.wait_timeout = _seconds("wait_timeout", wait_timeout, MIN_WAIT_S)
        self.retry = retry or RetryPolicy()
        self.executor = executor
        self.hooks: dict[str, list[Hook]] = {
            "start": _hooks("on_start", on_start),
            "complete": _hooks("on_complete", on_complete),
            "fail": _hooks("on_fail", on_fail),
            "stale": _hooks("on_stale", on_stale),
            "release": _hooks("on_release", on_release),
            "lapse": _hooks("on_lapse", on_lapse),
        }
        if name is not None:
            validate.name("worker name", name)
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = WorkerStats()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._slot_free = asyncio.Event()
        # Set when a retry of ours is scheduled (it may be due before wait() times out) and,
        # with `_eager_wake`, when our last task finishes or is settled. Only then: waking
        # cancels the store's blocking wait, which costs the connection it was on.
        self._wake = asyncio.Event()
        self._eager_wake = False
        self._hand_off = False
        self._wait_backoff = Backoff("wait")
        self._stop = asyncio.Event()
        self._waiters: dict[asyncio.Event, asyncio.Future[Any]] = {}
        self._finishing = False
        self._book = LeaseBook(
            queue.store,
            queue.name,
            self.lease_ms,
            self.stats,
            self._lost,
            self.hooks["release"],
            self._lapsed,
        )
        self._hook_calls: set[asyncio.Task[None]] = set()
        self._outbox = Outbox(
            queue.store, queue.name, self._book, self.stats, self.hooks["stale"], self._settled
        )

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
        # Hand-offs (see Store.hands_off), though not behind a breaker: it decides per claim.
        self._hand_off = self.queue.store.hands_off and self.queue.breaker is None
        await self.queue.store.ping()  # an unreachable or refusing store fails now, in one line
        pool = make_executor(self.executor, self.concurrency)
        runner = Runner(
            self.queue,
            self.id,
            self._book,
            self._outbox,
            self.stats,
            self.retry,
            self.hooks,
            pool,
        )
        store, q = self.queue.store, self.queue.name
        background = [
            asyncio.create_task(self._outbox.run(), name="kew-settler"),
            asyncio.create_task(
                self._book.renew_loop(self._outbox.unconfirmed), name="kew-renewer"
            ),
            asyncio.create_task(
                recover_loop(store, q, self.recover_interval, self.stats, lambda: self._finishing),
                name="kew-recoverer",
            ),
        ]
        periodic = None
        if self.queue.schedules and not until_idle:  # future ticks would never let a drain end
            from kew_plug.periodic import Scheduler

            scheduler = Scheduler(self.queue, self.queue.schedules)
            periodic = asyncio.create_task(scheduler.run(self._stop), name="kew-periodic")
        try:
            await self._claim_loop(runner, until_idle)
        finally:
            if periodic is not None:
                periodic.cancel()
                await asyncio.gather(periodic, return_exceptions=True)
            await self._shutdown(background)
            pool.close()
            waiters = list(self._waiters.values())
            self._waiters.clear()
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return self.stats

    async def _claim_loop(self, runner: Runner, until_idle: bool) -> None:
        store, q, breaker = self.queue.store, self.queue.name, self.queue.breaker
        backoff, gate = Backoff("claim"), Backoff("breaker")
        self._wait_backoff = waiting = Backoff("wait")
        counting = Backoff("stats")
        # Our claims offer the slots they leave unfilled, and a submit may hand a task
        # straight to us while we wait.
        hand_off = self._hand_off
        offer_ms = int(self.wait_timeout * 1000) + OFFER_SLACK_MS
        while not self._stop.is_set():
            half_open = False
            free = self.concurrency - len(self._active)
            if free <= 0:
                self._slot_free.clear()
                await self._until(self._slot_free, None)
                continue
            if breaker is not None:
                gated = await self._breaker_limit(breaker, gate)
                if gated is None:
                    continue
                limit, half_open = gated
                free = min(free, limit)
            self._wake.clear()
            # Taken before the call: the store's deadline is at least this plus the lease.
            claimed_at, claimed_wall = time.monotonic(), time.time()
            try:
                if hand_off:
                    batch = await store.claim_and_offer(q, self.id, free, self.lease_ms, offer_ms)
                else:
                    batch = await store.claim(q, self.id, free, self.lease_ms)
            except Exception as e:  # a store failure must never kill the worker loop
                self.stats.store_errors += 1
                await self._until(self._stop, backoff.failed(e))
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
                age = claim.age_ms / 1000
                self._start(runner, claim, claimed_at - age, claimed_wall - age)
            if batch.claims and not (len(batch.claims) < free and batch.ready_left == 0):
                if half_open:
                    # While a probe runs, more claims are refused by allow() and released at
                    # once: pace them instead of spinning claim/release against the store.
                    await self._until(self._wake, HALF_OPEN_PAUSE)
                continue
            if until_idle and not batch.claims and await self._idle(counting):
                return
            timeout = self.wait_timeout
            if batch.next_due_ms is not None:
                timeout = max(0.001, min(timeout, batch.next_due_ms / 1000))
            if hand_off:
                due_at = None
                if batch.next_due_ms is not None:
                    due_at = claimed_at + batch.next_due_ms / 1000
                await self._wait_handed(runner, free - len(batch.claims), timeout, due_at)
                continue
            failure = await self._race(store.wait(q, timeout), self._wake)
            if failure is None:
                waiting.ok()
            else:  # not fatal: the next claim finds the work anyway; but do not spin
                self.stats.store_errors += 1
                await self._until(self._stop, waiting.failed(failure))

    async def _wait_handed(
        self, runner: Runner, offered: int, timeout: float, due_at: float | None
    ) -> None:
        """Wait for hand-offs or a wake-up, starting what is handed to us, while our offer
        of `offered` slots holds any; return when the next step is a claim (woken, timed
        out, failed, offer used up). `due_at`: when a deferred task is due (the claim
        promotes it), by our clock."""
        store, q = self.queue.store, self.queue.name

        async def waiting() -> None:
            held, wait = offered, timeout
            while True:
                wakeup = await store.wait_handed(q, self.id, wait)
                if not wakeup.claims:
                    return
                # Started here, the moment the store answers, rather than a turn of the
                # loop later: a hand-off's pickup is that much shorter.
                now, wall = time.monotonic(), time.time()
                self.stats.handed += len(wakeup.claims)
                for claim in wakeup.claims:
                    # The lease began when the store handed it over: count from there.
                    at = wakeup.at - claim.age_ms / 1000
                    self._start(runner, claim, at, wall - (now - at))
                held -= len(wakeup.claims)
                if held <= 0:
                    return
                # Waiting again in the same turn rather than after a round of the claim
                # loop: fewer turns per hand-off under load (no change measured when idle).
                wait = self.wait_timeout
                if due_at is not None:
                    wait = max(0.001, min(wait, due_at - time.monotonic()))

        failure = await self._race(waiting(), self._wake)
        if failure is None:
            self._wait_backoff.ok()
        else:
            self.stats.store_errors += 1
            await self._until(self._stop, self._wait_backoff.failed(failure))

    async def _breaker_limit(self, breaker: Breaker, gate: Backoff) -> tuple[int, bool] | None:
        """How many tasks the breaker lets us claim now (all while closed, its probe count
        while half-open) and whether it is half-open. None after waiting out an open
        breaker (or a failing one)."""
        try:
            state = await breaker.state()
            pause = await breaker.retry_after() if state is BreakerState.OPEN else 0.0
        except Exception as e:  # a shared breaker lives in a store that may fail
            self.stats.store_errors += 1
            await self._until(self._stop, gate.failed(e))
            return None
        gate.ok()
        if state is BreakerState.OPEN:
            await self._until(self._stop, max(0.01, pause))
            return None
        if state is BreakerState.HALF_OPEN:
            return breaker.half_open_max_calls, True
        return self.concurrency, False

    async def _until(
        self, event: asyncio.Event, timeout: float | None, also: asyncio.Event | None = None
    ) -> None:
        """Wait until `event` is set, stop() is called, `also` is set or `timeout` passes."""
        waited = {self._waiter(event), self._waiter(self._stop)}
        if also is not None:
            waited.add(self._waiter(also))
        await asyncio.wait(waited, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    async def _race(self, aw: Coroutine[Any, Any, Any], also: asyncio.Event) -> Exception | None:
        """Await `aw` but give it up (cancel it) when stop() is called or `also` is set.
        Returns what `aw` raised, if it raised. Its task is awaited directly rather than
        raced in asyncio.wait: a turn of the event loop less, and a worker waits once per
        hand-off."""
        task = asyncio.ensure_future(aw)

        def cut(_: object) -> None:
            task.cancel()

        watchers = (self._waiter(self._stop), self._waiter(also))
        for watcher in watchers:
            watcher.add_done_callback(cut)
        try:
            await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # we were cancelled ourselves, not just the task we gave up on
        except Exception as e:
            return e
        finally:
            for watcher in watchers:
                watcher.remove_done_callback(cut)
        return None

    def _waiter(self, event: asyncio.Event) -> asyncio.Future[Any]:
        """A task that ends when `event` is set, shared by every wait until then: a worker
        waits once per hand-off, and a task per event per wait, each cancelled and awaited
        afterwards, cost it about 100 µs of each task's pickup."""
        task = self._waiters.get(event)
        if task is None or task.done():
            task = self._waiters[event] = asyncio.ensure_future(event.wait())
        return task

    async def _idle(self, backoff: Backoff) -> bool:
        if self._active or self._book or self._outbox:
            return False
        try:
            stats = await self.queue.store.stats(self.queue.name)
        except Exception as e:  # the store is failing: not idle as far as we can tell
            self.stats.store_errors += 1
            backoff.failed(e)  # the wait that follows is the pause
            return False
        backoff.ok()
        return stats.pending == 0

    # -- slots ----------------------------------------------------------------------------

    def _start(self, runner: Runner, claim: Claim, claimed_at: float, claimed_wall: float) -> None:
        self.stats.claimed += 1
        self._book.add(claim, claimed_at)
        task = asyncio.create_task(runner.execute(claim, claimed_wall), name=f"kew-task-{claim.id}")
        self._active[claim.id] = task
        task.add_done_callback(functools.partial(self._finished, claim))

    def _lost(self, claim: Claim) -> None:
        """Its result would be refused (cancelled, or recovered by another worker): stop it.
        A coroutine is cancelled and a task process killed; a thread runs on, abandoned."""
        task = self._active.get(claim.id)
        if task is not None:
            self.stats.cancelled += 1
            task.cancel(LEASE_LOST)

    def _lapsed(self, claim: Claim, late: float) -> None:
        why = f"lease ran out {late:.3f} s before a renewal or settlement was confirmed"
        log.warning("%s of task %s: this process stalled or the store answered late", why, claim.id)
        if self.hooks["lapse"]:
            event = TaskEvent(
                claim.id, claim.attempt, claim.max_attempts, late, why, token=claim.token
            )
            call = asyncio.ensure_future(run_hooks("lapse", self.hooks["lapse"], event))
            self._hook_calls.add(call)  # held until done: the loop keeps only weak references
            call.add_done_callback(self._hook_calls.discard)

    def _finished(self, claim: Claim, task: asyncio.Task[None]) -> None:
        # By identity: while this task ran its hooks, its retry may have been claimed anew.
        if self._active.get(claim.id) is task:
            del self._active[claim.id]
        self._book.finished(claim)
        self._slot_free.set()
        if not self._active and self._eager_wake:
            self._wake.set()

    def _settled(self, retried: bool) -> None:
        if retried or (self._eager_wake and not self._book):
            self._wake.set()

    # -- stopping -------------------------------------------------------------------------

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        settler = background[0]
        if self._hand_off:
            await self._withdraw()
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=self.shutdown_timeout)
        unfinished = list(self._active.values())
        for task in unfinished:
            task.cancel(STOPPING)
        if unfinished:
            await asyncio.wait(unfinished)
        self._outbox.close()
        await asyncio.wait({settler}, timeout=max(1.0, self.shutdown_timeout))
        # Outcomes not confirmed (server down) stay unsettled; their claims must not be
        # released, or a finished task would run again. Their leases expire instead.
        await self._book.release(self._book.held_except(self._outbox.unconfirmed()))
        # Also flags: a client library that swallows a cancellation (seen with redis-py's
        # cluster client while a node was down) must not keep a loop alive forever.
        self._finishing = True
        self._outbox.stop()
        self._book.stop()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def _withdraw(self) -> None:
        """No more hand-offs to us; tasks handed over but not taken go back to the queue.
        If the store cannot be reached, their leases expire and they are recovered."""
        store, q = self.queue.store, self.queue.name
        try:
            untaken = await store.withdraw(q, self.id)
        except Exception as e:  # stopping goes on; the leases are the fallback
            self.stats.store_errors += 1
            log.warning("could not withdraw the hand-off offer of worker %s: %s", self.id, e)
            return
        await self._book.release(untaken)


def _seconds(kind: str, value: object, minimum: float) -> float:
    seconds = validate.seconds(f"Worker {kind}", value)
    if seconds < minimum:
        raise InvalidArgument(f"Worker needs {kind} >= {minimum} s, got {seconds}")
    return seconds


def _hooks(kind: str, hooks: list[Hook] | None) -> list[Hook]:
    listed = list(hooks or ())
    for hook in listed:
        if not callable(hook):
            raise InvalidArgument(f"Worker {kind} must list callables, not {hook!r}")
    return listed
