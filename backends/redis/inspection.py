"""What inspection reads from a Redis store (the `kew-plug` command, the dashboard, the
harness): queue names, the oldest waiting task, running tasks and their workers, deaths,
worker heartbeats and keys per node. A mixin of RedisStore, kept apart from the task
operations; it uses only the store's connection helpers, declared below."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from kew_plug.backends.redis.keys import FIELD, QueueKeys, worker_key
from kew_plug.models import RunningTask, StoredEntry, WorkerInfo

T = TypeVar("T")


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisInspection:
    client: aioredis.Redis | RedisCluster
    namespace: str
    target: str
    _router: Any

    def keys(self, queue: str) -> QueueKeys:
        raise NotImplementedError

    async def _again(self, op: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _pipelined(self, command: str, keys: Sequence[str | bytes], *args: Any) -> list[Any]:
        raise NotImplementedError

    async def scan(self, pattern: str) -> list[bytes]:
        raise NotImplementedError

    async def queues(self) -> list[str]:
        """Names of this namespace's queues (every queue that has stored a task keeps a
        counter key), found on every primary of a cluster."""
        prefix = f"{self.namespace}:{{"
        found = await self.scan(f"{self.namespace}:{{*}}:seq")
        return sorted(text(k)[len(prefix) : -len("}:seq")] for k in found)

    async def keys_per_node(self) -> dict[str, int]:
        return await self.count_keys_per_node(f"{self.namespace}:*")

    async def count_keys_per_node(self, pattern: str) -> dict[str, int]:
        """Keys matching `pattern` on each primary (host:port), to show how queues spread
        over a cluster; a single server is one entry."""
        if self._router is None:
            return {self.target: len(await self.scan(pattern))}
        cluster: Any = self.client

        async def per_node() -> dict[str, int]:
            counts: dict[str, int] = {}
            for node in cluster.get_primaries():
                n, cursor = 0, 0
                while True:
                    cursors, found = await cluster.scan(
                        cursor, match=pattern, count=1000, target_nodes=node
                    )
                    n += len(found)
                    cursor = cursors[node.name]
                    if cursor == 0:
                        break
                counts[node.name] = n
            return counts

        return await self._again(per_node)

    async def oldest_waiting_ms(self, queue: str) -> int | None:
        k = self.keys(queue)

        async def heads() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zrange(k.ready, 0, 0)
                pipe.zrange(k.due, 0, 0, withscores=True)
                return await pipe.execute()

        ready, due = await self._again(heads)
        found = []
        if due:
            # Due times are on the server's clock. (Not in the pipeline: a cluster pipeline
            # cannot route a command without a key.)
            seconds, micros = await self._again(self.client.time)
            if due[0][1] <= seconds * 1000 + micros // 1000:
                found.append(int(due[0][1]))
        if ready:
            key = k.task(text(ready[0]))
            times: list[bytes | str | None] = await self._again(
                lambda: self.client.hmget(key, FIELD.waiting_since, FIELD.enqueued)
            )
            known = [t for t in times if t is not None]
            if known:
                found.append(int(known[0]))  # waiting since, else enqueued
        return min(found, default=None)

    async def running(self, queue: str, limit: int = 100) -> list[RunningTask]:
        k = self.keys(queue)
        found: list[Any] = await self._again(
            lambda: self.client.zrange(k.running, 0, limit - 1, withscores=True)
        )
        if not found:
            return []
        ids = [text(task_id) for task_id, _ in found]
        workers = await self._pipelined("hget", [k.task(i) for i in ids], FIELD.worker)
        return [
            RunningTask(i, int(score), None if w is None else text(w))
            for i, (_, score), w in zip(ids, found, workers, strict=True)
        ]

    async def lease_deadline_ms(self, queue: str, task_id: str) -> int | None:
        score = await self._again(lambda: self.client.zscore(self.keys(queue).running, task_id))
        return None if score is None else int(score)

    async def died_at_ms(self, queue: str, task_ids: Sequence[str]) -> list[int | None]:
        if not task_ids:
            return []
        dead = self.keys(queue).dead

        async def scores() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for task_id in task_ids:
                    pipe.zscore(dead, task_id)
                return await pipe.execute()

        return [None if s is None else int(s) for s in await self._again(scores)]

    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        body = json.dumps(dataclasses.asdict(worker), separators=(",", ":"))
        key = worker_key(self.namespace, worker.id)
        await self._again(lambda: self.client.set(key, body, px=max(1, int(ttl * 1000))))

    async def forget(self, worker_id: str) -> None:
        key = worker_key(self.namespace, worker_id)
        await self._again(lambda: self.client.delete(key))

    async def workers(self) -> list[WorkerInfo]:
        keys = await self.scan(worker_key(self.namespace, "*"))
        if not keys:
            return []
        found = []
        for body in await self._pipelined("get", keys):
            if body is not None:  # expired between the scan and the read
                found.append(WorkerInfo(**json.loads(body)))
        return sorted(found, key=lambda w: w.id)

    async def contents(self) -> list[StoredEntry]:
        """Every key of this store's namespace, read by type (on every primary of a
        cluster); keys that expire meanwhile are left out."""
        out = []
        for name in await self.scan(f"{self.namespace}:*"):
            entry = await self._again(lambda name=name: _entry(self.client, name))  # type: ignore[misc]
            if entry is not None:
                out.append(entry)
        return out


async def _entry(client: Any, name: bytes) -> StoredEntry | None:
    kind = text(await client.type(name))
    ttl = int(await client.pttl(name))
    if kind == "none" or ttl == -2:
        return None
    parts: list[bytes] = []
    if kind == "string":
        parts.append(await client.get(name) or b"")
    elif kind == "hash":
        for field, value in (await client.hgetall(name)).items():
            parts += [field, value]
    elif kind == "list":
        parts += await client.lrange(name, 0, -1)
    elif kind == "zset":
        parts += await client.zrange(name, 0, -1)
    elif kind == "set":
        parts += list(await client.smembers(name))
    return StoredEntry(text(name), b"\x00|\x00".join(parts), ttl)
