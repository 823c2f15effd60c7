"""Group commit: submits made at the same time share one store call.

A web app submits from many requests at once. Each submit joins a line; the first in line
leads: it takes everyone waiting (up to `max_batch`) into one call, and again until its own
item is stored; then the next one in line leads. A lone submitter is sent at once, so it
waits for nothing, and the more submitters wait, the more each call carries: throughput
rises with concurrency instead of queueing on round trips.

Each submitter gets its own answer (stored, or a duplicate id) or the call's exception. No
background task is involved: the leader is always a caller that is waiting anyway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Entry(Generic[T]):
    item: T
    done: asyncio.Future[Any] = field(default_factory=lambda: _loop().create_future())


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class _Lead:
    """Given to a waiter instead of its answer: it leads the next call."""


LEAD = _Lead()


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[list[R]]],
        max_batch: int,
        max_bytes: int,
        size: Callable[[T], int],
    ) -> None:
        """`send(items)` stores the items in one call and answers for each, in order (an
        answer that is an exception is raised to that item's caller). A call
        carries at most `max_batch` items and, unless it is one item, `max_bytes` of
        `size(item)`."""
        self._send, self._size = send, size
        self._max_batch, self._max_bytes = max_batch, max_bytes
        self._line: list[_Entry[T]] = []
        self._leading = False

    async def submit(self, item: T) -> R:
        entry = _Entry(item)
        self._line.append(entry)
        if self._leading:
            answer = await entry.done
            if answer is not LEAD:
                return answer  # type: ignore[no-any-return]
            entry.done = _loop().create_future()  # still first in line, now for its answer
        self._leading = True
        try:
            while not entry.done.done():
                batch = self._take()
                if batch:
                    await self._call(batch)
        finally:
            self._hand_over()
        return entry.done.result()  # type: ignore[no-any-return]

    def _take(self) -> list[_Entry[T]]:
        """The next waiting entries that fit one call, skipping callers that gave up."""
        batch: list[_Entry[T]] = []
        total = 0
        while self._line and len(batch) < self._max_batch:
            entry = self._line[0]
            if entry.done.done():
                self._line.pop(0)
                continue
            total += self._size(entry.item)
            if batch and total > self._max_bytes:
                break
            batch.append(self._line.pop(0))
        return batch

    async def _call(self, batch: list[_Entry[T]]) -> None:
        if len(batch) == 1 and not self._line:
            # The leader alone (a lone submitter, the common case): no one else to answer,
            # so no task and no shield, which would cost the call two turns of the loop.
            entry = batch[0]
            try:
                answers = await self._send([entry.item])
            except Exception as e:
                _settle_answer(entry, e)
                raise
            _settle_answer(entry, answers[0])
            return
        # Shielded: if the leader is cancelled mid-call, the call still completes and
        # answers the others in its batch.
        call = asyncio.ensure_future(self._send([e.item for e in batch]))
        call.add_done_callback(lambda c: _answer(batch, c))
        await asyncio.shield(call)

    def _hand_over(self) -> None:
        while self._line:
            entry = self._line[0]
            if entry.done.done():
                self._line.pop(0)
                continue
            entry.done.set_result(LEAD)
            return
        self._leading = False


def _answer(batch: list[_Entry[T]], call: asyncio.Future[list[R]]) -> None:
    if call.cancelled():
        error: BaseException | None = asyncio.CancelledError()
    else:
        error = call.exception()
    for k, entry in enumerate(batch):
        if entry.done.done():
            continue
        _settle_answer(entry, error if error is not None else call.result()[k])


def _settle_answer(entry: _Entry[Any], answer: object) -> None:
    if isinstance(answer, BaseException):
        entry.done.set_exception(answer)
        # Retrieved here: a caller that gave up (cancelled) must not leave it logged as
        # unhandled; a caller still waiting gets it raised all the same.
        entry.done.exception()
    else:
        entry.done.set_result(answer)
