"""After the drain: what the store holds. For a store on a Redis server the harness knows
(one it started, or --redis-url), leftovers are read from the raw server by harness code
(harness.rawscan); otherwise it falls back to the store's own report, and says so."""

from __future__ import annotations

import json
from typing import Any

from harness.checks import StoreFacts
from harness.events import Ev, Record
from harness.rawscan import RawKey, RawScan, judge, scan
from kew_plug.errors import KewError, StoreUnavailable
from kew_plug.interfaces import Store
from kew_plug.queue import Queue


async def store_facts(
    store: Store,
    *,
    url: str | None,
    namespace: str,
    queues: list[str],
    records: list[Record],
    serializer: str,
    secret: str,
    pattern: bytes,
    bounds: tuple[float, float],
) -> StoreFacts:
    """`bounds`: how long the store was asked to keep finished and dead records."""
    facts = StoreFacts()
    reported: set[str] = set()
    for name in queues:
        reported |= await store.payload_ids(name)
        facts.dead.update(await _dead(store, name))
    # A cancelled task is finished too: its payload must be gone, its record bounded.
    completed = {r["id"] for r in records if r["e"] == Ev.OK}
    completed |= {r["id"] for r in records if r["e"] == Ev.CANCEL and r.get("ok")}
    dead = set(facts.dead) | {r["id"] for r in records if r["e"] == Ev.DEAD}
    raw = await scan(url, namespace) if url is not None else None
    independent = raw is not None and bool(raw.keys)
    facts.independent = dict.fromkeys(
        ("payloads_left", "keys_without_ttl", "ttl_too_long"), independent
    )
    facts.independent["dead"] = False  # the dead set is read through the store
    if not independent:
        # Nothing of the run on a server the harness can read: judge what the store says
        # it holds instead (the report marks these checks as not independent).
        entries = await store.contents()
        if entries:
            raw = RawScan([RawKey(e.name, "entry", e.ttl_ms, e.data) for e in entries])
            facts.judged_from = "the store's own contents"
    if raw is not None and raw.keys:
        left = judge(raw, namespace, pattern, completed - dead, dead, *bounds)
        # Only finished tasks must have lost their payload: a dead task keeps it so that it
        # can be requeued, and an unfinished one is reported as lost, not here.
        anonymous = [k for k in left.payload_keys if not any(i in k for i in left.payload_ids)]
        finished = completed - dead
        facts.payloads_left = len((left.payload_ids | reported) & finished) + len(anonymous)
        facts.keys_without_ttl = len(left.without_ttl)
        facts.ttl_too_long = len(left.ttl_too_long)
        for check, found in (
            ("payloads_left", left.payload_keys),
            ("keys_without_ttl", left.without_ttl),
            ("ttl_too_long", left.ttl_too_long),
        ):
            if found:
                facts.examples[check] = found[0]
    else:
        facts.payloads_left = len(reported & (completed - dead))
        facts.judged_from = "the store's payload_ids()"
    facts.results = await _read_results(store, records, queues, serializer, secret)
    return facts


async def _dead(store: Store, queue: str) -> dict[str, str]:
    """The store's dead-letter set, with each task's reason (recover() dead-letters tasks
    by itself, where no worker hook sees them)."""
    ids = await store.dead_ids(queue, limit=100_000)
    out: dict[str, str] = {}
    for task_id, rec in zip(ids, await store.get_many(queue, ids), strict=True):
        out[task_id] = (rec.error if rec is not None else None) or "dead-lettered by the store"
    return out


async def _read_results(
    store: Store, records: list[Record], queues: list[str], serializer: str, secret: str
) -> dict[str, Any]:
    by_queue: dict[str, list[str]] = {name: [] for name in queues}
    for r in records:
        if r["e"] == Ev.SUBMITTED:
            # Ids are <namespace>-<i>, and task i went to queue i mod K.
            by_queue[queues[int(r["id"].rsplit("-", 1)[1]) % len(queues)]].append(r["id"])
    decode = Queue(store, serializer, name=queues[0], secret=secret).serializer
    out: dict[str, Any] = {}
    for name, ids in by_queue.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for task_id, rec in zip(chunk, await store.get_many(name, chunk), strict=True):
                if rec is not None and rec.result is not None:
                    try:
                        # Compared with ledger values, which went through JSON.
                        out[task_id] = json.loads(json.dumps(decode.loads(rec.result)))
                    except KewError as e:
                        out[task_id] = f"<unreadable result: {e}>"
    return out


async def keys_per_node(store: Store) -> dict[str, int]:
    """How many of the run's keys each server holds (one entry unless on a cluster)."""
    try:
        return await store.keys_per_node()
    except StoreUnavailable:
        return {}
