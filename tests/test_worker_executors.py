"""Where sync tasks run and what a timeout does to them: on threads, a task past its timeout
fails at once and its slot is free again while the thread, which cannot be killed, is
abandoned without blocking exit; on processes (executor="process") it is killed and its
process replaced, and CPU-bound tasks run on several cores at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kew_plug import Queue, TaskEvent, TaskFailed, current_task
from tests.helpers import eventually, fast

ROOT = Path(__file__).resolve().parent.parent

# Run as a separate program: it must exit by itself although 10 of its threads never return.
HUNG_TASKS = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time
    from kew_plug import Queue, RetryPolicy, Worker

    def never_returns():
        threading.Event().wait()

    def quick(i):
        return time.monotonic()

    async def main():
        q = Queue("memory")
        hung, quick_ones = [], []
        for i in range(10):  # interleaved, so quick tasks are claimed while others hang
            quick_ones.append(await q.submit(quick, (i,)))
            hung.append(await q.submit(never_returns, timeout=1, retries=0))
        failed = []
        def on_fail(ev):
            failed.append((ev.error, time.monotonic()))
        w = Worker(q, concurrency=2, executor=sys.argv[1], on_fail=[on_fail], wait_timeout=0.1)
        await w.drain()
        errors = [(await q.info(h.id)).error for h in hung]
        done = [await h.result() for h in quick_ones]
        print(json.dumps({
            "errors": errors, "quick_done": done, "fail_times": [t for _, t in failed],
            "abandoned": w.stats.abandoned_threads, "killed": w.stats.killed_processes,
        }))

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_ten_hung_sync_tasks_time_out_free_their_slots_and_the_process_exits(
    executor: str, tmp_path: Path
) -> None:
    script = tmp_path / "hung.py"
    script.write_text(HUNG_TASKS)
    started = time.monotonic()
    # The bound is generous for a loaded machine; the point is that it exits at all (with
    # a ThreadPoolExecutor the interpreter joins the 10 stuck threads at exit, forever).
    done = subprocess.run(
        [sys.executable, str(script), executor],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert len(report["errors"]) == 10
    assert all(e.startswith("TaskTimeout: ran over its timeout of 1.0 s") for e in report["errors"])
    # Other tasks ran meanwhile: each quick task finished before the last hung one failed,
    # and most after two threads were stuck (a pool of 2 threads would run no more).
    quick_done, fail_times = report["quick_done"], sorted(report["fail_times"])
    assert len(quick_done) == 10
    assert max(quick_done) < fail_times[-1]
    assert sum(t > fail_times[1] for t in quick_done) >= 5
    if executor == "thread":
        assert report["abandoned"] == 10 and report["killed"] == 0
        assert done.stderr.count("abandoned (task") == 10  # one log line per stuck thread
    else:
        assert report["killed"] == 10 and report["abandoned"] == 0
    # 10 timeouts of 1 s on 2 slots take about 5 s; nothing waits for the stuck threads.
    assert took < 60, took


# -- the process executor ---------------------------------------------------------------------


def burn(cpu_seconds: float) -> tuple[int, float, float]:
    """Spin for `cpu_seconds` of this process's CPU time; when and where it ran."""
    start = time.time()
    t0 = time.process_time()
    while time.process_time() - t0 < cpu_seconds:
        pass
    return os.getpid(), start, time.time()


def pid_and_task() -> tuple[int, str | None]:
    ctx = current_task()
    return os.getpid(), None if ctx is None else ctx.task_id


def fails_deep_inside(n: int) -> None:
    if n:
        fails_deep_inside(n - 1)
    raise KeyError(f"missing {n}")


def never_returns() -> None:
    threading.Event().wait()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cpu_bound_tasks_run_on_two_cores_at_once() -> None:
    q = Queue("memory", name="cpu")
    worker = fast(q, concurrency=2, executor="process")
    running = asyncio.create_task(worker.run())
    try:
        # Warm both processes first, so the measured tasks start together.
        warm = [await q.submit(burn, (0.05,)) for _ in range(2)]
        assert len({(await h.result(timeout=30))[0] for h in warm}) == 2
        pair = [await q.submit(burn, (0.5,)) for _ in range(2)]
        (pid_a, start_a, end_a), (pid_b, start_b, end_b) = [
            await h.result(timeout=30) for h in pair
        ]
    finally:
        worker.stop()
        await running
    assert pid_a != pid_b and os.getpid() not in (pid_a, pid_b)
    # Each burned 0.5 s of its own CPU; their wall-clock intervals overlap, so they ran at
    # the same time in two processes (on two cores, or the OS time-sliced them).
    assert max(start_a, start_b) < min(end_a, end_b)


