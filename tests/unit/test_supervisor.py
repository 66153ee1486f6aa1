"""The supervisor in process: a loop that fails is started again; one that keeps failing is
given up on, and the owner told; a killed loop stays stopped."""

from __future__ import annotations

import gevent
import pytest

from gq.core.supervisor import Supervisor

DEADLINE = 5.0


def quick(on_fatal=None, clock=None) -> Supervisor:
    supervisor = Supervisor(on_fatal, clock) if clock else Supervisor(on_fatal)
    supervisor.backoff_first = supervisor.backoff_max = 0.001
    return supervisor


def test_a_failed_loop_is_started_again_and_logged(caplog):
    runs = []

    def loop() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}")
        gevent.sleep(60)

    supervisor = quick()
    greenlet = supervisor.spawn("test loop", loop)
    with gevent.Timeout(DEADLINE):
        while len(runs) < 3:
            gevent.sleep(0.01)
    assert not greenlet.dead and supervisor.fatal is None
    assert [r.getMessage()[:42] for r in caplog.records if r.levelname == "ERROR"] == [
        "test loop failed (RuntimeError('failure 1'", "test loop failed (RuntimeError('failure 2'"]
    supervisor.stop()
    assert greenlet.dead


def test_a_loop_that_keeps_failing_is_given_up_and_the_owner_told():
    told = []
    supervisor = quick(told.append)
    supervisor.restarts_max = 4

    def loop() -> None:
        raise OSError("disk on fire")

    greenlet = supervisor.spawn("writer", loop)
    greenlet.join(DEADLINE)
    assert greenlet.dead
    assert told == ["writer failed 4 times in a row: OSError('disk on fire')"]
    assert supervisor.fatal == told[0]


def test_a_killed_loop_is_not_started_again():
    runs = []

    def loop() -> None:
        runs.append(1)
        gevent.sleep(60)

    supervisor = quick()
    greenlet = supervisor.spawn("loop", loop)
    gevent.sleep(0.01)
    greenlet.kill()
    gevent.sleep(0.05)
    assert runs == [1] and greenlet.dead and supervisor.fatal is None


@pytest.mark.parametrize("ran", [0.0, 1000.0])
def test_failures_count_in_a_row_only_when_each_came_soon_after_its_start(ran):
    # A loop that ran a long time before failing starts afresh (its count and backoff reset).
    clock = [0.0]
    told = []
    supervisor = quick(told.append, lambda: clock[0])
    supervisor.restarts_max = 3
    failures = []

    def loop() -> None:
        clock[0] += ran
        failures.append(1)
        if len(failures) >= 6:
            gevent.sleep(60)
        raise RuntimeError("again")

    supervisor.spawn("loop", loop)
    with gevent.Timeout(DEADLINE):
        while not told and len(failures) < 6:
            gevent.sleep(0.01)
    assert bool(told) is (ran == 0.0), (told, len(failures))
    supervisor.stop()
