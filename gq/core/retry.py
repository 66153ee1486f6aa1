"""The retry policy: how many attempts, and how long to wait before the next."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None,
              rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based).

        Exponential from `backoff_base`, doubling, full jitter, capped at
        `backoff_max`; a target's Retry-After, when given, wins up to the cap.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt - 1, 62))
        return (rng or random).uniform(0.0, ceiling)
