"""What each Redis script of kew-plug costs the server, one phase per script call shape.

    python benchmarks/script_cost.py [--tasks 5000] [--payload 150] [--md out.md]

Calls the store directly (no worker, no serializer), on its own throwaway redis-server, so
each phase holds one kind of call only. Per task, from INFO commandstats and INFO cpu:
- round trips: calls the client sent (a script call counts once);
- commands: every command Redis ran, the script calls and the commands inside them;
- command µs: the time of the calls clients sent (a script counts whole), as
  ../shared/bench/driver.py counts it;
- CPU µs: the Redis process's user + sys CPU, network I/O included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from harness.servers import RedisServer
from kew_plug.backends.redis import RedisStore
from kew_plug.models import Claim, NewTask, Outcome, OutcomeKind

SCRIPTED = {"evalsha", "eval"}


async def snapshot(admin: aioredis.Redis) -> tuple[dict[str, tuple[int, int]], float]:
    stats: dict[str, Any] = await admin.info("commandstats")
    cpu: dict[str, Any] = await admin.info("cpu")
    calls = {
        k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()
    }
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def measure(
    admin: aioredis.Redis, name: str, n: int, body: Callable[[], Awaitable[None]]
) -> str:
    await admin.config_resetstat()
    _, cpu0 = await snapshot(admin)
    await body()
    calls, cpu1 = await snapshot(admin)
    own = {"info", "config|resetstat"}
    calls = {k: v for k, v in calls.items() if k not in own}
    total = sum(c for c, _ in calls.values())
    scripted = sum(c for k, (c, _) in calls.items() if k in SCRIPTED)
    # Blocking waits are sent by the client; every other command ran inside a script.
    blocking = {k: c for k, (c, _) in calls.items() if k.startswith(("bl", "bz"))}
    trips = scripted + sum(blocking.values())
    usec = sum(u for k, (_, u) in calls.items() if k in SCRIPTED or k in blocking)
    top = ", ".join(
        f"{k} {c / n:.2f}" for k, (c, _) in sorted(calls.items(), key=lambda kv: -kv[1][0])
    )
    return (
        f"| {name} | {trips / n:.3f} | {total / n:.2f} | {usec / n:.1f} | "
        f"{(cpu1 - cpu0) * 1e6 / n:.1f} | {top} |"
    )


async def main(tasks: int, payload_size: int) -> str:
    payload = os.urandom(payload_size)
    rows = []
    with RedisServer() as server:
        admin = aioredis.Redis.from_url(server.url)
        store = RedisStore.from_url(server.url, namespace="cost")
        q = "cost"
        warm = NewTask(uuid.uuid4().hex, payload)
        await store.enqueue(q, [warm])  # scripts loaded, connections open
        got = await store.claim(q, "w", 1, 60_000)
        await store.settle(q, [Outcome(c.id, c.token, OutcomeKind.COMPLETE) for c in got.claims])
        ids = [uuid.uuid4().hex for _ in range(tasks)]

        async def enqueue_single() -> None:
            for i in ids:
                await store.enqueue(q, [NewTask(i, payload, new_id=True)])

        claims: list[Claim] = []

        async def claim_single() -> None:
            for _ in ids:
                claims.extend((await store.claim(q, "w", 1, 60_000)).claims)

        async def settle_single() -> None:
            for c in claims:
                await store.settle(q, [Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"")])

        rows.append(await measure(admin, "enqueue, 1 per call", tasks, enqueue_single))
        rows.append(await measure(admin, "claim, 1 per call", tasks, claim_single))
        assert len(claims) == tasks, f"claimed {len(claims)} of {tasks}"
        rows.append(await measure(admin, "settle, 1 per call", tasks, settle_single))

        ids = [uuid.uuid4().hex for _ in range(tasks)]
        claims.clear()

        async def enqueue_batch() -> None:
            for k in range(0, tasks, 100):
                await store.enqueue(q, [NewTask(i, payload, new_id=True) for i in ids[k : k + 100]])

        async def claim_batch() -> None:
            for _ in range(0, tasks, 10):
                claims.extend((await store.claim(q, "w", 10, 60_000)).claims)

        async def settle_batch() -> None:
            for k in range(0, len(claims), 10):
                await store.settle(
                    q,
                    [Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"") for c in claims[k : k + 10]],
                )

        rows.append(await measure(admin, "enqueue, 100 per call", tasks, enqueue_batch))
        rows.append(await measure(admin, "claim, 10 per call", tasks, claim_batch))
        assert len(claims) == tasks, f"claimed {len(claims)} of {tasks}"
        rows.append(await measure(admin, "settle, 10 per call", tasks, settle_batch))

        # One task at a time through a waiting worker, as in a trickle: the classic path
        # (wake-up, then a claim) against a hand-off (the submit claims for the worker).
        async def classic() -> None:
            for _ in range(tasks):
                await store.enqueue(q, [NewTask(uuid.uuid4().hex, payload, new_id=True)])
                await store.wait(q, 1.0)
                (c,) = (await store.claim(q, "w", 1, 60_000)).claims
                await store.settle(q, [Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"")])

        async def handed() -> None:
            # As a Worker(concurrency=10) does: it offers its 10 free slots, and offers
            # again once 10 hand-offs have used them up.
            for k in range(tasks):
                if k % 10 == 0:
                    await store.claim_and_offer(q, "h", 10, 60_000, 600_000)
                await store.enqueue(q, [NewTask(uuid.uuid4().hex, payload, new_id=True)])
                (c,) = (await store.wait_handed(q, "h", 1.0)).claims
                await store.settle(q, [Outcome(c.id, c.token, OutcomeKind.COMPLETE, b"")])

        rows.append(await measure(admin, "trickle: wake-up, claim, settle", tasks, classic))
        if store.hands_off:
            rows.append(await measure(admin, "trickle: hand-off, settle", tasks, handed))
        await store.aclose()
        await admin.aclose()
    head = (
        f"{tasks} tasks, {payload_size}-byte payloads, per task:\n\n"
        "| call | round trips | commands (incl. in Lua) | command µs | Redis CPU µs | commands |\n"
        "|---|---|---|---|---|---|"
    )
    text = "\n".join([head, *rows])
    return text


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", type=int, default=5000)
    p.add_argument("--payload", type=int, default=150)
    p.add_argument("--md", default=None, help="append the table to this Markdown file")
    a = p.parse_args()
    text = asyncio.run(main(a.tasks, a.payload))
    print(text)
    if a.md:
        with open(a.md, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")
