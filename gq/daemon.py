"""Wiring and lifecycle of `gq run`: start order, signals, drain."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass

import gevent
from gevent.event import Event

from gq import __version__
from gq.api import Api
from gq.broker import Broker
from gq.broker.journal import JournalBroker
from gq.broker.memory import MemoryBroker
from gq.config import Config
from gq.dispatcher import Dispatcher
from gq.errors import EXIT_OK
from gq.metrics import Metrics
from gq.retry import RetryPolicy
from gq.transport import HttpWorker

log = logging.getLogger("gq")


class StopSignals:
    """SIGTERM/SIGINT: the first sets `stop` (drain), a second sets `hurry` (stop now).

    The handlers only set events; the main greenlet logs and acts.
    """

    def __init__(self) -> None:
        self.stop = Event()
        self.hurry = Event()
        self.received: str = ""
        self._handlers = [gevent.signal_handler(s, self._on, s) for s in (signal.SIGTERM, signal.SIGINT)]

    def _on(self, signum: int) -> None:
        if self.stop.is_set():
            self.hurry.set()
        else:
            self.received = signal.Signals(signum).name
            self.stop.set()

    def close(self) -> None:
        for handler in self._handlers:
            handler.cancel()


def open_broker(config: Config) -> Broker:
    """The journal named by the config, its unfinished jobs recovered; or memory only."""
    if not config.journal.path:
        log.warning("journal.path is empty: jobs are kept in memory only, and a crash loses them")
        return MemoryBroker()
    broker = JournalBroker(config.journal.path)
    log.info("journal %s: %d unfinished job(s) recovered", config.journal.path, broker.recovered)
    return broker


@dataclass
class Runtime:
    """The job path, built from a config: broker → dispatcher → worker, observed by metrics."""

    config: Config
    broker: Broker
    worker: HttpWorker
    dispatcher: Dispatcher
    metrics: Metrics

    @classmethod
    def build(cls, config: Config) -> "Runtime":
        broker = open_broker(config)
        worker = HttpWorker(config.pool.size)
        metrics = Metrics()
        dispatcher = Dispatcher(
            broker, worker, queue_maxsize=config.queue.maxsize, pool_size=config.pool.size,
            policy=RetryPolicy(config.retry.max_attempts, config.retry.backoff_base,
                               config.retry.backoff_max),
            default_timeout=config.target.timeout, observers=[metrics])
        metrics.bind(dispatcher)
        return cls(config, broker, worker, dispatcher, metrics)

    def close(self) -> None:
        self.dispatcher.stop()
        self.worker.close()
        self.broker.close()


def run(config: Config) -> int:
    """The daemon in the foreground; returns the exit code once drained."""
    runtime = Runtime.build(config)
    signals = StopSignals()
    api = Api(config, runtime.dispatcher, runtime.metrics)
    server = api.serve(config.api.listen)
    runtime.dispatcher.start()
    api.ready = True
    host, port = server.address[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info("gq %s ready: listening on http://%s:%d (pool.size %d, queue.maxsize %d)",
             __version__, shown, port, config.pool.size, config.queue.maxsize)

    signals.stop.wait()
    log.info("%s received: draining for up to %gs (a second signal stops at once)",
             signals.received, config.shutdown.drain_timeout)
    report = runtime.dispatcher.drain(config.shutdown.drain_timeout, signals.hurry)
    server.stop(timeout=1)
    runtime.close()
    signals.close()
    finished = runtime.dispatcher.finished
    if report.finished:
        log.info("drained in %.2fs: %d succeeded, %d dead since start; nothing left in flight",
                 report.seconds, finished["succeeded"], finished["dead"])
    else:
        log.warning("stopped after %.2fs with %d queued and %d in flight left unfinished",
                    report.seconds, report.queued_left, report.in_flight_left)
    return EXIT_OK
