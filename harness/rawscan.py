"""Leftovers read from the raw server, not from the store's own report. After the drain the
harness opens its own Redis connection (on every primary of a cluster), walks every key of
the run's namespace and reads each value by type. It needs no knowledge of the store's key
layout or field names: payload bytes are recognised by the run's marker pattern, a key's
task by a task id in its name, and that task's fate comes from the ledger."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as rex

CLUSTER_SCHEME = "redis+cluster://"


@dataclass
class RawKey:
    name: str
    kind: str  # the Redis type
    ttl_ms: int  # -1: no TTL
    blob: bytes  # every field, member and value, joined (key layout never matters)


@dataclass
class RawScan:
    keys: list[RawKey] = field(default_factory=list)
    nodes: int = 0


def _primaries(url: str) -> list[str]:
    """Plain redis:// URLs for every node to scan: the server itself, or each primary."""
    if not url.startswith(CLUSTER_SCHEME):
        return [url.split("?", 1)[0]]
    parts = urlsplit("redis://" + url[len(CLUSTER_SCHEME) :])
    auth = parts.netloc.rpartition("@")[0]
    hosts = parts.netloc.rpartition("@")[2].split(",")
    prefix = f"redis://{auth}@" if auth else "redis://"
    return [prefix + h for h in hosts if h]


async def _cluster_primaries(seeds: list[str]) -> list[str]:
    """The current primaries. Every seed is asked for the slot map and every node it names
    is asked its role: right after a failover, a node's view can be stale, and a former
    primary that rejoined as a replica still serves its old data until it has resynced.
    Only nodes that say they are primaries now are scanned."""
    parsed = urlsplit(seeds[0])
    auth = parsed.netloc.rpartition("@")[0]
    prefix = f"redis://{auth}@" if auth else "redis://"
    named: set[str] = set()
    for seed in seeds:
        try:
            for entry in await _ask(seed, "CLUSTER", "SLOTS"):
                host, port = entry[2][0], entry[2][1]
                named.add(f"{prefix}{host.decode() if isinstance(host, bytes) else host}:{port}")
        except (OSError, rex.ConnectionError):
            continue  # a seed that is down names nothing
    primaries = []
    for node in sorted(named):
        try:
            role = await _ask(node, "ROLE")
        except (OSError, rex.ConnectionError):
            continue
        if role[0] in (b"master", "master"):
            primaries.append(node)
    return primaries or sorted(named)


async def _ask(url: str, *command: str) -> Any:
    client: Any = aioredis.Redis.from_url(url)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


async def _read(redis: aioredis.Redis, name: bytes) -> RawKey | None:
    client: Any = redis  # replies are bytes (decode_responses=False); typed loosely upstream
    kind = (await client.type(name)).decode()
    ttl = int(await client.pttl(name))
    if kind == "none" or ttl == -2:
        return None  # expired between SCAN and now
    parts: list[bytes] = []
    if kind == "string":
        parts.append(await client.get(name) or b"")
    elif kind == "hash":
        for f, v in (await client.hgetall(name)).items():
            parts += [f, v]
    elif kind == "list":
        parts += await client.lrange(name, 0, -1)
    elif kind == "set":
        parts += list(await client.smembers(name))
    elif kind == "zset":
        parts += await client.zrange(name, 0, -1)
    elif kind == "stream":
        for _, entry in await client.xrange(name):
            for f, v in entry.items():
                parts += [f, v]
    # Separators never join two values into a fake marker: they are not marker bytes.
    return RawKey(name.decode(errors="replace"), kind, ttl, b"\x00|\x00".join(parts))


async def scan(url: str, namespace: str) -> RawScan:
    """Every key of `namespace` on the server (or on every primary) behind `url`."""
    nodes = _primaries(url)
    if url.startswith(CLUSTER_SCHEME):
        nodes = await _cluster_primaries(nodes)
    out = RawScan(nodes=len(nodes))
    for node in nodes:
        client = aioredis.Redis.from_url(node, decode_responses=False)
        try:
            async for name in client.scan_iter(match=f"{namespace}:*", count=1000):
                key = await _read(client, name)
                if key is not None:
                    out.keys.append(key)
        finally:
            await client.aclose()
    return out


@dataclass
class Leftovers:
    payload_ids: set[str] = field(default_factory=set)  # tasks whose marker bytes remain
    payload_keys: list[str] = field(default_factory=list)  # every key holding marker bytes
    without_ttl: list[str] = field(default_factory=list)
    ttl_too_long: list[str] = field(default_factory=list)  # "key: ttl s > bound s"
    keys: int = 0


def judge(
    raw: RawScan,
    namespace: str,
    pattern: bytes,
    completed: set[str],
    dead: set[str],
    result_ttl: float,
    dead_ttl: float,
) -> Leftovers:
    """A key naming a task is that task's: it may live at most result_ttl once the task
    completed, dead_ttl once it died, and never without a TTL. A key naming no task is a
    queue structure: it may go without a TTL only while it holds no completed task."""
    ids = re.compile(re.escape(namespace) + r"-\d+")
    out = Leftovers(keys=len(raw.keys))
    for key in raw.keys:
        named = ids.findall(key.name)
        if pattern in key.blob or pattern in key.name.encode():
            out.payload_keys.append(key.name)
            out.payload_ids.update(named)
        if named:
            task = named[-1]
            bound = dead_ttl if task in dead else result_ttl if task in completed else None
            if key.ttl_ms == -1:
                out.without_ttl.append(key.name)
            elif bound is not None and key.ttl_ms > bound * 1000:
                out.ttl_too_long.append(f"{key.name}: {key.ttl_ms / 1000:.0f} s > {bound:g} s")
        elif key.ttl_ms == -1:
            held = set(ids.findall(key.blob.decode("latin-1")))
            if held & completed:
                out.without_ttl.append(key.name)
    return out
