"""Lean connections for blocking commands: a worker's BZPOPMIN on its inbox and wake set.

A blocked connection serves nobody else, so each waiting caller gets a connection of its
own from a small pool (a process has one waiter per worker). redis-py spent about 50 µs of
worker CPU more than the lean pipe on every wait, and a busy worker waits once per task.

A caller that gives up (cancelled: a retry of its worker comes due, or it stops) does not
close the connection: the server may already have popped a record for it, and closing
would drop that record (its task would wait for its lease to run out). The command is
ended by CLIENT UNBLOCK from another connection instead, which makes it reply as if it
timed out unless it has popped something already. Its reply goes to `abandoned`, as a
future, and the connection serves the next caller once the reply is in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from redis import exceptions as rex

from kew_plug.backends.redis.pipe import Pipe

Abandoned = Callable[["asyncio.Future[Any]"], None]


class Blocking:
    """Connections to one server (a redis:// or unix:// URL), each running one blocking
    command at a time."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url, self.timeout = url, timeout
        self._idle: list[Pipe] = []
        self._busy: set[Pipe] = set()
        self._control: Pipe | None = None  # sends CLIENT UNBLOCK; never blocks
        self._unblocking: set[asyncio.Task[None]] = set()

    async def call(self, args: tuple[Any, ...], blocks: float, abandoned: Abandoned) -> Any:
        """Run `args` (blocking for at most `blocks` seconds) and return its reply; if the
        caller is cancelled once the command is out, `abandoned` gets its reply's future."""
        pipe = self._idle.pop() if self._idle else Pipe(self.url, self.timeout)
        self._busy.add(pipe)
        try:
            fut, client_id = await pipe.start_blocking(args, blocks)
        except BaseException:
            self._busy.discard(pipe)
            self._idle.append(pipe)  # nothing was sent on it (or it is closed: it reopens)
            raise
        try:
            # Awaited directly (a shield would cost a turn of the loop per wait): if we are
            # cancelled while it waits, the reply goes to a rescue future instead.
            result = await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                fut = pipe.rescue(fut)
            abandoned(fut)
            if fut.done():
                self._finished(pipe, fut)
            else:
                fut.add_done_callback(lambda done: self._finished(pipe, done))
                unblock = asyncio.ensure_future(self._unblock(client_id))
                self._unblocking.add(unblock)
                unblock.add_done_callback(self._unblocking.discard)
            raise
        except BaseException:
            self._busy.discard(pipe)
            self._idle.append(pipe)
            raise
        self._busy.discard(pipe)
        self._idle.append(pipe)
        return result

    def _finished(self, pipe: Pipe, fut: asyncio.Future[Any]) -> None:
        self._busy.discard(pipe)
        self._idle.append(pipe)
        if not fut.cancelled():
            fut.exception()  # retrieved: whoever it was abandoned to may never look

    async def _unblock(self, client_id: int) -> None:
        if self._control is None:
            self._control = Pipe(self.url, self.timeout)
        # Best effort: if it fails, the command still ends when its timeout runs out.
        with contextlib.suppress(rex.RedisError, OSError):
            await self._control.execute("CLIENT", "UNBLOCK", client_id)

    async def aclose(self) -> None:
        for task in list(self._unblocking):
            task.cancel()
        pipes = [*self._idle, *self._busy]
        if self._control is not None:
            pipes.append(self._control)
        self._idle, self._busy, self._control = [], set(), None
        await asyncio.gather(*(pipe.aclose() for pipe in pipes), return_exceptions=True)
