"""A lean RESP connection for the hot path: the store's script calls.

redis-py's asyncio client spends most of a round trip in Python (pool checkout, retry and
timeout wrappers). This connection keeps one socket, writes each command as one buffer,
lets any number of calls be in flight at once (replies come back in order, so concurrent
settles and claims share the socket without waiting for each other) and parses replies
with hiredis. Blocking commands never go through it (they would stall the calls behind
them); the store keeps redis-py for those and for everything that is not a script.

Errors keep redis-py's types, so callers handle them the same way: `ResponseError` for a
server error, `ConnectionError` when the socket fails (every call in flight fails with it;
the next call reconnects)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

import hiredis
from redis import exceptions as rex
from redis.connection import parse_url

from kew_plug.backends.redis.replication import ReplicaWait


def encode(args: tuple[Any, ...]) -> bytes:
    """One command as RESP, by hiredis (C): a script call carries a few dozen arguments, and
    packing them in Python cost about a third of a submit's own CPU time."""
    try:
        packed: bytes = hiredis.pack_command(args)
    except TypeError:
        bad = next((a for a in args if not isinstance(a, bytes | str | int | float)), None)
        raise TypeError(f"cannot send {type(bad).__name__} to Redis") from None
    return packed


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        # When each call in flight must have its reply (monotonic): replies come in order,
        # so only the oldest is watched.
        self.deadlines: collections.deque[float] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.client_id: int | None = None  # learnt by the first blocking call
        self.loop = asyncio.get_running_loop()
        self.closed = self.loop.create_future()
        # One timer per connection, not one per call: a server that stops answering (frozen,
        # or cut off without a reset) fails every call in flight after `timeout`.
        self.timeout = timeout
        self.watchdog: asyncio.TimerHandle | None = None
        # Group commit for WAIT: at most one in flight; calls that write while it is out
        # share the next one. WAIT blocks the connection, so one per call would queue them.
        self.wait_inflight: asyncio.Future[Any] | None = None
        self.wait_next: asyncio.Future[Any] | None = None
        # Blocking calls (`start_blocking`): a reply may carry a record the server popped for
        # us, so it must outlive its caller's cancellation. `rescued`: the future that gets
        # it instead; `orphans`: a reply that came before its caller asked (see `rescue`).
        self.kept: set[asyncio.Future[Any]] = set()
        self.rescued: dict[asyncio.Future[Any], asyncio.Future[Any]] = {}
        self.orphans: dict[asyncio.Future[Any], Any] = {}

    def rescue(self, fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """A future for the reply of the blocking call whose future `fut` its caller
        cancelled: resolved now if the reply is in, when it arrives, or failed if the
        connection is lost first."""
        late = self.loop.create_future()
        if fut in self.orphans:
            _resolve(late, self.orphans.pop(fut))
        elif fut in self.kept:  # a lost connection forgets every call it kept
            self.rescued[fut] = late
        else:
            late.set_exception(rex.ConnectionError(f"Connection closed: {self.lost}"))
        return late

    def expect(self, futures: list[asyncio.Future[Any]], blocks: float = 0.0) -> None:
        deadline = time.monotonic() + self.timeout + blocks
        self.waiting.extend(futures)
        self.deadlines.extend(deadline for _ in futures)
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout, self._check)

    def _check(self) -> None:
        self.watchdog = None
        if not self.deadlines or self.transport is None:
            return
        left = self.deadlines[0] - time.monotonic()
        if left > 0:
            self.watchdog = self.loop.call_later(left, self._check)
            return
        self.lost = TimeoutError(f"no reply within {self.timeout:g} s")
        self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport subclass: uvloop's
        # (the loop of uvicorn and of many web apps) are not.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            fut = self.waiting.popleft()
            self.deadlines.popleft()
            if fut in self.kept:
                self.kept.discard(fut)
                if fut.cancelled():
                    if fut not in self.rescued:
                        self.orphans[fut] = reply  # for the rescue() its caller will make
                        continue
                    fut = self.rescued.pop(fut)
            if not fut.done():  # else its caller was cancelled; the reply is consumed in order
                _resolve(fut, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        self.lost = self.lost or exc or ConnectionResetError("connection closed by server")
        error = rex.ConnectionError(f"Connection closed: {self.lost}")
        self.deadlines.clear()
        while self.waiting:
            fut = self.waiting.popleft()
            self.kept.discard(fut)
            fut = self.rescued.pop(fut, fut)
            if not fut.done():
                fut.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)


