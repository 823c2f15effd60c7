"""Where plain (sync) task functions run. Coroutines run on the worker's loop; plain functions
run in one of these, and each enforces the task's timeout its own way:

- `ThreadExecutor` (the default): daemon threads. A thread cannot be killed, so a call past
  its timeout is failed at once and its thread abandoned: the slot is free again, the
  thread is counted and logged with the stack it was stuck in, and as a daemon it never
  keeps the process from exiting (a ThreadPoolExecutor's threads are joined at exit).
- `ProcessExecutor` (`Worker(executor="process")`): one spawned process per slot, so CPU-bound
  functions use more than one core. A call past its timeout is really stopped: its process
  is killed and a fresh one takes its place. Function, arguments and result cross the
  process boundary with cloudpickle."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import functools
import itertools
import logging
import os
import queue as queues
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from kew_plug.context import current_task, set_current
from kew_plug.errors import TaskTimeout

log = logging.getLogger("kew_plug.worker")
KEW_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PR_SET_PDEATHSIG = 1
STACK_LIMIT = 4096  # chars of an abandoned thread's stack kept in its traceback
CLOSE_WAIT_S = 5.0  # an idle task process exits at once when its pipe closes


class ForeignTraceback(Exception):
    """Chained as the cause of an error that happened elsewhere (a worker process, or a
    thread abandoned at its timeout), so the formatted traceback shows where it really was."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0]) if self.args else ""


def cancelled_because(error: asyncio.CancelledError) -> str:
    """Why a running task was cancelled: the worker passes its reason to Task.cancel()."""
    return str(error.args[0]) if error.args else "its task was cancelled"


class ThreadExecutor:
    """Daemon threads, reused while idle (at most `keep_idle` of them wait for work)."""

    kind = "thread"

    def __init__(self, keep_idle: int) -> None:
        self.keep_idle = keep_idle
        self.killed = 0  # never: a thread cannot be killed, it is abandoned instead
        self.abandoned = 0  # threads given up on at a timeout or shutdown (lifetime count)
        self._lock = threading.Lock()
        self._idle: list[_Thread] = []
        self._names = itertools.count(1)

    def submit(self, fn: Callable[[], Any]) -> tuple[Future[Any], _Thread]:
        """Run `fn` in a thread; returns its future and the thread running it."""
        future: Future[Any] = Future()
        with self._lock:
            thread = self._idle.pop() if self._idle else None
        if thread is None:
            thread = _Thread(self, f"kew-task-{next(self._names)}")
            thread.start()
        thread.jobs.put((fn, future))
        return future, thread

    def _done(self, thread: _Thread) -> bool:
        """Called by a thread after each job; True means wait for another one."""
        with self._lock:
            if thread.abandoned:
                log.warning("abandoned thread %s finished after all", thread.name)
                return False  # it was replaced; let it end
            if len(self._idle) < self.keep_idle:
                self._idle.append(thread)
                return True
            return False

    async def run(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        # The thread runs in a copy of this task's context, so current_task() works there.
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        future, thread = self.submit(call)
        try:
            async with asyncio.timeout(timeout) as scope:
                return await asyncio.wrap_future(future)
        except TimeoutError:
            if not scope.expired():
                raise
            stack = self._abandon(thread, future, f"it ran over its timeout of {timeout} s")
            error = TaskTimeout(f"ran over its timeout of {timeout} s; its thread was abandoned")
            raise error from ForeignTraceback(f"{thread.name} was here:\n{stack}")
        except asyncio.CancelledError as e:
            self._abandon(thread, future, cancelled_because(e))
            raise

    def _abandon(self, thread: _Thread, future: Future[Any], why: str) -> str:
        frame = sys._current_frames().get(thread.ident or -1)
        stack = "".join(traceback.format_stack(frame))[-STACK_LIMIT:] if frame else "(gone)\n"
        with self._lock:
            # A call that finished just as time ran out left its thread free for other work:
            # that thread is not stuck. (It reports back under this lock, after the result.)
            if future.done() or thread.abandoned:
                return stack
            thread.abandoned = True
            self.abandoned += 1
        task = current_task()
        log.warning(
            "thread %s abandoned (task %s): %s; Python cannot kill a thread, so it runs on "
            "as a daemon (%d abandoned so far). Stuck at:\n%s",
            thread.name,
            task.task_id if task else "?",
            why,
            self.abandoned,
            stack.rstrip(),
        )
        return stack

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for thread in idle:
            thread.jobs.put(None)


class _Thread(threading.Thread):
    def __init__(self, pool: ThreadExecutor, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.pool = pool
        self.abandoned = False
        self.jobs: queues.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queues.SimpleQueue()
        )

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            fn, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as e:  # the task's own failure, whatever it is
                    future.set_exception(e)
            del job, fn, future  # do not keep the last task's objects alive while idle
            if not self.pool._done(self):
                return


class ProcessExecutor:
    """One process per running call, reused while idle (at most `keep_idle` wait for work).

    Processes are started fresh (`python -c`, not fork: the worker has threads, and not
    multiprocessing's spawn, which would re-import the app's main script in every child)
    and receive the worker's `sys.path`, so functions cloudpickle sends by module name
    import there as here; functions from `__main__` travel by value."""

    kind = "process"

    def __init__(self, keep_idle: int) -> None:
        self.keep_idle = keep_idle
        self.abandoned = 0  # never: a process is killed instead
        self.killed = 0  # processes killed at a timeout, or running when the worker stopped
        self._idle: list[_Process] = []
        self._busy: set[_Process] = set()
        self._pipes = ThreadExecutor(keep_idle)  # blocking pipe reads happen off the loop

    async def run(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        import cloudpickle  # only the process executor needs it

        blob = cloudpickle.dumps((fn, args, kwargs, current_task()))
        worker = self._idle.pop() if self._idle else _Process.spawn()
        self._busy.add(worker)
        future, _ = self._pipes.submit(functools.partial(worker.exchange, blob))
        try:
            async with asyncio.timeout(timeout) as scope:
                reply = await asyncio.wrap_future(future)
        except TimeoutError:
            if not scope.expired():
                raise
            self._kill(worker, f"it ran over its timeout of {timeout} s", replace=True)
            raise TaskTimeout(
                f"ran over its timeout of {timeout} s; its process (pid {worker.pid}) was killed"
            ) from None
        except asyncio.CancelledError as e:
            self._kill(worker, cancelled_because(e))
            raise
        except BaseException:
            self._kill(worker, "its pipe broke")  # the process died, or the pipe did
            raise
        self._busy.discard(worker)
        if len(self._idle) < self.keep_idle:
            self._idle.append(worker)
        else:
            worker.close()
        try:
            ok, value, where = cloudpickle.loads(reply)
        except Exception as e:  # e.g. an exception class that cannot be rebuilt here
            raise ChildDied(f"the reply of task process {worker.pid} is unreadable: {e}") from e
        if ok:
            return value
        raise value from ForeignTraceback(where)

    def _kill(self, worker: _Process, why: str, *, replace: bool = False) -> None:
        self._busy.discard(worker)
        if worker.proc.poll() is not None:
            return
        worker.proc.kill()  # the pipe thread sees EOF, reaps the process and ends
        self.killed += 1
        log.warning("process %d killed: %s (%d killed so far)", worker.pid, why, self.killed)
        if replace and len(self._idle) < self.keep_idle:
            self._idle.append(_Process.spawn())  # the replacement, warm before it is needed

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for worker in list(self._busy):
            self._kill(worker, "the worker stopped")
        for worker in idle:
            worker.close()
        for worker in idle:  # each reads EOF and exits; reap them, so none is left behind
            try:
                worker.proc.wait(CLOSE_WAIT_S)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self._pipes.close()


class _Process:
    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection) -> None:
        self.proc, self.conn, self.pid = proc, conn, proc.pid

    @classmethod
    def spawn(cls) -> _Process:
        mine, theirs = socket.socketpair()
        # Enough path to import kew_plug (the environment is left as it is, for the task);
        # the worker's whole sys.path follows on the pipe.
        code = (
            f"import sys; sys.path.insert(0, {KEW_ROOT!r}); import kew_plug.executors as e; "
            f"e._child_main({theirs.fileno()}, {os.getpid()})"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()]
        )
        theirs.close()  # so that our reads see EOF when the child dies
        conn = Connection(mine.detach())
        import cloudpickle  # only the process executor needs it

        conn.send_bytes(cloudpickle.dumps(list(sys.path)))
        return cls(proc, conn)

    def exchange(self, blob: bytes) -> bytes:
        """Runs in a pipe thread: send one call, wait for its reply."""
        try:
            self.conn.send_bytes(blob)
            return self.conn.recv_bytes()
        except (EOFError, OSError):
            code = self.proc.wait()
            raise ChildDied(f"task process {self.pid} died (exit code {code})") from None

    def close(self) -> None:
        self.conn.close()  # the child reads EOF and exits


