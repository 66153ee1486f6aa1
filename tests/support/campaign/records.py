"""What the producer was told by gq: every job answered 202 (or known as a duplicate of its own
earlier try), every cancel answered 200, every replay asked. Times are time.time(), as the
target's records are."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Accepted:
    id: str
    seq: int                   # the order accepted: one submitter, one request at a time
    key: str | None            # ordering_key
    hostile: bool              # sent to the hostile target (which records nothing)
    answered: float            # when the 202 (or the duplicate's 200) came


@dataclass
class Records:
    accepted: dict[str, Accepted] = field(default_factory=dict)
    given_up: set[str] = field(default_factory=set)        # ids of a request never answered 2xx
    cancelled: dict[str, float] = field(default_factory=dict)  # id -> when its 200 came
    replay_asked: dict[str, float] = field(default_factory=dict)  # id -> first replay request sent
    replayed: Counter = field(default_factory=Counter)      # id -> replays answered with it
    answers: Counter = field(default_factory=Counter)       # "POST 202", "DELETE 409", "POST error" …
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, what: str) -> None:
        with self.lock:
            self.answers[what] += 1

    def accept(self, jobs: list[dict], answered: float, hostile_base: str) -> None:
        """Every job of a request answered 2xx: new ones and duplicates of an earlier try alike
        (both are on record in gq); in the order of the request."""
        with self.lock:
            for job in jobs:
                if job["id"] not in self.accepted:
                    self.accepted[job["id"]] = Accepted(job["id"], len(self.accepted), job.get("ordering_key"),
                                                        job["url"].startswith(hostile_base), answered)

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return list(self.accepted)

    def ask_replay(self, ids: list[str], sent: float) -> None:
        with self.lock:
            for job_id in ids:
                self.replay_asked.setdefault(job_id, sent)
