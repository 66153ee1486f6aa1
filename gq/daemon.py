"""Wiring and lifecycle of `gq run`: start order, signals, reload, heartbeat, drain."""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event

from gq import __version__
from gq import config as config_
from gq import log as log_
from gq.api import Api, shown_address
from gq.broker import Broker
from gq.broker.journal import JournalBroker
from gq.broker.memory import KEEP_FINISHED, MemoryBroker

if TYPE_CHECKING:
    from gq.broker.fleet_limits import FleetLimits
from gq.config import Config
from gq.destinations import Destinations
from gq.dispatcher import Dispatcher
from gq.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from gq.health import LoopMonitor
from gq.metrics import Metrics
from gq.retry import RetryPolicy
from gq.signing import Signer
from gq.supervisor import Supervisor
from gq.systemd import Notifier, listen_socket
from gq.transport import HttpWorker

log = logging.getLogger("gq")

HEARTBEAT = 1.0           # seconds between STATUS= updates and memory checks
EXTEND_MARGIN = 10.0      # seconds asked beyond the drain deadline while a drain makes progress
# Keys a reload cannot apply to a running process: they keep their value until a restart.
RESTART_ONLY = (("api", "listen"), ("api", "health_listen"), ("journal", "path"), ("broker", "kind"),
                ("broker", "url"), ("destinations", "scope"))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """SIGTERM/SIGINT: the first sets `stop` (drain), a second sets `hurry` (stop now).
    SIGHUP sets `reload`. The handlers only set events; the main greenlet logs and acts."""

    def __init__(self) -> None:
        self.stop = Event()
        self.hurry = Event()
        self.reload = Event()
        self.received: str = ""
        self._handlers = [gevent.signal_handler(s, self._on, s) for s in STOP_SIGNALS]
        self._handlers.append(gevent.signal_handler(signal.SIGHUP, self.reload.set))
        # A process started with them blocked (a part of `gq batch -p N`) gets them from now on.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _on(self, signum: int) -> None:
        if self.stop.is_set():
            self.hurry.set()
        else:
            self.received = signal.Signals(signum).name
            self.stop.set()

    def close(self) -> None:
        for handler in self._handlers:
            handler.cancel()


def open_broker(config: Config, batch: bool, supervisor: Supervisor) -> Broker:
    """The Redis stream shared with other daemons; or the journal named by the config,
    its unfinished jobs recovered; or memory only. For `gq batch`, the embedded brokers
    keep no succeeded job (nobody looks them up)."""
    if config.broker.kind == "redis":
        from gq.broker.redis_streams import RedisBroker  # imports redis: only when used
        broker = RedisBroker(config.broker, supervisor,
                             hold_at_most=config.pool.size + (config.broker.prefetch or config.pool.size))
        log.info("broker: Redis stream %s, consumer %s", broker.stream, broker.consumer)
        return broker
    journal = config.journal
    if not journal.path:
        log.warning("journal.path is empty: jobs are kept in memory only, and a crash loses them")
        return MemoryBroker(keep_finished=0 if batch else KEEP_FINISHED, max_backlog=journal.max_backlog)
    embedded = JournalBroker(journal.path, batch, journal.max_backlog, journal.min_free_mb,
                             journal.keep_succeeded, supervisor)
    log.info("journal %s: %d unfinished job(s) recovered", config.journal.path, embedded.recovered)
    return embedded


def fleet_limits(config: Config, broker: Broker) -> FleetLimits | None:
    """With destinations.scope = "fleet": the limits kept in the fleet's Redis."""
    if config.destinations.scope != "fleet":
        return None
    from gq.broker.fleet_limits import FleetLimits  # imports redis: only when used
    return FleetLimits(broker)  # type: ignore[arg-type]  # the config says: the Redis broker


def retry_policy(config: Config) -> RetryPolicy:
    return RetryPolicy(config.retry.max_attempts, config.retry.backoff_base, config.retry.backoff_max)


