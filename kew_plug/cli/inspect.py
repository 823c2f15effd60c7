"""What `kew-plug stats|workers|dead|requeue|purge|inspect` read and change. Each returns a
JSON-ready dict; its shape is the documented `--json` schema (README, "Inspecting")."""

from __future__ import annotations

import dataclasses
import sysconfig
import time
from typing import Any

from kew_plug.errors import KewError
from kew_plug.interfaces import Serializer, Store
from kew_plug.queue import Queue

# Lines of a dead task's traceback shown by `dead` and the dashboard: its end, where the
# innermost frames (the task's own code) and the error are; its start is kew-plug's.
TRACEBACK_TAIL = 7
STDLIB = sysconfig.get_paths()["stdlib"]


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


async def stats(store: Store, queues: list[str] | None) -> dict[str, Any]:
    names = queues or await store.queues()
    now_ms = int(time.time() * 1000)
    rows = []
    for name in names:
        counts = await store.stats(name)
        oldest = await store.oldest_waiting_ms(name)
        rows.append(
            {
                "name": name,
                **dataclasses.asdict(counts),
                "oldest_waiting_s": None if oldest is None else round((now_ms - oldest) / 1000, 3),
            }
        )
    live = await store.workers()
    return {
        "queues": rows,
        "workers": len(live),
        "workers_by_queue": {n: sum(n in w.queues for w in live) for n in names},
    }


async def workers(store: Store) -> dict[str, Any]:
    return {"workers": [dataclasses.asdict(w) for w in await store.workers()]}


async def dead(store: Store, queue: str, limit: int) -> dict[str, Any]:
    ids = await store.dead_ids(queue, limit)
    records = await store.get_many(queue, ids)
    died = await store.died_at_ms(queue, ids)
    tasks = []
    for task_id, record, at in zip(ids, records, died, strict=True):
        if record is None:
            continue  # expired between the two reads
        # Lines of only ^ and ~ underline a frame's call: noise in a short excerpt.
        lines = [x for x in (record.traceback or "").splitlines() if x.strip(" ^~")]
        tasks.append(
            {
                "id": task_id,
                "error": record.error,
                "traceback_tail": traceback_tail(lines),
                "attempts": record.attempts,
                "max_attempts": record.max_attempts,
                "died_at": _seconds(at),
            }
        )
    return {"queue": queue, "tasks": tasks}


def traceback_tail(lines: list[str]) -> list[str]:
    """The last lines of a traceback, led by the innermost frame of the task's own code when
    they hold none of it: in a chained error (a thread stuck past its timeout, a process
    task) that frame is in an earlier section."""
    tail = _whole_frames(lines[-TRACEBACK_TAIL:])
    if any(_own_frame(line) for line in tail):
        return tail
    for i in range(len(lines) - 1, -1, -1):
        if _own_frame(lines[i]):
            source = lines[i + 1 : i + 2]
            if source and source[0].lstrip().startswith("File "):
                source = []
            return [lines[i], *source, "  ...", *tail]
    return tail


def _own_frame(line: str) -> bool:
    """A frame line of code that is neither kew-plug's nor the standard library's."""
    if not line.startswith('  File "'):
        return False
    path = line.split('"', 2)[1]
    return "/kew_plug/" not in path and not path.startswith(STDLIB)


def _whole_frames(tail: list[str]) -> list[str]:
    """From the first frame's `File` line, not its source line alone (when there is one)."""
    starts = [i for i, line in enumerate(tail) if line.startswith("  File ")]
    return tail[starts[0] :] if starts else tail


async def requeue(store: Store, queue: str, ids: list[str], all_dead: bool) -> dict[str, Any]:
    if all_dead:
        requeued: list[str] = []
        while batch := await store.dead_ids(queue, 1000):
            done = await store.requeue(queue, batch)
            requeued += [i for i, ok in zip(batch, done, strict=True) if ok]
            if not any(done):
                break  # expired under us; do not spin
        return {"queue": queue, "requeued": requeued, "not_dead": []}
    done = await store.requeue(queue, ids)
    return {
        "queue": queue,
        "requeued": [i for i, ok in zip(ids, done, strict=True) if ok],
        "not_dead": [i for i, ok in zip(ids, done, strict=True) if not ok],
    }


async def purge(store: Store, queue: str) -> dict[str, Any]:
    return {"queue": queue, "deleted": await store.purge(queue)}


async def inspect_task(
    store: Store, queue: str, task_id: str, serializer: Serializer | str
) -> dict[str, Any]:
    record = await store.get(queue, task_id)
    if record is None:
        return {"queue": queue, "id": task_id, "found": False}
    result: Any = None
    if record.result is not None:
        reader = Queue(store, serializer, name=queue).serializer
        try:
            result = repr(reader.loads(record.result))
        except KewError as e:
            result = f"<{len(record.result)} bytes, unreadable here: {e}>"
    return {
        "queue": queue,
        "id": task_id,
        "found": True,
        "state": str(record.state),
        "priority": record.priority,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "enqueued_at": _seconds(record.enqueued_ms),
        "lease_deadline": _seconds(await store.lease_deadline_ms(queue, task_id)),
        "worker": record.worker,
        "result": result,
        "error": record.error,
        "traceback": record.traceback,
    }