def setup_commands(options: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a new connection sends first: AUTH and SELECT, as the URL's options ask."""
    setup: list[tuple[Any, ...]] = []
    if options.get("password") is not None:
        user, password = options.get("username"), options["password"]
        setup.append(("AUTH", user, password) if user else ("AUTH", password))
    if options.get("db"):
        setup.append(("SELECT", int(options["db"])))
    return setup


def _resolve(fut: asyncio.Future[Any], reply: Any) -> None:
    if isinstance(reply, hiredis.ReplyError):
        fut.set_exception(response_error(str(reply)))
    else:
        fut.set_result(reply)


def response_error(message: str) -> rex.RedisError:
    if message.startswith("NOSCRIPT"):
        return rex.NoScriptError(message)
    if message.startswith(("NOAUTH", "WRONGPASS")):
        return rex.AuthenticationError(message)
    return rex.ResponseError(message)


class Pipe:
    """One lazily opened connection to the server named by a redis:// or unix:// URL (user,
    password and database from the URL; the store keeps rediss:// on redis-py, which honours
    the URL's TLS options)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("redis://", "unix://")):
            raise ValueError(f"Pipe speaks plain redis:// or unix:// only, not {url.split(':')[0]}")
        self.options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        # Longer than any command we send takes, WAIT with its own timeout included.
        self.timeout = timeout
        self._proto: _Protocol | None = None
        self._opening: asyncio.Lock | None = None

    def _protocol(self) -> _Protocol:
        return _Protocol(self.timeout)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        o = self.options
        try:
            if "path" in o:
                opening = loop.create_unix_connection(self._protocol, o["path"])
            else:
                host, port = o.get("host", "localhost"), o.get("port", 6379)
                opening = loop.create_connection(self._protocol, host, port)
            _, proto = await asyncio.wait_for(opening, self.timeout)
        except (OSError, TimeoutError) as e:
            raise rex.ConnectionError(f"Error connecting: {e}") from e
        try:
            for command in setup_commands(o):
                await self._send(proto, command)
        except BaseException:
            if proto.transport is not None:
                proto.transport.close()
            raise
        return proto

    async def _ready(self) -> _Protocol:
        proto = self._proto
        if proto is not None and proto.lost is None:
            return proto
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._proto is None or self._proto.lost is not None:
                self._proto = await self._connect()
            return self._proto

    @staticmethod
    def _write(proto: _Protocol, commands: Sequence[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        if proto.transport is None or proto.lost is not None:
            raise rex.ConnectionError(f"Connection closed: {proto.lost}")
        futures = [proto.loop.create_future() for _ in commands]
        proto.expect(futures)
        proto.transport.write(b"".join(encode(c) for c in commands))
        return futures

    @staticmethod
    async def _send(proto: _Protocol, args: tuple[Any, ...]) -> Any:
        if proto.transport is None or proto.lost is not None:
            raise rex.ConnectionError(f"Connection closed: {proto.lost}")
        fut: asyncio.Future[Any] = proto.loop.create_future()
        proto.expect([fut])
        proto.transport.write(encode(args))
        return await fut

    async def execute(self, *args: Any) -> Any:
        return await self._send(await self._ready(), args)

    async def start_blocking(
        self, args: tuple[Any, ...], blocks: float
    ) -> tuple[asyncio.Future[Any], int]:
        """Write a command that may block the connection for up to `blocks` seconds; the
        future of its reply (the watchdog allows `blocks` more than for other calls), and
        the connection's CLIENT ID, by which another connection can CLIENT UNBLOCK it."""
        proto = await self._ready()
        if proto.client_id is None:
            proto.client_id = int(await self._send(proto, ("CLIENT", "ID")))
        if proto.transport is None or proto.lost is not None:
            raise rex.ConnectionError(f"Connection closed: {proto.lost}")
        fut: asyncio.Future[Any] = proto.loop.create_future()
        proto.expect([fut], blocks)
        proto.kept.add(fut)
        proto.transport.write(encode(args))
        return fut, proto.client_id

    def rescue(self, fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """The reply of a blocking call whose caller was cancelled (`_Protocol.rescue`)."""
        proto = self._proto
        if proto is None:
            late: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            late.set_exception(rex.ConnectionError("Connection closed"))
            return late
        return proto.rescue(fut)

    async def execute_all(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Several commands written at once on this one connection; their replies in order,
        or the first error once every reply is in (none is left unretrieved)."""
        if len(commands) == 1:
            return [await self._send(await self._ready(), commands[0])]
        if len(commands) == 2 and commands[1][0] == "WAIT":
            return await self._then_wait(commands[0], commands[1])
        futures = self._write(await self._ready(), commands)
        replies = await asyncio.gather(*futures, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def _then_wait(self, command: tuple[Any, ...], wait: tuple[Any, ...]) -> list[Any]:
        """`command`, then the reply of a WAIT written after it: its own, or the next one
        shared with every command written while an earlier WAIT was still out."""
        proto = await self._ready()
        (reply,) = self._write(proto, [command])
        if proto.wait_inflight is None:
            acked = self._start_wait(proto, wait)
        else:
            if proto.wait_next is None:
                proto.wait_next = proto.loop.create_future()
            acked = proto.wait_next
        # Shielded: the WAIT's future is shared, and one caller being cancelled must not
        # cancel it for the others (gather cancels what it awaits).
        replies = await asyncio.gather(reply, asyncio.shield(acked), return_exceptions=True)
        for r in replies:
            if isinstance(r, BaseException):
                raise r
        return list(replies)

    def _start_wait(self, proto: _Protocol, wait: tuple[Any, ...]) -> asyncio.Future[Any]:
        (sent,) = self._write(proto, [wait])
        proto.wait_inflight = sent
        sent.add_done_callback(lambda done: self._wait_done(proto, wait))
        return sent

    def _wait_done(self, proto: _Protocol, wait: tuple[Any, ...]) -> None:
        proto.wait_inflight = None
        batch, proto.wait_next = proto.wait_next, None
        if batch is None or batch.done():
            return
        try:
            sent = self._start_wait(proto, wait)
        except rex.ConnectionError as e:
            batch.set_exception(e)
            return
        sent.add_done_callback(lambda done: _copy_outcome(done, batch))

    async def send(self, key: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        return await self.execute_all(commands)  # one server holds every key

    async def aclose(self) -> None:
        """Close the socket and wait until it is really closed (no ResourceWarning later)."""
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
            await asyncio.wait_for(asyncio.shield(proto.closed), 5)


def _copy_outcome(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


class Sender(Protocol):
    """Where a script call goes: one Pipe, or the cluster router that picks the Pipe of the
    primary owning `key`."""

    async def send(self, key: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]: ...


class PipeScript:
    """A Lua script run by EVALSHA through a Sender, loaded on first NOSCRIPT (after a restart or
    SCRIPT FLUSH the server forgets it). With `wait`, the reply counts only once enough
    replicas have acknowledged the write (`WAIT` on the same connection)."""

    def __init__(self, to: Sender, source: str, sha: str, wait: ReplicaWait | None = None):
        self.to, self.source, self.sha, self.wait = to, source, sha, wait

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        commands: list[tuple[Any, ...]] = [("EVALSHA", self.sha, len(keys), *keys, *args)]
        if self.wait is not None:
            commands.append(self.wait.command)
        try:
            replies = await self.to.send(keys[0], commands)
        except rex.NoScriptError:
            await self.to.send(keys[0], [("SCRIPT", "LOAD", self.source)])
            replies = await self.to.send(keys[0], commands)
        if self.wait is not None:
            self.wait.check(replies[1], replies[0])
        return replies[0]
