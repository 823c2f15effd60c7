"""Exponential backoff with jitter, so failing tasks do not retry in lockstep."""

from __future__ import annotations

import random
from dataclasses import dataclass

from kew_plug.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.5  # fraction of the delay that is randomized: 0 = none, 1 = full jitter

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            raise InvalidArgument(
                f"RetryPolicy needs base >= 0, factor >= 1, max_delay >= 0 and 0 <= jitter <= 1; "
                f"got base={self.base}, factor={self.factor}, max_delay={self.max_delay}, "
                f"jitter={self.jitter}"
            )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_delay, self.base * self.factor ** max(0, attempt - 1))
        spread = ceiling * self.jitter
        return ceiling - spread + (rng or random).random() * spread
