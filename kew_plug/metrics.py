"""Prometheus metrics of one worker process, served by prometheus_client on its own port
(`kew-plug worker --metrics-port P` gives process k the port P + k: one scrape target per
process, no shared multiprocess directory to clean up)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kew_plug.errors import KewError
from kew_plug.hooks import TaskEvent
from kew_plug.interfaces import BreakerState

if TYPE_CHECKING:
    from kew_plug.worker import Worker

#: WorkerStats fields exported as counters, by their metric name.
COUNTED = {
    "claimed": "claimed",
    "completed": "completed",
    "retried": "retried",
    "dead": "dead",
    "stale": "stale",
    "recovered": "recovered",
}
BREAKER_VALUE = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}


class WorkerMetrics:
    """Counters follow each Worker's own stats; the histograms come from its hooks."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Counter(
            "kew_plug_tasks",
            "Tasks by what happened to them in this process",
            ["queue", "event"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "kew_plug_task_duration_seconds",
            "Time a task body ran, per attempt",
            ["queue"],
            registry=self.registry,
        )
        self.waited = Histogram(
            "kew_plug_claim_to_start_seconds",
            "Time from a task's claim to the start of its body",
            ["queue"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.depth = Gauge(
            "kew_plug_queue_depth",
            "Tasks in the store by state",
            ["queue", "state"],
            registry=self.registry,
        )
        self.breaker = Gauge(
            "kew_plug_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["queue"],
            registry=self.registry,
        )
        self.store_errors = Counter(
            "kew_plug_store_errors",
            "Store calls that failed in this process",
            ["queue"],
            registry=self.registry,
        )
        self._seen: dict[tuple[str, str], int] = {}

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def attach(self, worker: Worker) -> None:
        """Add the hooks that feed the histograms."""
        queue = worker.queue.name

        def started(event: TaskEvent) -> None:
            if event.claimed_at:
                self.waited.labels(queue).observe(max(0.0, time.time() - event.claimed_at))

        def ended(event: TaskEvent) -> None:
            self.duration.labels(queue).observe(event.duration)

        worker.hooks["start"].append(started)
        worker.hooks["complete"].append(ended)
        worker.hooks["fail"].append(ended)

    async def refresh(self, workers: Sequence[Worker]) -> None:
        """Bring counters up to each worker's stats; read depth and breaker state."""
        for worker in workers:
            queue = worker.queue.name
            stats = dataclasses.asdict(worker.stats)
            for field, event in COUNTED.items():
                self._advance(self.tasks.labels(queue, event), (queue, field), stats.get(field, 0))
            errors = stats.get("store_errors", 0)
            self._advance(self.store_errors.labels(queue), (queue, "store_errors"), errors)
            try:
                counts = await worker.queue.store.stats(queue)
            except KewError:
                continue  # counted by the worker itself as a store error
            for state, n in dataclasses.asdict(counts).items():
                self.depth.labels(queue, state).set(n)
            if worker.queue.breaker is not None:
                state_now = await worker.queue.breaker.state()
                self.breaker.labels(queue).set(BREAKER_VALUE[state_now])

    def _advance(self, counter: Counter, key: tuple[str, str], total: int) -> None:
        before = self._seen.get(key, 0)
        if total > before:
            counter.inc(total - before)
        self._seen[key] = max(before, total)

    async def keep_fresh(self, workers: Sequence[Worker], every: float = 1.0) -> None:
        while True:
            await self.refresh(workers)
            await asyncio.sleep(every)
