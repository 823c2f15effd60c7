"""A server fault that takes a while (a failover takes seconds) is logged where it began:
the checker explains a rerun by a fault only if the fault came before the rerun, and a
lease can run out (and its task run again) while the failover is still going on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness.faults import Fault, Injector


async def test_a_failover_is_placed_where_it_began_not_where_it_ended() -> None:
    during: list[float] = []

    async def failover() -> dict[str, Any]:
        during.append(time.time())
        await asyncio.sleep(0)  # the failover itself runs a while; here, one loop turn
        during.append(time.time())
        return {"queue": "q"}

    injector = Injector(
        [Fault("failover", 0.0)], 1, list, lambda _: None, None, None, failover=failover
    )
    await injector.tick(1.0)
    (entry,) = injector.log
    assert entry["kind"] == "failover" and entry["queue"] == "q"
    assert entry["wall"] <= during[0] <= during[1]
