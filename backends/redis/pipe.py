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
from typing import Any

import hiredis
from redis import exceptions as rex
from redis.connection import parse_url


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        elif isinstance(a, int | float):
            b = repr(a).encode()
        else:
            raise TypeError(f"cannot send {type(a).__name__} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            fut = self.waiting.popleft()
            if fut.done():  # its caller was cancelled; the reply is still consumed in order
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(_response_error(str(reply)))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("connection closed by server")
        error = rex.ConnectionError(f"Connection closed: {self.lost}")
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)


def _response_error(message: str) -> rex.RedisError:
    if message.startswith("NOSCRIPT"):
        return rex.NoScriptError(message)
    if message.startswith(("NOAUTH", "WRONGPASS")):
        return rex.AuthenticationError(message)
    return rex.ResponseError(message)


class Pipe:
    """One lazily opened connection to the server named by a redis:// or unix:// URL (user,
    password and database from the URL; the store keeps rediss:// on redis-py, which honours
    the URL's TLS options)."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("redis://", "unix://")):
            raise ValueError(f"Pipe speaks plain redis:// or unix:// only, not {url.split(':')[0]}")
        self.options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._proto: _Protocol | None = None
        self._opening: asyncio.Lock | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        o = self.options
        try:
            if "path" in o:
                _, proto = await loop.create_unix_connection(_Protocol, o["path"])
            else:
                host, port = o.get("host", "localhost"), o.get("port", 6379)
                _, proto = await loop.create_connection(_Protocol, host, port)
        except OSError as e:
            raise rex.ConnectionError(f"Error connecting: {e}") from e
        setup: list[tuple[Any, ...]] = []
        if o.get("password") is not None:
            user = o.get("username")
            setup.append(("AUTH", user, o["password"]) if user else ("AUTH", o["password"]))
        if o.get("db"):
            setup.append(("SELECT", int(o["db"])))
        try:
            for command in setup:
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
    async def _send(proto: _Protocol, args: tuple[Any, ...]) -> Any:
        if proto.transport is None or proto.lost is not None:
            raise rex.ConnectionError(f"Connection closed: {proto.lost}")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        proto.waiting.append(fut)
        proto.transport.write(encode(args))
        return await fut

    async def execute(self, *args: Any) -> Any:
        return await self._send(await self._ready(), args)

    async def aclose(self) -> None:
        """Close the socket and wait until it is really closed (no ResourceWarning later)."""
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
            await asyncio.wait_for(asyncio.shield(proto.closed), 5)


class PipeScript:
    """A Lua script run over a Pipe by EVALSHA, loaded on first NOSCRIPT (after a restart
    or SCRIPT FLUSH the server forgets it)."""

    def __init__(self, pipe: Pipe, source: str, sha: str) -> None:
        self.pipe, self.source, self.sha = pipe, source, sha

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.pipe.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            await self.pipe.execute("SCRIPT", "LOAD", self.source)
            return await self.pipe.execute("EVALSHA", self.sha, len(keys), *keys, *args)