@dataclass
class Runtime:
    """The job path, built from a config: broker → dispatcher → worker, observed by metrics."""

    config: Config
    broker: Broker
    worker: HttpWorker
    dispatcher: Dispatcher
    metrics: Metrics

    @classmethod
    def build(cls, config: Config, supervisor: Supervisor, batch: bool = False) -> Runtime:
        """The parts, their long-lived loops watched by `supervisor`."""
        broker = open_broker(config, batch, supervisor)
        worker = HttpWorker(config.pool.size, config.target.policy(),
                            Signer(config.target.signing_secrets.as_dict()), config.target.ca_bundle,
                            config.target.hidden_headers())
        metrics = Metrics()
        dispatcher = Dispatcher(
            broker, worker, queue_maxsize=config.queue.maxsize, pool_size=config.pool.size,
            policy=retry_policy(config), default_timeout=config.target.timeout, observers=[metrics],
            destinations=Destinations(*config.destinations.limits(), config.destinations.metrics_hosts,
                                      fleet=fleet_limits(config, broker)),
            supervisor=supervisor)
        metrics.bind(dispatcher)
        return cls(config, broker, worker, dispatcher, metrics)

    def close(self) -> None:
        self.dispatcher.stop()
        self.worker.close()
        self.broker.close()


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        for warning in config.warnings:
            log.warning("config: %s", warning)
        self.signals = StopSignals()
        self.notifier = Notifier()
        self.supervisor = Supervisor(on_fatal=self._fatal)
        self.runtime = Runtime.build(config, self.supervisor)  # recovers the journal before anything listens
        self.monitor = LoopMonitor(self.runtime.metrics.loop_lag.observe)
        self.runtime.metrics.bind_health(self.monitor)
        self.api = Api(config, self.runtime.dispatcher, self.runtime.metrics)
        self.memory_exceeded = False

    def run(self) -> int:
        """Serve until a signal (or the memory guard) says stop; returns the exit code."""
        dispatcher = self.runtime.dispatcher
        server = self.api.serve(self.config.api.listen, listen_socket())
        dispatcher.start()
        self.monitor.start(self.supervisor)
        self.api.ready = True
        log.info("gq %s ready: listening on %s (pool.size %d, queue.maxsize %d)",
                 __version__, shown_address(server.address), self.config.pool.size, self.config.queue.maxsize)
        self.notifier.send(READY=1, STATUS=self._status())
        heartbeat = self.supervisor.spawn("heartbeat", self._heartbeat)

        while not self.signals.stop.is_set():
            gevent.wait([self.signals.stop, self.signals.reload], count=1)
            if self.signals.reload.is_set():
                self.signals.reload.clear()
                self.reload()

        reason = ("memory guard" if self.memory_exceeded else f"a loop failed for good ({self.supervisor.fatal})"
                  if self.supervisor.fatal else self.signals.received)
        log.info("%s: draining for up to %gs (a second SIGTERM/SIGINT stops at once)",
                 reason, self.config.shutdown.drain_timeout)
        self.notifier.send(STOPPING=1, STATUS="draining")
        extender = gevent.spawn(self._extend_while_draining, time.monotonic())
        report = dispatcher.drain(self.config.shutdown.drain_timeout, self.signals.hurry)
        gevent.killall([heartbeat, extender])
        self.api.stop(timeout=1)
        self.monitor.stop()
        self.runtime.close()
        self.signals.close()
        finished = dispatcher.finished
        kept = ("given back to the shared stream" if self.config.broker.kind == "redis"
                else "they run at the next start" if self.config.journal.path else "lost (no journal)")
        if report.finished:
            log.info("drained in %.2fs: %d succeeded, %d dead since start; nothing left in flight%s",
                     report.seconds, finished["succeeded"], finished["dead"],
                     f"; {report.not_started} job(s) not started, {kept}" if report.not_started else "")
        else:
            log.warning("stopped after %.2fs with %d queued and %d in flight left unfinished; %s",
                        report.seconds, report.queued_left + report.not_started, report.in_flight_left, kept)
        self.notifier.close()
        return EXIT_FAILURE if self.memory_exceeded or self.supervisor.fatal else EXIT_OK

    def _fatal(self, why: str) -> None:
        """A loop that cannot be started again: not ready, no more watchdog pings, drain, exit 1
        (for systemd to start gq afresh)."""
        log.error("%s: stopping; not ready and no watchdog pings from now on", why)
        if getattr(self, "api", None) is not None:  # a loop may fail before the API exists
            self.api.ready = False
        self.signals.stop.set()

    def _status(self) -> str:
        d = self.runtime.dispatcher
        state = "draining" if d.draining else "running"
        return (f"{state}: queue {d.queue.qsize()}/{d.queue.maxsize}, workers {d.busy()}/{d.pool.size} "
                f"busy, {d.broker.counts()['retrying']} retrying, {d.finished['succeeded']} succeeded, "
                f"{d.finished['dead']} dead")

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
        dispatcher, finished = self.runtime.dispatcher, -1
        deadline = started + self.config.shutdown.drain_timeout
        while True:
            done = dispatcher.finished["succeeded"] + dispatcher.finished["dead"]
            if done != finished:
                finished = done
                left = max(0.0, deadline - time.monotonic()) + EXTEND_MARGIN
                self.notifier.send(EXTEND_TIMEOUT_USEC=int(left * 1e6), STATUS=self._status())
            gevent.sleep(HEARTBEAT)

    def reload(self) -> None:
        """SIGHUP: apply what can change live; a broken file keeps the old config."""
        self.notifier.send(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)
        try:
            new = config_.load(self.config.source or None)
        except ConfigError as e:
            for problem in e.problems:
                log.error("reload: config error: %s", problem)
            log.error("reload: the config is unchanged")
            self.notifier.send(READY=1, STATUS=self._status())
            return
        for section, key in RESTART_ONLY:
            old_value, new_value = getattr(getattr(self.config, section), key), getattr(getattr(new, section), key)
            if old_value != new_value:
                log.warning("reload: %s.%s changed, but needs a restart: still %r", section, key, old_value)
                new = dataclasses.replace(new, **{section: dataclasses.replace(
                    getattr(new, section), **{key: old_value})})
        broken = config_.cross_checks(new)  # as applied: a kept public listen still needs its token
        if broken:
            for problem in broken:
                log.error("reload: config error: %s: %s (%s is kept until a restart)",
                          new.source, problem, "api.listen")
            log.error("reload: the config is unchanged")
            self.notifier.send(READY=1, STATUS=self._status())
            return
        changed = [f"{s}.{k}" for s in config_.SECTIONS for k in config_.keys(s)
                   if getattr(getattr(self.config, s), k) != getattr(getattr(new, s), k)]
        self._apply(new)
        log.info("reload: %s", f"applied {', '.join(changed)}" if changed else "nothing changed")
        self.notifier.send(READY=1, STATUS=self._status())

    def _apply(self, new: Config) -> None:
        d = self.runtime.dispatcher
        worker = self.runtime.worker
        worker.signer = Signer(new.target.signing_secrets.as_dict())
        worker.verify = new.target.ca_bundle or True
        worker.hidden = new.target.hidden_headers()
        if new.target.allowed_hosts != self.config.target.allowed_hosts:
            worker.policy = new.target.policy()
            worker.resize(new.pool.size)
        d.resize(new.pool.size, new.queue.maxsize)
        d.destinations.configure(*new.destinations.limits())
        d.policy = retry_policy(new)
        d.default_timeout = new.target.timeout
        self.api.configure(new)
        log_.setup(new.log.level, new.log.format)
        self.config = new


def run(config: Config) -> int:
    """The daemon in the foreground; returns the exit code once drained."""
    return Daemon(config).run()
