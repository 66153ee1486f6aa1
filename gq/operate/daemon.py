"""`gq run`: start → serve → drain → close, and meanwhile signals, reload and the heartbeat."""

from __future__ import annotations

import logging
import time

import gevent

from gq import __version__
from gq.broker.journal_access import Holder
from gq.config import Config
from gq.core.supervisor import Supervisor
from gq.dispatch.dispatcher import DrainReport
from gq.errors import EXIT_FAILURE, EXIT_OK, ConfigError, Stopped
from gq.intake.listeners import Listeners, shown_address
from gq.operate import log as log_
from gq.operate.reload import reloaded
from gq.operate.runtime import Runtime
from gq.operate.signals import StopSignals
from gq.operate.systemd import Notifier, listen_socket

log = logging.getLogger("gq")

HEARTBEAT = 1.0           # seconds between STATUS= updates and memory checks
WAITING = ("queued", "scheduled", "retrying")  # the states of jobs a drain leaves for later
EXTEND_MARGIN = 10.0      # seconds asked beyond the drain deadline while a drain makes progress,
                          # and beyond each beat while the start goes on


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        for warning in config.warnings:
            log.warning("config: %s", warning)
        self.signals = StopSignals()
        self.notifier = Notifier()
        self.supervisor = Supervisor(on_fatal=self._fatal)
        self.runtime = self._build(config)
        self.api, self.monitor = self.runtime.api, self.runtime.monitor
        self.listeners = Listeners(self.api, self.runtime.metrics)
        self.memory_exceeded = False

    def _build(self, config: Config) -> Runtime:
        """Runtime.build, while systemd is told every beat that the start goes on: a journal
        of an earlier layout is rewritten before gq listens (some 15 s per million jobs), and
        a command (`gq jobs replay` of many jobs) may hold the journal's lock for as long;
        either could outlast TimeoutStartSec. A hub blocked that long sends nothing, and the
        start times out as it should."""
        journal = config.broker.kind == "embedded" and config.journal.path
        self._starting = f"starting: opening the journal {config.journal.path}" if journal else "starting"
        extender = gevent.spawn(self._extend_while_starting)
        try:
            return Runtime.build(config, self.supervisor, waiting=self._waiting)
        finally:
            extender.kill()

    def _extend_while_starting(self) -> None:
        while True:
            self.notifier.send(EXTEND_TIMEOUT_USEC=int(EXTEND_MARGIN * 1e6), STATUS=self._starting)
            gevent.sleep(HEARTBEAT)

    def _waiting(self, holder: Holder | None) -> bool:
        """While a command holds the journal: systemd's status names it; a stop ends the wait."""
        path = self.config.journal.path
        self._starting = (f"starting: waiting for {holder} to let the journal {path} go" if holder
                          else f"starting: opening the journal {path}")
        return not self.signals.stop.is_set()

    def run(self) -> int:
        """Serve until a signal (or the memory guard, or a loop failed for good) says stop;
        returns the exit code."""
        self._start()
        heartbeat = self.supervisor.spawn("heartbeat", self._heartbeat)
        self._serve()
        report = self._drain()
        heartbeat.kill()
        self._close(report)
        return EXIT_FAILURE if self.memory_exceeded or self.supervisor.fatal else EXIT_OK

    def _start(self) -> None:
        server = self.listeners.serve(self.config, listen_socket())
        self.runtime.dispatcher.start()
        self.monitor.start(self.supervisor)
        self.api.ready = True
        log.info("gq %s ready: listening on %s (pool.size %d, queue.maxsize %d)",
                 __version__, shown_address(server.address), self.config.pool.size, self.config.queue.maxsize)
        self.notifier.send(READY=1, STATUS=self._status())

    def _serve(self) -> None:
        while not self.signals.stop.is_set():
            gevent.wait([self.signals.stop, self.signals.reload], count=1)
            if self.signals.reload.is_set():
                self.signals.reload.clear()
                self.reload()

    def _drain(self) -> DrainReport:
        reason = ("memory guard" if self.memory_exceeded else f"a loop failed for good ({self.supervisor.fatal})"
                  if self.supervisor.fatal else self.signals.received)
        log.info("%s: draining for up to %gs (a second SIGTERM/SIGINT stops at once)",
                 reason, self.config.shutdown.drain_timeout)
        self.notifier.send(STOPPING=1, STATUS="draining")
        extender = gevent.spawn(self._extend_while_draining, time.monotonic())
        try:
            return self.runtime.dispatcher.drain(self.config.shutdown.drain_timeout, self.signals.hurry)
        finally:
            extender.kill()

    def _close(self, report: DrainReport) -> None:
        self.listeners.stop(timeout=1)
        waiting = self._waiting_jobs()
        self.runtime.close()
        self.signals.close()
        self._log_drain(report, waiting)
        self.notifier.close()

    def _waiting_jobs(self) -> str:
        """What waits in the broker once drained ("4 scheduled, 1 retrying"), for the summary;
        "" when nothing does, or when the broker cannot tell."""
        try:
            counts = self.runtime.broker.counts()
        except Exception as e:  # noqa: BLE001 - a summary line must not stop the exit
            log.debug("drain summary: cannot count the jobs left: %s", e)
            return ""
        return ", ".join(f"{counts[state]} {state}" for state in WAITING if counts.get(state))

    def _log_drain(self, report: DrainReport, waiting: str) -> None:
        now = self.runtime.dispatcher.snapshot()
        kept = ("given back to the shared stream" if self.config.broker.kind == "redis"
                else "they run at the next start" if self.config.journal.path else "lost (no journal)")
        where = ("left in Redis for the fleet" if self.config.broker.kind == "redis"
                 else "left in the journal for the next start" if self.config.journal.path
                 else "lost: no journal")
        left = f"; {waiting} {where}" if waiting else ""
        if report.finished:
            log.info("drained in %.2fs: %d succeeded, %d dead since this daemon started; nothing left in flight%s",
                     report.seconds, now.succeeded, now.dead, left)
        else:
            log.warning("stopped after %.2fs with %d queued and %d in flight left unfinished; %s%s",
                        report.seconds, report.queued_left + report.not_started, report.in_flight_left, kept, left)

    def _fatal(self, why: str) -> None:
        """A loop that cannot be started again: not ready, no more watchdog pings, drain, exit 1
        (for systemd to start gq afresh)."""
        log.error("%s: stopping; not ready and no watchdog pings from now on", why)
        if getattr(self, "api", None) is not None:  # a loop may fail before the API exists
            self.api.ready = False
        self.signals.stop.set()

    def _status(self) -> str:
        now = self.runtime.dispatcher.snapshot()
        return (f"{'draining' if now.draining else 'running'}: queue {now.queue_depth}/{now.queue_maxsize}, "
                f"workers {now.pool_busy}/{now.pool_size} busy, {self.runtime.broker.counts()['retrying']} "
                f"retrying, {now.succeeded} succeeded, {now.dead} dead")

    def _heartbeat(self) -> None:
        """STATUS= every second; WATCHDOG=1 at half the watchdog timeout while the loop is
        healthy (a hub blocked that long gets no ping, and systemd restarts gq); memory guard."""
        interval = self.notifier.watchdog_interval
        period = min(HEARTBEAT, interval) if interval else HEARTBEAT
        last_ping = 0.0
        while True:
            now = time.monotonic()
            if (interval and now - last_ping >= interval - period / 2 and self.monitor.lag < interval
                    and not self.supervisor.fatal):
                self.notifier.send(WATCHDOG=1)
                last_ping = now
            self.notifier.send(STATUS=self._status())
            self._check_memory()
            gevent.sleep(period)

    def _check_memory(self) -> None:
        limit = self.config.memory.max_rss_mb
        if not limit or self.signals.stop.is_set():
            return
        rss_mb = self.runtime.metrics.process.rss() / 2**20
        if rss_mb > limit:
            log.error("resident memory %.0f MB passed memory.max_rss_mb (%d): draining and exiting "
                      "so that systemd restarts gq fresh", rss_mb, limit)
            self.memory_exceeded = True
            self.signals.stop.set()

    def _extend_while_draining(self, started: float) -> None:
        """Ask systemd for more stop time while the drain still finishes jobs."""
        finished = -1
        deadline = started + self.config.shutdown.drain_timeout
        while True:
            now = self.runtime.dispatcher.snapshot()
            done = now.succeeded + now.dead
            if done != finished:
                finished = done
                left = max(0.0, deadline - time.monotonic()) + EXTEND_MARGIN
                self.notifier.send(EXTEND_TIMEOUT_USEC=int(left * 1e6), STATUS=self._status())
            gevent.sleep(HEARTBEAT)

    def reload(self) -> None:
        """SIGHUP: apply what can change live; a broken file keeps the old config."""
        self.notifier.send(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)
        try:
            new, changed = reloaded(self.config)
        except ConfigError as e:
            for problem in e.problems:
                log.error("reload: config error: %s", problem)
            log.error("reload: the config is unchanged")
        else:
            self.runtime.configure(new)
            log_.setup(new.log.level, new.log.format)
            self.config = new
            log.info("reload: %s", f"applied {', '.join(changed)}" if changed else "nothing changed")
            self.api.audit.record("reload", by="local", via="signal", count=len(changed), changed=changed)
        self.notifier.send(READY=1, STATUS=self._status())


def run(config: Config) -> int:
    """The daemon in the foreground; returns the exit code once drained."""
    try:
        daemon = Daemon(config)
    except Stopped as e:  # nothing accepted, nothing to drain: a clean stop
        log.info("%s", e)
        return EXIT_OK
    return daemon.run()
