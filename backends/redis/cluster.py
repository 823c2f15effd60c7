"""Redis Cluster support: the URL form, and script calls routed to the primary that owns
the queue's slot over one lean `Pipe` per node.

redis-py's `RedisCluster` keeps the topology (slot map, MOVED handling) and serves
everything else (reads, scans over every primary). Script calls go over a `Pipe` to the
slot's primary instead: it is faster, and `WAIT` must run on the very connection that
wrote, which a pooled client does not promise. Blocking waits go over a `Blocking` pool
of that primary."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from redis import exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster

from kew_plug.backends.redis.blocking import Abandoned, Blocking
from kew_plug.backends.redis.pipe import Pipe
from kew_plug.errors import InvalidArgument

SCHEME = "redis+cluster://"
# MOVED after a failover or a reshard: the slot map is refreshed and the call resent (the
# reply means the script did not run, so resending cannot apply it twice). ASK, during a
# slot migration, is only retried the same way, which does not follow the migration.
REDIRECTS = 3


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """`redis+cluster://[user:password@]host:port[,host:port...][/?option=value]` into seed
    nodes and client options (username, password, and the store's `replicas` and
    `replica_timeout` from the query)."""
    if not url.startswith(SCHEME):
        raise InvalidArgument(f"a cluster URL starts with {SCHEME}, got {url!r}")
    rest = url[len(SCHEME) :]
    auth, _, hosts = rest.rpartition("@")
    hosts, _, query = hosts.partition("?")
    hosts = hosts.rstrip("/")
    seeds: list[tuple[str, int]] = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgument(f"cluster seed {item!r} in {url!r} is not host:port")
        seeds.append((host, int(port)))
    if not seeds:
        raise InvalidArgument(f"no seed node in cluster URL {url!r}")
    options: dict[str, Any] = {}
    if auth:
        user, sep, password = auth.partition(":")
        if sep:
            options["username"] = unquote(user) or None
            options["password"] = unquote(password)
        else:
            options["password"] = unquote(user)
    for name, values in parse_qs(query).items():
        if name not in ("replicas", "replica_timeout"):
            raise InvalidArgument(f"unknown option {name!r} in cluster URL {url!r}")
        try:
            options[name] = int(values[-1]) if name == "replicas" else float(values[-1])
        except ValueError:
            raise InvalidArgument(f"{name}={values[-1]!r} in {url!r} is not a number") from None
    return seeds, options


def cluster_client(
    seeds: list[tuple[str, int]], username: str | None = None, password: str | None = None
) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in seeds],
        username=username,
        password=password,
        decode_responses=False,
    )


def router_for(client: RedisCluster) -> ClusterRouter | None:
    """The router for a cluster client, with the client's own credentials; None for TLS,
    which the plain Pipe does not speak (scripts then stay on redis-py)."""
    kw = client.connection_kwargs
    if "SSL" in getattr(kw.get("connection_class"), "__name__", ""):
        return None
    return ClusterRouter(client, kw.get("username"), kw.get("password"))


def _node_url(node: ClusterNode, username: str | None, password: str | None) -> str:
    cred = ""
    if password is not None:
        cred = f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
    return f"redis://{cred}{node.host}:{node.port}/0"


class ClusterRouter:
    """Sends a command to the primary owning a key's slot, over that node's Pipe."""

    def __init__(
        self, client: RedisCluster, username: str | None = None, password: str | None = None
    ) -> None:
        self.client = client
        self._auth = (username, password)
        self.timeout = 10.0  # per reply; a frozen node fails its calls instead of hanging
        self._pipes: dict[str, Pipe] = {}
        self._blocking: dict[str, Blocking] = {}
        self._stale = True  # the slot map is loaded lazily and after any failure

    async def _node_for(self, key: str) -> ClusterNode:
        if self._stale:
            await self.refresh()
        node = self.client.get_node_from_key(key)
        if node is None:
            raise rex.SlotNotCoveredError(f"no primary serves the slot of {key!r}")
        return node

    def _pipe(self, node: ClusterNode) -> Pipe:
        pipe = self._pipes.get(node.name)
        if pipe is None:
            pipe = Pipe(_node_url(node, *self._auth), timeout=self.timeout)
            self._pipes[node.name] = pipe
        return pipe

    def _pool(self, node: ClusterNode) -> Blocking:
        pool = self._blocking.get(node.name)
        if pool is None:
            pool = Blocking(_node_url(node, *self._auth), self.timeout)
            self._blocking[node.name] = pool
        return pool

    async def refresh(self) -> None:
        try:
            await self.client.initialize()  # once per client: commands parser and slot map
            await self.client.nodes_manager.initialize()  # the current slot map
        except (rex.RedisError, rex.RedisClusterException):
            self._stale = True
            raise
        self._stale = False

    async def send(self, key: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run `commands` back to back on the connection to `key`'s primary; their replies
        in order. Any error fails the call (the first one is raised)."""
        result: list[Any] = await self._routed(
            key, lambda node: self._pipe(node).execute_all(commands)
        )
        return result

    async def call_blocking(
        self, key: str, args: tuple[Any, ...], blocks: float, abandoned: Abandoned
    ) -> Any:
        """A blocking command on `key`'s primary (see `Blocking.call`)."""
        return await self._routed(key, lambda node: self._pool(node).call(args, blocks, abandoned))

    async def _routed(self, key: str, op: Callable[[ClusterNode], Awaitable[Any]]) -> Any:
        """`op` on `key`'s primary, resent after a redirect."""
        for attempt in range(REDIRECTS + 1):
            node = await self._node_for(key)
            try:
                return await op(node)
            except rex.ResponseError as e:
                redirect = str(e).startswith(("MOVED", "ASK"))
                if not redirect or attempt == REDIRECTS:
                    raise
                self._stale = True
            except (rex.ConnectionError, OSError):
                # The node may be gone for good (failover): learn the new map next time.
                self._stale = True
                raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pipes, self._pipes = list(self._pipes.values()), {}
        pools, self._blocking = list(self._blocking.values()), {}
        # Every pipe gets its close even if one of them fails to confirm it in time.
        closing = [*(pipe.aclose() for pipe in pipes), *(pool.aclose() for pool in pools)]
        await asyncio.gather(*closing, return_exceptions=True)
