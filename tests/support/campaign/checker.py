"""The rules a campaign's run must keep, checked on the evidence: each broken rule a Violation
naming the job, the rule and what shows it.

1. fate       every job answered 202 is succeeded, dead or cancelled as the API says — none lost
              (404), none stuck (left unfinished once the jobs left stop moving: evidence.py) —
              and the target saw what that state means;
2. cancel     no request of a job reaches the target after its cancel was answered 200;
3. order      per ordering key, the jobs reach the target in the order accepted (a replayed job's
              later attempts aside), and never two requests of one key at the target at once;
4. duplicate  a job delivered (answered 2xx) more than once: n such extra deliveries, at most the
              m attempts its history shows with outcome "unknown" (gq died during them);
5. answer     gq answers every request it reads, even while it stops, with what the API says
              (a 5xx other than 503 is a fault of gq's; no answer at all is a process gone).
The ledger's rules are in ledger.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from support.campaign.evidence import FINAL, Evidence
from support.campaign.faults import Done
from support.campaign.records import Accepted, Records


@dataclass(frozen=True)
class Violation:
    rule: str
    job: str
    evidence: str

    def __str__(self) -> str:
        return f"{self.rule}: job {self.job}: {self.evidence}"


def unknown_attempts(view: dict[str, Any] | None) -> int:
    return sum(1 for attempt in (view or {}).get("history", []) if attempt.get("outcome") == "unknown")


def delivered(arrivals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests the target answered 2xx."""
    return [r for r in arrivals if r["status"] is not None and 200 <= r["status"] <= 299]


def when(record: dict[str, Any]) -> str:
    end = "never answered" if record["end"] is None else f"answered {record['status']} at {record['end']:.3f}"
    return f"arrived {record['t']:.3f}, {end}"


class Checker:
    def __init__(self, records: Records, evidence: Evidence, orphaning: list[Done]):
        """`orphaning`: the faults after which gq may not know what became of an attempt."""
        self.records, self.evidence, self.orphaning = records, evidence, orphaning
        self.violations: list[Violation] = []
        self.duplicates = 0      # n: deliveries beyond the first, over every job
        self.unknown = 0         # m: attempts of unknown outcome, over every job

    def check(self) -> list[Violation]:
        for job in self.records.accepted.values():
            self._fate(job)
            self._duplicates(job)
        for job_id, at in self.records.cancelled.items():
            self._cancel(job_id, at)
        for key_jobs in self._by_key().values():
            self._order(key_jobs)
            self._one_at_a_time(key_jobs)
        for answer, times in sorted(self.records.answers.items()):
            status = answer.rsplit(" ", 1)[-1]
            if status.startswith("5") and status != "503":
                self.fail("answer", "-", f"{answer}: {times} time(s)")
        for key in sorted(set(self.evidence.unasked)):
            self.fail("fate", key, "the target received it, but no request for it was answered 2xx")
        return self.violations

    def fail(self, rule: str, job: str, evidence: str) -> None:
        self.violations.append(Violation(rule, job, evidence))

    def arrivals(self, job_id: str) -> list[dict[str, Any]]:
        return sorted(self.evidence.arrivals.get(job_id, []), key=lambda r: r["t"])

    # -- 1, 2, 4: each job

    def _fate(self, job: Accepted) -> None:
        view = self.evidence.views.get(job.id)
        if view is None:
            self.fail("fate", job.id, f"lost: answered 202 at {job.answered:.3f}, GET /v1/jobs/{job.id} is 404")
            return
        state = view.get("state")
        if state not in FINAL:
            key = f", key {view['ordering_key']}" if view.get("ordering_key") else ""
            self.fail("fate", job.id, f"stuck: still {state} when the jobs left had stopped moving "
                                      f"(attempts {view.get('attempts')}, next {view.get('next_attempt_at')}{key})")
            return
        if job.hostile:
            return
        got = delivered(self.arrivals(job.id))
        if state == "succeeded" and not got:
            self.fail("fate", job.id, f"the API says succeeded, the target answered it 2xx never "
                                      f"({len(self.arrivals(job.id))} requests)")
        elif state != "succeeded" and len(got) > unknown_attempts(view):
            self.fail("fate", job.id, f"the API says {state}, yet the target answered it 2xx {len(got)} times "
                                      f"with {unknown_attempts(view)} attempt(s) of unknown outcome")

    def _duplicates(self, job: Accepted) -> None:
        view = self.evidence.views.get(job.id)
        if job.hostile or view is None:
            return
        n, m = max(0, len(delivered(self.arrivals(job.id))) - 1), unknown_attempts(view)
        self.duplicates += n
        self.unknown += m
        if n > m:
            got = "; ".join(when(r) for r in delivered(self.arrivals(job.id)))
            self.fail("duplicate", job.id, f"delivered {n + 1} times, {m} attempt(s) of unknown outcome: {got}")

    def _cancel(self, job_id: str, at: float) -> None:
        late = [r for r in self.arrivals(job_id) if r["t"] > at]
        if late:
            self.fail("cancel", job_id, f"cancel answered 200 at {at:.3f}, then the target got it: {when(late[0])}")
        state = (self.evidence.views.get(job_id) or {}).get("state")
        if state != "cancelled":
            self.fail("cancel", job_id, f"cancel answered 200 at {at:.3f}, yet the job ends {state}")

    # -- 3: each ordering key

    def _by_key(self) -> dict[str, list[Accepted]]:
        keys: dict[str, list[Accepted]] = {}
        for job in self.records.accepted.values():
            if job.key is not None:
                keys.setdefault(job.key, []).append(job)
        return {k: sorted(v, key=lambda j: j.seq) for k, v in keys.items()}

    def _order(self, jobs: list[Accepted]) -> None:
        """Each job's first request comes after every request of the jobs accepted before it
        (those sent before it was asked to be replayed, if it was)."""
        latest: tuple[float, str] = (-math.inf, "")
        for job in jobs:
            arrivals = self.arrivals(job.id)
            if arrivals and arrivals[0]["t"] < latest[0]:
                self.fail("order", job.id, f"key {job.key}: its first request {when(arrivals[0])}, before a "
                                           f"request of {latest[1]} (accepted earlier) that arrived {latest[0]:.3f}")
            replay = self.records.replay_asked.get(job.id, math.inf)
            before = [r["t"] for r in arrivals if r["t"] < replay]
            if before and max(before) > latest[0]:
                latest = (max(before), job.id)

    def _one_at_a_time(self, jobs: list[Accepted]) -> None:
        """No request of the key arrives while another is at the target, but when gq lost the
        earlier one (a fault that may orphan an attempt came while it was there, and the job's
        history shows an attempt of unknown outcome)."""
        requests = sorted(((r, job.id) for job in jobs for r in self.arrivals(job.id)), key=lambda x: x[0]["t"])
        held: tuple[dict[str, Any], str] | None = None
        for record, job_id in requests:
            if held is not None and record["t"] < _end(held[0]) and not self._lost(*held):
                self.fail("order", job_id, f"key {jobs[0].key}: a request {when(record)} while one of "
                                           f"{held[1]} was at the target ({when(held[0])})")
            if held is None or _end(record) > _end(held[0]):
                held = (record, job_id)

    def _lost(self, record: dict[str, Any], job_id: str) -> bool:
        if unknown_attempts(self.evidence.views.get(job_id)) == 0:
            return False
        return any(d.began <= _end(record) and d.ended >= record["t"] for d in self.orphaning)


def _end(record: dict[str, Any]) -> float:
    return math.inf if record["end"] is None else record["end"]
