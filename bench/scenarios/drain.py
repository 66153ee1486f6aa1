"""Scenario drain: 500 jobs in flight against a 1 s target, then SIGTERM: time to exit."""

from __future__ import annotations

import signal
import time
from dataclasses import asdict

from harness.context import Context, Run
from harness.gq import Daemon, jobs
from harness.report import fmt, status_cell
from harness.shared import wait_for


def run(ctx: Context) -> dict:
    """500 jobs in flight against a 1 s target; SIGTERM once the pool is full of them."""
    in_flight, delay = 500, 1.0
    drain = Run("drain", in_flight)
    ctx.target.reset()
    daemon = Daemon(ctx, "drain", pool=in_flight, maxsize=2 * in_flight, url=ctx.target.job_url(delay),
                    timeout=10, journal=True)
    try:
        daemon.submit(jobs("drain-", 0, in_flight))
        wait_for(lambda: daemon.status()["pool_busy"] == in_flight and ctx.target.count() == in_flight, 15,
                 "500 in flight")
        at_signal = ctx.target.count()
        sent = time.monotonic()
        daemon.proc.send(signal.SIGTERM)
        code = daemon.proc.wait(45)
        drain.seconds = round(time.monotonic() - sent, 3)
    except BaseException:
        daemon.proc.stop((signal.SIGKILL,))
        raise
    if code is None:
        daemon.proc.stop((signal.SIGKILL,))
        drain.fail("daemon did not exit within 45s of SIGTERM")
    elif code != 0:
        drain.fail(f"exit code {code}, expected 0")
    drain.extra.update(exit_code=code, target_count_at_sigterm=at_signal,
                       log=daemon.log_has(r"drained in [^\n]*") or daemon.log_has(r"stopped after [^\n]*"))
    for problem in ctx.target.check(in_flight):
        drain.fail(problem)
    return {"in_flight": in_flight, "delay_s": delay, "runs": [asdict(drain)]}


def report(result: dict) -> str:
    r = result["runs"][0]
    x = r["extra"]
    return (f"Drain: {result['in_flight']} jobs in flight against a {result['delay_s']:g} s target, then SIGTERM\n"
            f"  SIGTERM to exit: {fmt(r['seconds'], '.3f')} s, exit code {fmt(x.get('exit_code'))}, "
            f"target had {fmt(x.get('target_count_at_sigterm'))} at SIGTERM; log: {fmt(x.get('log'))}\n"
            f"  {status_cell(r)}")
