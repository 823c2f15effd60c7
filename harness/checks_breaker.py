"""Breaker accounting: downstream calls set against the circuit's timeline, from the ledgers."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def breaker_report(
    by_event: dict[str, list[dict[str, Any]]],
    breaker: str,
    options: dict[str, float],
    failures: list[str],
) -> dict[str, Any]:
    """Downstream calls against the circuit's timeline. An episode starts when any process
    saw the circuit open and half-opens `reset_timeout` later; a call that starts inside
    that window was made while the circuit was open somewhere."""
    reset = float(options.get("reset_timeout", 0.0))
    max_calls = int(options.get("half_open_max_calls", 1))
    opens = sorted(r["t"] for r in by_event["bopen"])
    calls = sorted(r["t"] for r in by_event["call"])
    failed_calls = sorted(r["t"] for r in by_event["call"] if not r["ok"])
    while_open = sum(1 for t in calls if any(o <= t < o + reset for o in opens))
    per_episode: dict[float, int] = defaultdict(int)
    for r in by_event["probe"]:
        episode = max((o for o in opens if o <= r["t"]), default=None)
        if episode is not None:
            per_episode[episode] += 1
    first_open = opens[0] if opens else float("inf")
    probes = max(per_episode.values(), default=0)
    report: dict[str, Any] = {
        "threshold": int(options.get("failure_threshold", 0)),
        "opened": len(opens),
        "failures_before_open": sum(1 for t in failed_calls if t < first_open),
        "calls_while_open": while_open,
        "half_open_probes": probes,
        "probes_per_episode": [per_episode[o] for o in sorted(per_episode)],
    }
    if not opens:
        failures.append("breaker: the circuit never opened during the downstream outage")
    if breaker == "redis" and while_open:
        failures.append(
            f"breaker: {while_open} downstream calls started while the shared circuit was open"
        )
    if breaker == "redis" and probes > max_calls:
        failures.append(
            f"breaker: {probes} probes in one half-open episode (at most {max_calls} allowed)"
        )
    return report
