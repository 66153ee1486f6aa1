"""A client of gq through its HTTP API alone: it submits jobs (one request at a time, retried on
429 and 503 after Retry-After and on a lost answer with the same ids), and beside it an
operator cancels jobs and replays dead ones. What gq answered goes to the Records."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import requests

from support import Target
from support.campaign.jobs import JobMaker
from support.campaign.records import Records

REQUEST_TIMEOUT = 6.0      # seconds an answer may take (a daemon may be stopped for 5)
SUBMIT_DEADLINE = 120.0    # seconds a request is tried before it is given up
RETRY_AFTER_MOST = 10.0


class Producer:
    def __init__(self, apis: list[str], target: Target, hostile_base: str, records: Records, seed: int,
                 prefix: str):
        self.apis, self.records, self.prefix, self.hostile_base = apis, records, prefix, hostile_base
        self.rng = random.Random(f"{seed}:producer")
        self.maker = JobMaker(random.Random(f"{seed}:jobs"), prefix, target, hostile_base)
        self.halt = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._guarded, args=(loop,), daemon=True)
                        for loop in (self._submit_loop, self._operate_loop)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Stop submitting; the request under way is finished (accepted or given up) first."""
        self.halt.set()
        for thread in self.threads:
            thread.join(SUBMIT_DEADLINE + 30)

    def slow(self, delay: float) -> None:
        self.maker.slow = delay

    def _guarded(self, loop: Any) -> None:
        try:
            loop(requests.Session())
        except Exception as e:  # reported by the campaign
            self.errors.append(f"{type(e).__name__}: {e}")

    # -- submitting

    def _submit_loop(self, session: requests.Session) -> None:
        while not self.halt.is_set():
            self._submit(session, self.maker.batch())
            self.halt.wait(self.rng.uniform(0.02, 0.12))

    def _submit(self, session: requests.Session, jobs: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + SUBMIT_DEADLINE
        while time.monotonic() < deadline:
            api = self.rng.choice(self.apis)
            try:
                r = session.post(f"{api}/v1/jobs", json=jobs, timeout=REQUEST_TIMEOUT)
            except requests.RequestException:
                self.records.answer("POST no answer")
                time.sleep(0.2)
                continue
            self.records.answer(f"POST {r.status_code}")
            if r.status_code in (200, 202):
                self.records.accept(jobs, time.time(), self.hostile_base)
                return
            if r.status_code not in (429, 503):
                raise AssertionError(f"POST /v1/jobs answered {r.status_code}: {r.text[:300]}")
            time.sleep(min(float(r.headers.get("Retry-After", 1)), RETRY_AFTER_MOST))
        with self.records.lock:
            self.records.given_up.update(job["id"] for job in jobs)

    # -- cancelling and replaying

    def _operate_loop(self, session: requests.Session) -> None:
        turn = 0
        while not self.halt.wait(self.rng.uniform(0.1, 0.4)):
            turn += 1
            ids = self.records.accepted_ids()[-60:]
            if ids:
                self._cancel(session, self.rng.choice(ids))
            if turn % 8 == 0:
                self._replay(session)

    def _cancel(self, session: requests.Session, job_id: str) -> None:
        try:
            r = session.delete(f"{self.rng.choice(self.apis)}/v1/jobs/{job_id}", timeout=REQUEST_TIMEOUT)
        except requests.RequestException:
            self.records.answer("DELETE no answer")
            return
        self.records.answer(f"DELETE {r.status_code}")
        if r.status_code == 200:
            with self.records.lock:
                self.records.cancelled.setdefault(job_id, time.time())

    def _replay(self, session: requests.Session) -> None:
        """Some dead jobs of this campaign, by id (found through the list), or all of them by
        a filter."""
        api = self.rng.choice(self.apis)
        try:
            page = session.get(f"{api}/v1/jobs", params={"state": "dead", "id_prefix": self.prefix, "limit": 50},
                               timeout=REQUEST_TIMEOUT)
            found = [job["id"] for job in page.json().get("jobs", [])] if page.status_code == 200 else []
            body: dict[str, Any] = {"state": "dead", "id_prefix": self.prefix, "limit": 50}
            if self.rng.random() < 0.8:  # by id, else all this campaign's dead jobs by the filter
                found = self.rng.sample(found, min(len(found), 3))
                body = {"ids": found}
            if not found:
                return
            sent = time.time()
            self.records.ask_replay(found, sent)  # before the answer, which may be lost
            r = session.post(f"{api}/v1/jobs/replay", json=body, timeout=REQUEST_TIMEOUT)
        except requests.RequestException:
            self.records.answer("REPLAY no answer")
            return
        self.records.answer(f"REPLAY {r.status_code}")
        if r.status_code == 200:
            replayed = r.json().get("ids", [])
            self.records.ask_replay(replayed, sent)
            with self.records.lock:
                self.records.replayed.update(replayed)
