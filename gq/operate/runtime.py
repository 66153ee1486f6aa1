"""Wiring: gq's parts built from a config, and a reloaded config handed to each part.

    broker ◀── Admission ◀── Api (intake, health, /metrics)
      │            │
      ▼            ▼
    Dispatcher ─▶ Attempts ─▶ HttpWorker ─▶ target
      │  └─▶ Destinations (limits, circuits)
      ▼
    Observers: Metrics (and a batch's tally)

`gq run` and `gq batch` build the same; a batch serves no API and watches no loop lag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gq.broker import Broker
from gq.broker.journal import JournalBroker
from gq.broker.journal_access import Waiting
from gq.broker.memory import MemoryBroker
from gq.config import Config
from gq.console.app import Console
from gq.console.views import Views
from gq.core.audit import Audit
from gq.core.retry import RetryPolicy
from gq.core.supervisor import Supervisor
from gq.delivery.transport import HttpWorker
from gq.dispatch.destinations import Destinations, DestinationsCollector
from gq.dispatch.dispatcher import Dispatcher
from gq.dispatch.observers import Observer
from gq.errors import GqError
from gq.intake.api import Api
from gq.observe.activity import Activity
from gq.observe.health import LoopMonitor
from gq.observe.metrics import Metrics

if TYPE_CHECKING:
    from gq.broker.fleet_limits import FleetLimits

log = logging.getLogger("gq")


def open_broker(config: Config, batch: bool, supervisor: Supervisor, waiting: Waiting | None = None) -> Broker:
    """The Redis stream shared with other daemons; or the journal named by the config,
    its unfinished jobs recovered (once a command that holds it is done: `waiting`, see
    journal_access.Waiting); or memory only. For `gq batch`, the embedded brokers keep no
    succeeded job (nobody looks them up)."""
    if config.broker.kind == "redis":
        from gq.broker.redis_streams import RedisBroker  # imports redis: only when used
        broker = RedisBroker.from_config(config.broker, config.journal, supervisor, pool_size=config.pool.size)
        log.info("broker: Redis stream %s, consumer %s", broker.stream, broker.consumer)
        return broker
    journal = config.journal
    if not journal.path:
        log.warning("journal.path is empty: jobs are kept in memory only, and a crash loses them")
        return MemoryBroker.from_config(journal, batch=batch)
    embedded = JournalBroker.from_config(journal, supervisor, batch=batch, waiting=waiting)
    log.info("journal %s: %d unfinished job(s) recovered", config.journal.path, embedded.recovered)
    return embedded


def fleet_limits(config: Config, broker: Broker) -> FleetLimits | None:
    """With destinations.scope = "fleet": the limits kept in the fleet's Redis."""
    if config.destinations.scope != "fleet":
        return None
    link = broker.fleet()
    if link is None:  # the config's cross-checks allow the fleet scope on Redis only
        raise GqError('destinations.scope = "fleet" needs a broker the fleet shares (broker.kind = "redis")')
    from gq.broker.fleet_limits import FleetLimits  # imports redis: only when used
    return FleetLimits(link)


def retry_policy(config: Config) -> RetryPolicy:
    return RetryPolicy(config.retry.max_attempts, config.retry.backoff_base, config.retry.backoff_max)


@dataclass
class Runtime:
    config: Config
    broker: Broker
    worker: HttpWorker
    destinations: Destinations
    dispatcher: Dispatcher
    metrics: Metrics
    api: Api                # served by `gq run`
    monitor: LoopMonitor    # started by `gq run`

    @classmethod
    def build(cls, config: Config, supervisor: Supervisor, *, batch: bool = False,
              observers: Iterable[Observer] = (), waiting: Waiting | None = None) -> Runtime:
        """The parts, their long-lived loops watched by `supervisor`; the journal is
        recovered here, before anything listens."""
        broker = open_broker(config, batch, supervisor, waiting)
        worker = HttpWorker.from_config(config.target, config.pool)
        metrics = Metrics()
        destinations = Destinations.from_config(config.destinations, fleet=fleet_limits(config, broker))
        activity = Activity()
        dispatcher = Dispatcher(
            broker, worker, queue_maxsize=config.queue.maxsize, pool_size=config.pool.size,
            policy=retry_policy(config), default_timeout=config.target.timeout,
            observers=[metrics, activity, *observers], destinations=destinations, supervisor=supervisor)
        metrics.read(dispatcher.snapshot, broker)
        metrics.register(DestinationsCollector(destinations))
        metrics.register(dispatcher.parking)
        monitor = LoopMonitor(metrics.loop_lag.observe)
        metrics.bind_health(monitor)
        audit = Audit(broker, metrics.operator_actions.inc)
        if isinstance(broker, JournalBroker):  # it carries out the `gq dlq` commands of other processes
            broker.audit = audit
        console = None if batch else Console(config, Views(config, dispatcher, broker, destinations, activity,
                                                           audit))
        return cls(config, broker, worker, destinations, dispatcher, metrics,
                   Api(config, dispatcher, broker, metrics, audit, console), monitor)

    def configure(self, new: Config) -> None:
        """A reloaded config (already checked: gq/operate/reload.py), applied part by part."""
        self.worker.configure(new.target, new.pool)
        self.dispatcher.configure(pool_size=new.pool.size, queue_maxsize=new.queue.maxsize,
                                  policy=retry_policy(new), default_timeout=new.target.timeout)
        self.destinations.configure(*new.destinations.limits())
        self.api.configure(new)
        self.config = new

    def close(self) -> None:
        self.dispatcher.stop()
        self.monitor.stop()
        self.worker.close()
        self.broker.close()
