"""The jobs a campaign's producer sends: most to the recording target, some with an ordering key,
some scheduled, some made to fail once or to die (to be replayed), a few to the hostile target."""

from __future__ import annotations

import random
from typing import Any

from support import Target

KEYS = 6                                    # ordering keys in use
HOSTILE_PATHS = ("continue", "trailers", "headers", "status", "body", "drip", "gzip", "redirect", "reset", "ok")


class JobMaker:
    def __init__(self, rng: random.Random, prefix: str, target: Target, hostile_base: str):
        self.rng, self.prefix, self.target, self.hostile_base = rng, prefix, target, hostile_base
        self.made = 0
        self.slow = 0.0        # seconds of delay the target is asked for while it is "slow"

    def batch(self) -> list[dict[str, Any]]:
        return [self.job() for _ in range(self.rng.choice((1, 1, 2, 3, 5)))]

    def job(self) -> dict[str, Any]:
        rng = self.rng
        self.made += 1
        job: dict[str, Any] = {"id": f"{self.prefix}-{self.made:07d}", "json": {"n": self.made}}
        if rng.random() < 0.04:
            path = rng.choice(HOSTILE_PATHS)
            job.update(url=f"{self.hostile_base}/{path}", timeout=2, max_attempts=2)
            return job
        query: dict[str, Any] = {}
        delay = self.slow or rng.choice((0, 0, 0.01, 0.05))
        if delay:
            query["delay"] = delay
        fate = rng.random()
        if fate < 0.1:
            query["fail"] = 1                     # one 503, then delivered
        elif fate < 0.16:
            query["fail"] = 2                     # dead after its two attempts; delivered once replayed
            job["max_attempts"] = 2
        elif fate < 0.18:
            query["status"] = 404                 # dead at once, and again when replayed
        if rng.random() < 0.6:
            job["ordering_key"] = f"{self.prefix}-k{rng.randrange(KEYS)}"
        if rng.random() < 0.08:
            job["delay"] = round(rng.uniform(0.5, 6.0), 2)
        job["url"] = self.target.url("/hook", **query)
        return job
