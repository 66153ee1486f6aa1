"""What each console page shows, and what its actions do, read from and done through the
same parts as the API: the broker's Operations (find, replay), the dispatcher (cancel,
its snapshot), the destinations and this daemon's activity. Nothing here reaches around
the broker interface, so every broker's console is the same."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from gq.broker import CANCELLABLE, REPLAYABLE, Broker, Conflict, Filter, State
from gq.config import Config
from gq.core.audit import Audit
from gq.dispatch.destinations import Destinations
from gq.dispatch.dispatcher import Dispatcher
from gq.intake.access import Role
from gq.intake.api_io import bad_request
from gq.intake.jobs_api import REPLAY_PAGE, cursor, parse_filter, position, replay_page
from gq.observe.activity import Activity

PAGE = 50            # jobs per page
BULK_MOST = 10000    # jobs one bulk action touches at most (it can be run again for the rest)
SHOWN_HOSTS = 500    # destinations listed at most (the busiest first)
OVERVIEW_HOSTS = 8
# The jobs page's fields → the API's filter parameters (gq.intake.jobs_api.parse_filter reads them).
FILTER_FIELDS = {"state": "state", "host": "host", "key": "ordering_key", "id": "id_prefix",
                 "since": "since", "until": "until", "cursor": "cursor"}
BULK_STATES = {"replay": REPLAYABLE, "cancel": CANCELLABLE}


def _local_moment(value: str, offset: str | None) -> str:
    """A datetime-local field's value ("2026-12-06T05:00") in RFC 3339, with the browser's
    UTC offset (`offset`: minutes east of UTC, as console.js writes it); UTC without one.
    Unix seconds and RFC 3339 with an offset pass as they are."""
    if "T" not in value or value.endswith("Z") or "+" in value[10:] or "-" in value[10:]:
        return value
    if len(value) == 16:
        value += ":00"
    try:
        minutes = int(offset or 0)
    except ValueError:
        raise bad_request("tz", "must be minutes east of UTC", None) from None
    sign = "+" if minutes >= 0 else "-"
    return f"{value}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


class Views:
    def __init__(self, config: Config, dispatcher: Dispatcher, broker: Broker, destinations: Destinations,
                 activity: Activity, audit: Audit):
        self.dispatcher, self.broker, self.destinations, self.activity = dispatcher, broker, destinations, activity
        self.audit = audit  # records each action, as done by the session's role via the console
        self.configure(config)

    def configure(self, config: Config) -> None:
        self.hidden = config.target.hidden_headers()

    # -- reading

    def overview(self) -> dict[str, Any]:
        now = self.dispatcher.snapshot()
        oldest = self.broker.oldest_accepted()
        return {"counts": self.broker.counts(), "now": now, "minutes": self.activity.last_hour(),
                "oldest_age": None if oldest is None else max(0.0, time.time() - oldest),
                "hosts": self._hosts()[:OVERVIEW_HOSTS]}

    def destinations_page(self) -> dict[str, Any]:
        hosts = self._hosts()
        return {"hosts": hosts[:SHOWN_HOSTS], "more_hosts": max(0, len(hosts) - SHOWN_HOSTS)}

    def _hosts(self) -> list[dict[str, Any]]:
        known = self.destinations
        parking = self.dispatcher.parking
        rows: list[dict[str, Any]] = []
        for host, d in list(known.hosts.items()):
            counts = known.attempts.get(d.label, {}) if d.label == host else {}
            rows.append({"host": host, "circuit": d.circuit.replace("_", "-"), "in_flight": d.in_flight,
                         "waiting": parking.waiting(host), "paused_until": d.paused_until or None,
                         "success": counts.get("success"), "retry": counts.get("retry"),
                         "fail": counts.get("fail")})
        rows.sort(key=lambda r: (r["circuit"] == "closed", -(r["in_flight"] + r["waiting"]), r["host"]))
        return rows

    def where(self, query: dict[str, str], states: tuple[State, ...] | None = None) -> Filter:
        """The filter a page's fields name (empty fields: not given); a 400 Refusal naming the
        field otherwise."""
        given: dict[str, str] = {}
        for name, parameter in FILTER_FIELDS.items():
            value = query.get(name, "").strip()
            if value:
                given[parameter] = value
        for moment in ("since", "until"):
            if moment in given:
                given[moment] = _local_moment(given[moment], query.get("tz"))
        return parse_filter(given.get, states)

    def jobs(self, query: dict[str, str]) -> dict[str, Any]:
        where = self.where(query)
        found = list(self.broker.find(where, PAGE + 1))
        page = found[:PAGE]
        bulk = next((action for action, states in BULK_STATES.items() if where.state in states), None)
        return {"jobs": [entry.status(self.hidden, listed=True) for entry, _ in page],
                "next": cursor(page[-1][1]) if len(found) > PAGE else None, "bulk": bulk}

    def actions(self, query: dict[str, str]) -> dict[str, Any]:
        """A page of the operators' actions (gq.core.audit), newest first."""
        after = query.get("cursor") or None
        found = self.broker.actions(PAGE + 1, None if after is None else position("cursor", after))
        page = found[:PAGE]
        return {"actions": [row for row, _ in page], "next": cursor(page[-1][1]) if len(found) > PAGE else None}

    def job(self, job_id: str) -> dict[str, Any] | None:
        entry = self.broker.get(job_id)
        if entry is None:
            return None
        return {"job": entry.status(self.hidden), "may_replay": entry.state in REPLAYABLE,
                "may_cancel": entry.state in CANCELLABLE, "now": time.time()}

    def matching(self, action: str, query: dict[str, str]) -> tuple[int, bool]:
        """How many jobs a bulk `action` would touch (BULK_MOST at most), and whether more match."""
        count = self.broker.count(self._bulk_filter(action, query), BULK_MOST + 1)
        return min(count, BULK_MOST), count > BULK_MOST

    def _bulk_filter(self, action: str, query: dict[str, str]) -> Filter:
        states = BULK_STATES.get(action)
        if states is None:
            raise bad_request("action", "must be replay or cancel", None)
        return dataclasses.replace(self.where({**query, "cursor": ""}, states), after=None)

    # -- acting

    def act(self, action: str, job_id: str, by: Role) -> str:
        """Replay or cancel one job; what happened, as the job's page says it."""
        if action == "replay":
            replayed = self.broker.replay([job_id], REPLAYABLE)
            if not replayed.ids:
                return f"not replayed: {replayed.skipped[0][1]}"
        else:
            try:
                if not self.dispatcher.cancel(job_id):
                    return "not cancelled: no such job"
            except Conflict as e:
                return f"not cancelled: it is {e.state.value}"
        self.audit.record(action, by=by, via="console", ids=[job_id], count=1)
        return {"replay": "replayed", "cancel": "cancelled"}[action]

    def act_on_matching(self, action: str, form: dict[str, str], by: Role) -> dict[str, Any]:
        """Replay or cancel the jobs a filter matches, BULK_MOST at most, newest first."""
        where = first = self._bulk_filter(action, form)
        done: list[str] = []
        skipped = 0
        if action == "replay":
            while len(done) < BULK_MOST:
                replayed, after = replay_page(self.broker, where, min(REPLAY_PAGE, BULK_MOST - len(done)))
                done += replayed.ids
                skipped += len(replayed.skipped)
                if after is None:
                    break
                where = dataclasses.replace(where, after=after)
        else:
            for entry, _ in list(self.broker.find(where, BULK_MOST)):
                try:
                    if self.dispatcher.cancel(entry.job.id):
                        done.append(entry.job.id)
                except Conflict:
                    skipped += 1
        if done:
            self.audit.record(action, by=by, via="console", filter=first.fields(), count=len(done))
        return {"done": len(done), "skipped": skipped, "more": len(done) + skipped >= BULK_MOST, "query": form}
