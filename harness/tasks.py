"""Task bodies the harness submits. Each computes a value from its arguments (so results can
be checked) and writes its own ledger records. By default they are closures made at run time,
so the function itself travels by value in the payload, as in the bug that started kew-plug.

Every task also carries the run's payload marker among its arguments: a distinctive 8-byte
pattern repeated, which the leftover scan looks for in every byte the store keeps."""

from __future__ import annotations

import asyncio
import functools
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.events import Ev
from harness.ledger import LedgerWriter
from harness.recording import GRANT, TRIPPED_MARKER
from kew_plug.context import TaskContext, current_task

LEDGER: LedgerWriter | None = None  # set by each child process at start
OUTAGE_GRACE_S = 10.0
MARKER_REPEATS = 20


class PlannedFailure(RuntimeError):
    """Raised on purpose by the retry scenario."""


class DownstreamDown(RuntimeError):
    """The simulated downstream of the breaker scenario is in its outage window."""


@dataclass(frozen=True)
class Plan:
    """Per-task behaviour: fail the first `fails` attempts; call the downstream whose outage
    is [down_from, down_until) in wall-clock seconds, prolonged until some breaker of the run
    has opened (at most OUTAGE_GRACE_S more)."""

    fails: int = 0
    down_from: float = 0.0
    down_until: float = 0.0
    fn: str = ""  # a user's `package.module:function` computing the value from i
    ms: float = 0.0  # how long the body takes


def marker(pattern: bytes) -> bytes:
    """The marker region a task carries: any 15 contiguous bytes of it hold `pattern`."""
    return pattern * MARKER_REPEATS


def expected(i: int, salt: int) -> int:
    return (i * 2654435761 + salt) % 2**31


@functools.cache
def user_function(path: str) -> Callable[[int], Any]:
    module, _, name = path.partition(":")
    fn: Callable[[int], Any] = getattr(importlib.import_module(module), name)
    return fn


def value_for(i: int, salt: int, plan: Plan) -> Any:
    """What task i must return: the user's function if given, else a checksum of i."""
    return user_function(plan.fn)(i) if plan.fn else expected(i, salt)


def _begin() -> tuple[TaskContext, LedgerWriter]:
    ctx, ledger = current_task(), LEDGER
    if ctx is None or ledger is None:
        raise RuntimeError("harness task run outside a harness worker")
    ledger.write(Ev.RUN, id=ctx.task_id, a=ctx.attempt, k=ctx.token, c=ctx.claimed_at)
    return ctx, ledger


def _finish(ctx: TaskContext, ledger: LedgerWriter, i: int, salt: int, plan: Plan) -> Any:
    if ctx.attempt <= plan.fails:
        ledger.write(Ev.ERROR, id=ctx.task_id, a=ctx.attempt, k=ctx.token)
        raise PlannedFailure(f"planned failure {ctx.attempt} of {plan.fails}")
    if plan.down_until:
        now = time.time()
        down = plan.down_from <= now < plan.down_until or (
            # On a starved machine few calls may fall in the window: the outage goes on
            # (within bounds) until some breaker has opened, which is what it is for.
            plan.down_from <= now < plan.down_until + OUTAGE_GRACE_S
            and not (ledger.path.parent / TRIPPED_MARKER).exists()
        )
        # With the breaker's decision that let this call start (none: no breaker report).
        grant = GRANT.get() or {}
        ledger.write(Ev.CALL, id=ctx.task_id, k=ctx.token, ok=not down, **grant)
        if down:
            raise DownstreamDown("downstream unavailable")
    value = value_for(i, salt, plan)
    ledger.write(Ev.OK, id=ctx.task_id, a=ctx.attempt, k=ctx.token, v=value)
    return value


#: The cron scenario's schedule: every worker registers it, the store keeps one task per tick.
TICK_NAME, TICK_EVERY_S, TICK_LOOKAHEAD_S = "harness-tick", 0.1, 0.5


def tick_task() -> int:
    """The cron scenario's periodic body: its id names its tick (`harness-tick@<ms>`)."""
    ctx, ledger = _begin()
    ledger.write(Ev.OK, id=ctx.task_id, a=ctx.attempt, k=ctx.token, v=0)
    return 0


def execute(i: int, salt: int, plan: Plan) -> Any:
    """A sync body: runs in the worker's thread pool, so sleeping here blocks only it."""
    ctx, ledger = _begin()
    if plan.ms:
        time.sleep(plan.ms / 1000)
    return _finish(ctx, ledger, i, salt, plan)


async def execute_async(i: int, salt: int, plan: Plan) -> Any:
    """An async body: it awaits, so the worker's loop keeps renewing leases meanwhile."""
    ctx, ledger = _begin()
    if plan.ms:
        await asyncio.sleep(plan.ms / 1000)
    return _finish(ctx, ledger, i, salt, plan)


def module_task(i: int, salt: int, plan: Plan, mark: bytes = b"") -> Any:
    return execute(i, salt, plan)


async def module_task_async(i: int, salt: int, plan: Plan, mark: bytes = b"") -> Any:
    return await execute_async(i, salt, plan)


def closure_task(salt: int, plan: Plan, is_async: bool) -> Callable[..., Any]:
    """A function made now, capturing `salt` and `plan`: it can only travel by value."""
    if is_async:

        async def async_body(i: int, mark: bytes = b"") -> Any:
            return await execute_async(i, salt, plan)

        return async_body

    def body(i: int, mark: bytes = b"") -> Any:
        return execute(i, salt, plan)

    return body
