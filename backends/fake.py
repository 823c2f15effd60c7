"""FakeRedisStore: the RedisStore code and Lua over fakeredis, in this process (for tests
without a server). To share one fakeredis between processes, the harness serves it over TCP
(`harness.servers.EmbeddedServer`) and processes use RedisStore with its URL."""

from __future__ import annotations

from typing import Any

import fakeredis

from kew_plug.backends.redis.store import RedisStore


class FakeRedisStore(RedisStore):
    networked = False
    shared = False  # one process; harness.servers.EmbeddedServer shares one

    def __init__(self, server: Any | None = None, **options: Any) -> None:
        self.server = server if server is not None else fakeredis.FakeServer()
        client = fakeredis.FakeAsyncRedis(server=self.server)
        super().__init__(client, owns_client=True, **options)
