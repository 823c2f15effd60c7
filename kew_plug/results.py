"""Waiting for results without polling: read the records, and while some are unfinished
ask the store to `watch` them (Redis blocks on a per-task done list that the settling
script pushes to; the memory store awaits an event), then read again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kew_plug.errors import TaskCancelled, TaskFailed, TaskNotFound
from kew_plug.models import TaskRecord, TaskState

if TYPE_CHECKING:
    from kew_plug.queue import Queue

#: The longest single watch: the records are read again at least this often, so a wake-up
#: lost with a dropped connection costs at most this much.
WATCH_SLICE_S = 5.0


def _outcome(queue: Queue, task_id: str, record: TaskRecord) -> Any:
    """The task's value, or the exception that stands for how it ended."""
    if record.state is TaskState.COMPLETED:
        return None if record.result is None else queue.serializer.loads(record.result)
    if record.state is TaskState.DEAD:
        return TaskFailed(task_id, record.error)
    return TaskCancelled(task_id)


async def wait_for_results(
    queue: Queue, task_ids: Sequence[str], timeout: float | None, return_exceptions: bool
) -> list[Any]:
    ids = list(task_ids)
    deadline = None if timeout is None else time.monotonic() + timeout
    found: dict[str, TaskRecord] = {}
    async with asyncio.timeout(timeout):
        while True:
            pending = [i for i in ids if i not in found]
            records = await queue.store.get_many(queue.name, pending) if pending else []
            for task_id, record in zip(pending, records, strict=True):
                if record is None:
                    raise TaskNotFound(task_id, queue.name)
                if record.state in (TaskState.COMPLETED, TaskState.DEAD, TaskState.CANCELLED):
                    found[task_id] = record
            pending = [i for i in pending if i not in found]
            if not pending:
                break
            left = WATCH_SLICE_S if deadline is None else deadline - time.monotonic()
            await queue.store.watch(queue.name, pending, max(0.0, min(WATCH_SLICE_S, left)))
    values = [_outcome(queue, i, found[i]) for i in ids]
    if not return_exceptions:
        for value in values:
            if isinstance(value, TaskFailed | TaskCancelled):
                raise value
    return values
