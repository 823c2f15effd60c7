"""1,000 tasks through a Queue composed by names: closures, sync and async functions, some
failing then succeeding on retry, some deferred, some always failing. Prints what it checked
and exits non-zero if any check fails.

    python examples/thousand_tasks.py [memory|fakeredis|redis://host:port/db]
"""

import asyncio
import sys
import time

from kew_plug import Queue, RetryPolicy, TaskFailed, TaskSpec, Worker, current_task


def flaky(i: int, failures: int) -> int:
    attempt = current_task().attempt  # type: ignore[union-attr]
    if attempt <= failures:
        raise ConnectionResetError(f"transient failure {attempt} of task {i}")
    return i * 3


async def double(i: int) -> int:
    await asyncio.sleep(0)
    return i * 2


def always_fails(i: int) -> int:
    raise ValueError(f"task {i} cannot succeed")


def make_offset(offset: int):  # type: ignore[no-untyped-def]
    return lambda i: i + offset  # a closure made at run time: travels by value


async def main(store: str) -> int:
    # A breaker that tolerates this demo's planned failures; a real one guards a downstream.
    breaker_options = {"failure_threshold": 100, "reset_timeout": 0.2}
    queue = Queue(
        store, "cloudpickle", "local", name="thousand", retries=3, breaker_options=breaker_options
    )
    closure = make_offset(1000)
    specs, expected, doomed = [], {}, set()
    for i in range(1000):
        kind = i % 5
        if kind == 0:
            specs.append(TaskSpec(closure, (i,), task_id=f"t{i}"))
            expected[f"t{i}"] = i + 1000
        elif kind == 1:
            specs.append(TaskSpec(double, (i,), task_id=f"t{i}"))
            expected[f"t{i}"] = i * 2
        elif kind == 2:
            specs.append(TaskSpec(flaky, (i, 2), task_id=f"t{i}"))
            expected[f"t{i}"] = i * 3
        elif kind == 3:
            specs.append(TaskSpec(double, (i,), task_id=f"t{i}", delay=0.2))
            expected[f"t{i}"] = i * 2
        elif i % 50 == 4:
            specs.append(TaskSpec(always_fails, (i,), task_id=f"t{i}", retries=1))
            doomed.add(f"t{i}")
        else:
            specs.append(TaskSpec(shout_free, (i,), task_id=f"t{i}"))
            expected[f"t{i}"] = -i
    started = time.monotonic()
    await queue.submit_many(specs)
    stats = await Worker(queue, concurrency=32, retry=RetryPolicy(base=0.01)).drain()
    elapsed = time.monotonic() - started

    wrong = [t for t, want in expected.items() if await queue.result(t) != want]
    dead = {r.id: r.error for r in await queue.dead(limit=1000)}
    left = await queue.store.payload_ids("thousand")
    for t in doomed:
        try:
            await queue.result(t)
        except TaskFailed:
            pass
        else:
            wrong.append(t)
    print(f"{len(specs)} tasks in {elapsed:.2f} s; worker stats: {stats}")
    print(f"correct results: {len(expected) - len(wrong)} of {len(expected)}")
    print(f"dead-lettered: {len(dead)} (expected {len(doomed)}), e.g. {next(iter(dead.values()))}")
    print(f"payloads left: {len(left)}")
    await queue.aclose()
    ok = not wrong and set(dead) == doomed and not left
    print("ALL CHECKS PASS" if ok else "CHECKS FAILED")
    return 0 if ok else 1


def shout_free(i: int) -> int:
    return -i


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory")))
