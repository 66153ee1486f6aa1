"""One attempt of a job, start to end: started → attempt → decide → settle → observe → release.

What the result means is `gq.core.outcome.decide`'s alone, for the job (settled by the
broker) and for its host (released to the destinations); this only puts the
steps in order and keeps a failure of any of them from losing the job.
"""

from __future__ import annotations

import logging
import time

from gq.broker import Dispatch, Entry, State
from gq.core.job import Job
from gq.core.outcome import AttemptResult, Outcome, Verdict, decide, recorded
from gq.core.retry import RetryPolicy
from gq.delivery.transport import Worker
from gq.dispatch.destinations import Destinations
from gq.dispatch.observers import Observer

log = logging.getLogger("gq.dispatcher")


class Attempts:
    def __init__(self, broker: Dispatch, worker: Worker, destinations: Destinations, observers: Observer,
                 policy: RetryPolicy, default_timeout: float):
        self.broker, self.worker, self.destinations, self.observers = broker, worker, destinations, observers
        self.policy, self.default_timeout = policy, default_timeout

    def configure(self, policy: RetryPolicy, default_timeout: float) -> None:
        self.policy, self.default_timeout = policy, default_timeout

    def timeout(self, job: Job) -> float:
        return job.timeout or self.default_timeout

    def run(self, entry: Entry, host: str, refusal: str | None = None) -> None:
        """One attempt of `entry`, admitted to `host` unless `refusal` is given: then the
        attempt fails at once with that error, without a request and without a slot of its
        host's (the host's circuit is open; or, the entry `interrupted`, the attempt is the
        one gq died during, already counted, whose end is recorded now)."""
        job = entry.job
        result = outcome = None
        try:
            if entry.state is State.CANCELLED:  # while it waited for this greenlet to start
                return
            interrupted = entry.interrupted
            if interrupted:
                entry.interrupted = False
                log.warning("job %s: gq stopped during its attempt %d, which counts as failed",
                            job.id, entry.attempts)
            else:
                self.broker.started(entry)
                if entry.state is not State.RUNNING:  # not started: found cancelled, or its start
                    return                            # not written (handed back by the broker)
            max_attempts = job.max_attempts or self.policy.max_attempts
            try:
                result = (AttemptResult(time.time(), 0.0, error=refusal) if refusal
                          else self.worker.attempt(job, self.timeout(job)))
                outcome = decide(result, entry.attempts, max_attempts, self.policy)
            except Exception as e:  # a bug must not lose the job: it is retried
                log.exception("internal error on job %s", job.id)
                result = AttemptResult(time.time(), 0.0, error=f"internal: {e!r}")
                outcome = decide(result, entry.attempts, max_attempts, self.policy)
            result = recorded(result, outcome, interrupted)
            self.broker.settle(entry, result, outcome)
            self.destinations.count(host, outcome.verdict.value)
            self.observers.attempted(entry, result, outcome)
            self._log(entry, result, outcome, quiet=refusal is not None)
        finally:
            if not refusal:
                self.destinations.release(host, result, outcome)

    def _log(self, entry: Entry, result: AttemptResult, outcome: Outcome, quiet: bool) -> None:
        job = entry.job
        if outcome.verdict is Verdict.SUCCESS:
            log.debug("job %s succeeded: %s after %d attempt(s)", job.id, result.status, entry.attempts)
        elif outcome.verdict is Verdict.FAIL:
            log.warning("job %s dead after %d attempt(s): %s (%s); kept as a dead letter",
                        job.id, entry.attempts, outcome.reason, result.error or result.status)
        elif not quiet:  # one line per circuit, not per job behind it
            log.info("job %s attempt %d failed (%s); next attempt in %.1fs",
                     job.id, entry.attempts, result.error or result.status, outcome.delay)