class ChildDied(Exception):
    """The process running a task died before answering (killed, or crashed)."""


def _child_main(fd: int, parent: int) -> None:
    """A task process: take the worker's sys.path, then run calls until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    _die_with(parent)
    conn = Connection(fd)
    try:
        import cloudpickle  # only the process executor needs it

        sys.path[:] = cloudpickle.loads(conn.recv_bytes())
        while True:
            conn.send_bytes(_child_call(conn.recv_bytes()))
    except (EOFError, OSError):
        return  # the worker closed the pipe or exited


def _die_with(parent: int) -> None:
    """On Linux, a worker killed while this process runs a task that never returns takes
    this process with it (elsewhere the process ends at its next read of the closed pipe)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)  # the worker died before we could ask


def _child_call(blob: bytes) -> bytes:
    try:
        import cloudpickle  # only the process executor needs it

        fn, args, kwargs, ctx = cloudpickle.loads(blob)
        if ctx is not None:
            set_current(ctx)
        return bytes(cloudpickle.dumps((True, fn(*args, **kwargs), None)))
    except BaseException as e:  # the task's own failure, sent back to the worker
        where = traceback.format_exc()
        try:
            return bytes(cloudpickle.dumps((False, e, where)))
        except Exception:  # an exception (or a result) that cannot be pickled
            plain = RuntimeError(f"{type(e).__name__}: {e}")
            return bytes(cloudpickle.dumps((False, plain, where)))


Executor = ThreadExecutor | ProcessExecutor


def make_executor(kind: str, size: int) -> Executor:
    return ProcessExecutor(size) if kind == "process" else ThreadExecutor(size)
