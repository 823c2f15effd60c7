"""The task being run, readable from inside its body (coroutine or thread) as `current_task()`."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskContext:
    queue: str
    task_id: str
    attempt: int
    max_attempts: int
    token: int
    worker: str
    claimed_at: float = 0.0  # wall clock, just before the claim was sent


_current: ContextVar[TaskContext | None] = ContextVar("kew_plug_current_task", default=None)


def current_task() -> TaskContext | None:
    """The running task's id, attempt and fencing token; None outside a task."""
    return _current.get()


def set_current(ctx: TaskContext) -> None:
    _current.set(ctx)
