"""Backoff for failing store calls: one log line when trouble starts, one when it ends, and
growing sleeps in between, so an outage neither floods the log nor hammers the store."""

from __future__ import annotations

import logging

log = logging.getLogger("kew_plug.worker")

MAX_PAUSE_S = 5.0


class Backoff:
    def __init__(self, what: str) -> None:
        self.what, self.failures = what, 0

    def failed(self, exc: BaseException) -> float:
        """Count a failure; returns how long to pause before the next try."""
        self.failures += 1
        if self.failures == 1:
            trouble = "unavailable" if isinstance(exc, ConnectionError) else "failing"
            log.warning(
                "store %s during %s (%s: %s); retrying with backoff",
                trouble,
                self.what,
                type(exc).__name__,
                exc,
            )
        return min(MAX_PAUSE_S, 0.05 * 2.0 ** min(self.failures, 7))

    def ok(self) -> None:
        if self.failures:
            log.warning("store reachable again for %s after %d failures", self.what, self.failures)
            self.failures = 0
