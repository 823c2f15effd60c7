"""FakeRedisStore: the RedisStore code and Lua over fakeredis. In-process by default (for
tests without a server); `EmbeddedServer` shares one fakeredis over TCP between processes."""

from __future__ import annotations

import socket
import threading
from typing import Any

import fakeredis

from kew_plug.backends.redis.store import RedisStore


class FakeRedisStore(RedisStore):
    networked = False
    shared = False  # one process; use EmbeddedServer().url with RedisStore to share

    def __init__(self, server: Any | None = None, **options: Any) -> None:
        self.server = server if server is not None else fakeredis.FakeServer()
        client = fakeredis.FakeAsyncRedis(server=self.server)
        super().__init__(client, owns_client=True, **options)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedServer:
    """A fakeredis server on a loopback TCP port, served from a thread of this process, that
    separate OS processes can share. Speaks RESP; Lua runs through lupa."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port or free_port(host)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> EmbeddedServer:
        if self._server is None:
            self._server = fakeredis.TcpFakeServer((self.host, self.port), server_type="redis")
            self._server.daemon_threads = True
            self._server.block_on_close = False
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="kew-fakeredis", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