async def test_process_tasks_see_their_context_and_keep_the_child_traceback() -> None:
    q = Queue("memory", name="proc")
    events: list[TaskEvent] = []
    ok = await q.submit(pid_and_task)
    bad = await q.submit(fails_deep_inside, (3,), retries=0)
    await asyncio.wait_for(fast(q, executor="process", on_fail=[events.append]).drain(), 60)
    pid, task_id = await ok.result(timeout=5)
    assert pid != os.getpid() and task_id == ok.id
    with pytest.raises(TaskFailed, match="KeyError"):
        await bad.result(timeout=5)
    (event,) = events
    assert event.traceback is not None
    # The frames are the child's: the recursion inside the task function is all there.
    assert event.traceback.count("in fails_deep_inside") == 4
    assert "KeyError: 'missing 0'" in event.traceback


async def test_process_past_its_timeout_is_killed_and_replaced() -> None:
    q = Queue("memory", name="kill")
    hung = await q.submit(never_returns, timeout=0.5, retries=0)
    where: list[int] = []

    async def probe() -> Any:
        return await q.info(hung.id)

    worker = fast(q, concurrency=1, executor="process")
    running = asyncio.create_task(worker.run())
    try:
        record = await eventually(probe, lambda r: r is not None and r.error is not None, 30)
        assert record.error.startswith("TaskTimeout") and "was killed" in record.error
        killed_pid = int(record.error.rsplit("pid ", 1)[1].split(")")[0])
        await eventually(lambda: asyncio.sleep(0, pid_alive(killed_pid)), lambda up: not up)
        after = await q.submit(pid_and_task)  # the slot works again, in a new process
        pid, _ = await after.result(timeout=30)
        where.append(pid)
    finally:
        worker.stop()
        await running
    assert where[0] != killed_pid
    assert worker.stats.killed_processes == 1


async def test_thread_abandoned_at_timeout_is_counted_and_its_stack_kept() -> None:
    q = Queue("memory", name="abandon")
    events: list[TaskEvent] = []
    hung = await q.submit(never_returns, timeout=0.2, retries=0)
    after = await q.submit(pid_and_task)
    worker = fast(q, concurrency=1, on_fail=[events.append])
    await asyncio.wait_for(worker.drain(), 30)
    assert (await after.result(timeout=5))[1] == after.id  # one slot, freed by the timeout
    assert worker.stats.abandoned_threads == 1
    (event,) = events
    assert event.task_id == hung.id and event.error is not None
    assert event.error.endswith("its thread was abandoned")
    # Where the stuck thread was when it was given up on, down to the task's own line.
    assert event.traceback is not None and "in never_returns" in event.traceback


CANCEL_GATE = threading.Event()  # the cancelled thread's task ends when the test opens it


def wait_for_gate() -> None:
    CANCEL_GATE.wait(30)


async def test_a_cancelled_thread_task_is_logged_as_cancelled_not_as_a_stopping_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    CANCEL_GATE.clear()
    q = Queue("memory", name="cancel-log")
    handle = await q.submit(wait_for_gate, retries=0)
    worker = fast(q, concurrency=1, lease=0.3)
    run = asyncio.create_task(worker.run())

    async def abandoned() -> int:
        return worker.stats.abandoned_threads

    try:
        await eventually(
            lambda: q.status(handle.id), lambda s: s is not None and s.value == "running"
        )
        with caplog.at_level("WARNING", logger="kew_plug.worker"):
            assert await q.cancel(handle.id)
            await eventually(abandoned, lambda n: n == 1)
        (line,) = [r.getMessage() for r in caplog.records if "abandoned (task" in r.getMessage()]
        assert "its lease was lost" in line and "worker stopped" not in line
    finally:
        CANCEL_GATE.set()
        worker.stop()
        await run
