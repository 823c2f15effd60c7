"""Lifecycle hooks. A hook that raises is logged and ignored: it never breaks the worker."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("kew_plug.worker")


@dataclass(frozen=True, slots=True)
class TaskEvent:
    task_id: str
    attempt: int
    max_attempts: int
    duration: float = 0.0
    error: str | None = None
    will_retry: bool = False
    result: Any = None
    token: int = 0
    claimed_at: float = 0.0  # wall clock of the claim, so "start" hooks can time the wait
    #: The failed attempt's formatted traceback, bounded in size (on_fail only).
    traceback: str | None = None


Hook = Callable[[TaskEvent], Awaitable[None] | None]


async def run_hooks(kind: str, hooks: list[Hook], event: TaskEvent) -> None:
    for hook in hooks:
        try:
            outcome = hook(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("%s hook %r raised for task %s; ignored", kind, hook, event.task_id)
