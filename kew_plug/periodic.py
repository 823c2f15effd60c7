"""Periodic tasks. `queue.periodic(fn, cron=… | every=…)` registers one; every Worker on
that queue runs a scheduler that submits each upcoming tick ahead of time as a deferred task
whose id names the tick (`<name>@<epoch ms>`). However many processes do this, the store's
dedup on the id stores each tick once, and the store's clock releases it at its time, never
before. Cron expressions are read by cronsim, in the entry's explicit time zone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from kew_plug import validate
from kew_plug.errors import InvalidArgument, KewError

if TYPE_CHECKING:
    from kew_plug.queue import Queue

log = logging.getLogger("kew_plug.periodic")
LOOKAHEAD_S = 60.0  # ticks are submitted this far ahead of their time
MAX_TICKS_PER_PASS = 1000


@dataclass(frozen=True)
class Periodic:
    """One registered schedule. `catch_up`: on a worker's start, submit the ticks of the
    last `catch_up_window` seconds that no worker submitted (each at most once: their ids
    are remembered by the store for its result_ttl, so keep the window below that)."""

    name: str
    fn: Callable[..., Any]
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    catch_up: bool = False
    catch_up_window: float = 3600.0
    priority: int = 0
    retries: int | None = None
    timeout: float | None = None
    lookahead: float = LOOKAHEAD_S  # ticks are submitted this far ahead of their time

    def __post_init__(self) -> None:
        validate.name("periodic task name", self.name)
        if "@" in self.name:
            raise InvalidArgument(f"periodic task name {self.name!r} must not contain '@'")
        if (self.cron is None) == (self.every is None):
            raise InvalidArgument("give a periodic task either cron=... or every=..., not both")
        if self.every is not None:
            validate.seconds("every", self.every, allow_zero=False)
        try:
            zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(f"unknown time zone {self.tz!r} (an IANA name)") from None
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(zone))
            except CronSimError as e:
                raise InvalidArgument(f"bad cron expression {self.cron!r}: {e}") from None
        validate.seconds("catch_up_window", self.catch_up_window)
        validate.seconds("lookahead", self.lookahead, allow_zero=False)

    def ticks(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Tick times t with after < t <= until (aware datetimes, in UTC)."""
        if self.every is not None:
            step = self.every
            k = math.floor(after.timestamp() / step) + 1
            while (at := k * step) <= until.timestamp():
                yield datetime.fromtimestamp(at, UTC)
                k += 1
            return
        assert self.cron is not None
        for tick in CronSim(self.cron, after.astimezone(ZoneInfo(self.tz))):
            if tick > until:
                return
            yield tick.astimezone(UTC)

    def task_id(self, tick: datetime) -> str:
        return f"{self.name}@{round(tick.timestamp() * 1000)}"


def tick_of(task_id: str) -> datetime | None:
    """The tick time a periodic task's id names, or None for other ids."""
    _, at, ms = task_id.rpartition("@")
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if at and ms.isdigit() else None


class Scheduler:
    """Submits the ticks of a queue's periodic entries ahead of time. Safe to run in every
    worker process at once: the store keeps one task per tick id."""

    def __init__(
        self,
        queue: Queue,
        entries: Sequence[Periodic],
        *,
        lookahead: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.queue = queue
        self.entries = list(entries)
        # One lookahead for every entry (tests), else each entry's own.
        self.lookahead = lookahead
        self.clock = clock
        self._done_until: dict[str, datetime] = {}
        self.submitted = 0  # ticks this scheduler stored (others found them stored already)

    async def pass_once(self) -> int:
        """Submit every tick up to now + lookahead not submitted by this scheduler yet."""
        from kew_plug.queue import TaskSpec

        now = self.clock()
        specs, reached = [], {}
        for entry in self.entries:
            ahead = entry.lookahead if self.lookahead is None else self.lookahead
            until = now + timedelta(seconds=ahead)
            start = self._done_until.get(entry.name)
            if start is None:
                back = entry.catch_up_window if entry.catch_up else 0.0
                start = now - timedelta(seconds=back, milliseconds=1)
            for n, tick in enumerate(entry.ticks(start, until)):
                if n == MAX_TICKS_PER_PASS:
                    until = tick  # the rest on the next pass
                    break
                specs.append(
                    TaskSpec(
                        entry.fn,
                        entry.args,
                        entry.kwargs,
                        task_id=entry.task_id(tick),
                        priority=entry.priority,
                        # 1 ms over, since the store truncates delays to whole ms
                        delay=max(0.0, (tick - now).total_seconds() + 0.001),
                        retries=entry.retries,
                        timeout=entry.timeout,
                    )
                )
            reached[entry.name] = until
        if specs:
            handles = await self.queue.submit_many(specs)
        self._done_until.update(reached)  # only once stored: a failed pass is redone whole
        if not specs:
            return 0
        stored = sum(1 for h in handles if h.accepted)
        self.submitted += stored
        return stored

    async def run(self, stop: asyncio.Event) -> None:
        """Pass every quarter of the shortest lookahead until `stop` is set; store errors are
        logged and the pass is tried again."""
        ahead = self.lookahead or min((e.lookahead for e in self.entries), default=LOOKAHEAD_S)
        while not stop.is_set():
            try:
                await self.pass_once()
            except KewError as e:
                log.warning("periodic tasks of %r not submitted: %s", self.queue.name, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ahead / 4)
