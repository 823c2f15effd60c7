"""Breaker accounting on the breaker's own clock.

Every decision the breaker under test takes is in the ledger (`bdec` records, written by
`harness.recording.RecordingBreaker`) with the time the breaker gave it, in microseconds:
the server's clock for a shared breaker, the process's own clock for a local one. Each
downstream call (`call` record) carries the decision that granted it. The rule:

- Decisions are compared only on one clock: a shared breaker's decisions from every
  process together, a local breaker's decisions within its own process.
- Decisions are ordered by (time, times-opened-as-seen); a trip sorts before a grant of
  the same microsecond that already saw it.
- A call was made *while open* when the decision that granted it came after a trip (and
  no close since) and less than `reset_timeout` after it: the circuit could not yet have
  half-opened. The breaker's own word for the decision (`granted`, `probe`) is ignored.
- A half-open episode starts `reset_timeout` after a trip and ends at the next trip or
  close; every grant in it is a probe. At most `half_open_max_calls` probes are allowed,
  counted afresh once the last probe is `reset_timeout` old (a probe whose process died
  must not jam the breaker), exactly as the breakers themselves count.

`analyse(records)` returns the report and the failures; pure, so synthetic ledgers test it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

GRANTS = ("granted", "probe")
TRANSITIONS = ("tripped", "closed")

# A domain is one clock: ("circuit", None) for a shared breaker, ("circuit", pid) otherwise.
Domain = tuple[str, int | None]
Key = tuple[int, int, int]  # (time us, opened count seen, 0 for a transition else 1)


@dataclass
class _Timeline:
    reset_us: int
    max_calls: int
    transitions: list[tuple[Key, str]] = field(default_factory=list)
    grants: list[Key] = field(default_factory=list)

    def prepare(self) -> None:
        self.transitions.sort()
        self.grants.sort()
        self._keys = [k for k, _ in self.transitions]

    def trip_before(self, key: Key) -> int | None:
        """When the circuit last opened before `key`, or None if closed since (or never)."""
        i = bisect.bisect_left(self._keys, key) - 1
        if i < 0 or self.transitions[i][1] != "tripped":
            return None
        return self.transitions[i][0][0]

    def while_open(self, key: Key) -> bool:
        opened_at = self.trip_before(key)
        return opened_at is not None and key[0] - opened_at < self.reset_us

    def probes_per_episode(self) -> list[int]:
        """Most probes granted at once in each half-open episode (the expiry rule applied)."""
        episodes: dict[int, int] = {}
        state: tuple[int, int, int] | None = None  # (episode trip time, probes, last probe)
        for key in self.grants:
            opened_at = self.trip_before(key)
            if opened_at is None or key[0] - opened_at < self.reset_us:
                continue  # closed, or open (counted as a grant while open)
            if state is None or state[0] != opened_at:
                state = (opened_at, 0, 0)
            _, probes, last = state
            if probes >= self.max_calls and key[0] - last >= self.reset_us:
                probes = 0  # the earlier probes never reported: a fresh episode
            state = (opened_at, probes + 1, key[0])
            episodes[opened_at] = max(episodes.get(opened_at, 0), probes + 1)
        return [episodes[t] for t in sorted(episodes)]


def _domain(r: dict[str, Any]) -> Domain:
    return (str(r["c"]), None if r["sh"] else int(r["p"]))


def _key(r: dict[str, Any]) -> Key:
    return (int(r["bt"]), int(r["bn"]), 0 if r.get("bk") in TRANSITIONS else 1)


def _open_elsewhere(
    records: list[dict[str, Any]], calls: list[dict[str, Any]], configs: dict[Domain, Any]
) -> int:
    """Local breakers only, and information only: calls made while another process's own
    circuit was open. Processes share no clock but the wall clock, so this count is
    approximate; it shows what a per-process breaker lets through, and never fails a run."""
    trips = defaultdict(list)
    for r in records:
        if r["e"] == "bdec" and r["bk"] == "tripped":
            trips[r["c"]].append((float(r["t"]), int(r["p"])))
    count = 0
    for r in calls:
        reset = int(configs[_domain(r)]["reset_us"]) / 1_000_000
        count += any(p != r["p"] and t <= r["t"] < t + reset for t, p in trips.get(r["c"], []))
    return count


def analyse(records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The breaker report of a breaker-scenario run, and its failures."""
    configs: dict[Domain, dict[str, Any]] = {}
    for r in records:
        if r["e"] == "bcfg":
            configs.setdefault(_domain(r), r)
    if not configs:
        return {"opened": 0}, ["breaker: no breaker was recorded in the ledgers"]
    timelines = {
        d: _Timeline(int(cfg["reset_us"]), int(cfg["max_calls"])) for d, cfg in configs.items()
    }
    for r in records:
        if r["e"] != "bdec" or _domain(r) not in timelines:
            continue
        line = timelines[_domain(r)]
        if r["bk"] in TRANSITIONS:
            line.transitions.append((_key(r), r["bk"]))
        elif r["bk"] in GRANTS:
            line.grants.append(_key(r))
    for line in timelines.values():
        line.prepare()

    calls = [r for r in records if r["e"] == "call"]
    unjudged = [r for r in calls if "bt" not in r or _domain(r) not in timelines]
    judged = [r for r in calls if "bt" in r and _domain(r) in timelines]
    while_open = sum(1 for r in judged if timelines[_domain(r)].while_open(_key(r)))
    grants_open = sum(
        1 for line in timelines.values() for key in line.grants if line.while_open(key)
    )
    first_trip = {
        d: min((k[0] for k, kind in line.transitions if kind == "tripped"), default=None)
        for d, line in timelines.items()
    }
    failures_before_open = 0
    for r in judged:
        trip = first_trip[_domain(r)]
        failures_before_open += not r["ok"] and trip is not None and int(r["bt"]) < trip
    episodes = [n for line in timelines.values() for n in line.probes_per_episode()]
    opened = sum(
        1 for line in timelines.values() for _, kind in line.transitions if kind == "tripped"
    )
    any_cfg = next(iter(configs.values()))
    shared = bool(any_cfg["sh"])
    max_calls = int(any_cfg["max_calls"])
    report: dict[str, Any] = {
        "threshold": int(any_cfg["threshold"]),
        "clock": "shared (the breaker's server)" if shared else "per process",
        "opened": opened,
        "failures_before_open": failures_before_open,
        "calls_while_open": while_open,
        "grants_while_open": grants_open,
        "half_open_probes": max(episodes, default=0),
        "probes_per_episode": episodes,
        "calls_without_decision_time": len(unjudged),
    }
    if not shared:
        report["calls_while_open_elsewhere"] = _open_elsewhere(records, judged, configs)
    failures: list[str] = []
    if not opened:
        failures.append("breaker: the circuit never opened during the downstream outage")
    if while_open or grants_open:
        failures.append(
            f"breaker: {while_open} downstream calls were granted while the circuit was open "
            f"({grants_open} grants in all), on the breaker's own clock"
        )
    if max(episodes, default=0) > max_calls:
        failures.append(
            f"breaker: {max(episodes)} probes in one half-open episode "
            f"(at most {max_calls} allowed)"
        )
    if unjudged:
        failures.append(
            f"breaker: {len(unjudged)} downstream calls carry no decision time: "
            f"{any_cfg['kind']} does not report Breaker.last_decision, so it cannot be checked"
        )
    return report, failures
