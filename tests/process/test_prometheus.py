"""The Prometheus side of gq, against real processes.

monitoring/ (alert rules, example scrape config, Grafana dashboard) must pass
promtool and name only metrics a running gq exports — one on the embedded journal and one
on the Redis broker, whose destinations have seen a circuit open — and the dashboard must
show every gq_* metric they export; gq's exposition must pass `promtool check metrics` and
carry the contract's metrics; a real Prometheus server scrapes running gqs; the counters
stay exact under concurrent load.

Needs `prometheus` and `promtool` (Debian package `prometheus`); run as root
on Debian, the suite installs the package when it is missing.
"""

from __future__ import annotations

import ctypes
import json
import platform
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import gevent
import psutil
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

import gq
from support import ROOT, Daemon, closed_port, daemon_config, free_port, run_gq, start_target, unavailable, wait_for
from support.packages import PackageError, provide

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "gq-alerts.yml"
RULE_TESTS = MONITORING / "gq-alerts-test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/gq-project/gq/blob/main/docs/runbook.md"
DASHBOARD = MONITORING / "gq-dashboard.json"
EXAMPLE_CONFIG = MONITORING / "prometheus.yml"


def _plain(kind: str, *names: str) -> dict[str, tuple[str, dict]]:
    """Metrics of one exposition type without labels, as CONTRACT lists them."""
    return {name: (kind, {}) for name in names}


# The contract's metrics: name as stored by Prometheus → (exposition type, label → values).
CONTRACT = {
    **_plain("counter", "gq_jobs_accepted_total"),
    "gq_jobs_finished_total": ("counter", {"outcome": {"succeeded", "dead", "cancelled"}}),
    "gq_attempts_total": ("counter", {"result": {"success", "retry", "fail"}}),
    "gq_intake_rejected_total": ("counter", {"reason": {"invalid", "unauthorized", "too_large",
                                                        "queue_full", "draining", "backlog_full", "storage"}}),
    **_plain("gauge", "gq_queue_depth", "gq_queue_maxsize", "gq_pool_busy", "gq_pool_size", "gq_retry_scheduled",
             "gq_journal_pending", "gq_dead_letters", "gq_draining", "gq_oldest_job_age_seconds",
             "gq_journal_bytes", "gq_broker_ready"),
    **_plain("histogram", "gq_attempt_duration_seconds", "gq_queue_wait_seconds"),
    "gq_jobs": ("gauge", {"state": {"accepted", "queued", "scheduled", "running", "retrying", "succeeded", "dead",
                                    "cancelled", "forgotten"}}),
    # the daemon runs this test's interpreter (support.gq_command): the versions are these
    "gq_build_info": ("gauge", {"version": {gq.__version__}, "python": {platform.python_version()},
                                "gevent": {gevent.__version__}}),
    # process health
    **_plain("gauge", "process_open_fds", "process_max_fds", "gq_event_loop_lag_seconds",
             "process_resident_memory_bytes"),
    "gq_connections": ("gauge", {"state": None}),   # values depend on the sockets open
    "gq_greenlets": ("gauge", {"role": {"worker", "intake"}}),
    **_plain("histogram", "gq_event_loop_delay_seconds"),
}
ALERTS = {"GqNoReadyInstance", "GqInstanceDown", "GqDrainingTooLong", "GqBrokerNotReady", "GqQueueNearlyFull",
          "GqIntakeRejectingQueueFull", "GqIntakeRejectingRequests", "GqDeadLettersRising",
          "GqRetriesPilingUp", "GqOldestJobAgeHigh", "GqOldestJobAgeCritical", "GqPoolSaturated",
          "GqCircuitOpen", "GqRedisPendingStalled", "GqEventLoopLagHigh", "GqEventLoopBlocked",
          "GqFileDescriptorsNearLimit", "GqFileDescriptorsExhausted", "GqLedgerUnbalanced"}
# Alerts monitoring/gq-alerts-test.yml must fire (and hold back) on made-up series.
UNIT_TESTED_ALERTS = {"GqNoReadyInstance", "GqBrokerNotReady", "GqOldestJobAgeHigh", "GqOldestJobAgeCritical",
                      "GqCircuitOpen", "GqRedisPendingStalled", "GqLedgerUnbalanced"}
SEVERITIES = {"critical", "warning", "info"}
# Labels Prometheus attaches to every scraped series: not in gq's exposition.
TARGET_LABELS = {"job", "instance"}
PR_SET_PDEATHSIG = 1   # linux/prctl.h
DOWN_HOST = "localhost"  # the loopback by another name: a destination of its own, on a port nobody listens on
METRIC_NAME = re.compile(r"(?<![\w:])((?:gq|process)_[A-Za-z0-9_]+)")
SELECTOR = re.compile(r"(?<![\w:])((?:gq|process)_[A-Za-z0-9_]+|up)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


# -- tools

@dataclass(frozen=True)
class Tools:
    prometheus: str
    promtool: str


def _prometheus_pids() -> set[int]:
    pids = set()
    for proc in psutil.process_iter(["name", "exe"]):
        if proc.info["name"] == "prometheus" or (proc.info["exe"] or "").endswith("/prometheus"):
            pids.add(proc.pid)
    return pids


def _stop_started_service(before: set[int]) -> None:
    """Installing the package may start its service (postinst); stop what it started,
    so that nothing this suite did not start itself keeps listening on :9090."""
    if not _prometheus_pids() - before:
        return
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "disable", "--now", "prometheus"], capture_output=True, timeout=60)
    elif Path("/etc/init.d/prometheus").exists():
        subprocess.run(["/etc/init.d/prometheus", "stop"], capture_output=True, timeout=60)
    left = [psutil.Process(pid) for pid in _prometheus_pids() - before if psutil.pid_exists(pid)]
    for proc in left:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(left, timeout=10)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture(scope="session")
def tools() -> Tools:
    """prometheus and promtool, from the Debian package when missing."""
    before = _prometheus_pids()
    try:
        return Tools(*provide("prometheus", "promtool", packages=["prometheus"]))
    except PackageError as e:
        unavailable(str(e))
    finally:
        _stop_started_service(before)


def promtool(tools: Tools, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tools.promtool, *args], input=input, capture_output=True, text=True,
                          timeout=60)


# -- gq's exposition

class Exposition:
    """gq's /metrics text, parsed; several daemons' texts are looked up as one, their union."""

    def __init__(self, *texts: str):
        self.text = "".join(texts)   # an exposition promtool can check when it is one daemon's
        self.families: dict = {}
        for family in (f for text in texts for f in text_string_to_metric_families(text)):
            if family.name in self.families:
                self.families[family.name].samples += family.samples
            else:
                self.families[family.name] = family
        self.samples = [s for f in self.families.values() for s in f.samples]
        self.names = {s.name for s in self.samples}

    def family(self, name: str):
        """The family a stored series name belongs to (counter foo_total → foo, histogram
        foo_bucket/_sum/_count → foo)."""
        for suffix, kinds in (("_total", ("counter",)), ("_bucket", ("histogram",)),
                              ("_sum", ("histogram", "summary")), ("_count", ("histogram", "summary"))):
            base = name[:-len(suffix)] if name.endswith(suffix) else None
            if base and base in self.families and self.families[base].type in kinds:
                return self.families[base]
        return self.families.get(name)

    def labels(self, name: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for s in self.samples:
            if s.name == name:
                for key, value in s.labels.items():
                    out.setdefault(key, set()).add(value)
        return out

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples
                 if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(found) == 1, f"expected one sample {name}{labels}, found {len(found)}"
        return found[0]


def scrape(daemon: Daemon) -> Exposition:
    response = daemon.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return Exposition(response.text)


def finished(exposition: Exposition) -> float:
    return sum(exposition.value("gq_jobs_finished_total", outcome=o) for o in ("succeeded", "dead"))


@dataclass
class Populated:
    daemon: Daemon
    exposition: Exposition


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Iterator[Populated]:
    """A gq that has run jobs of every kind and refused some requests, and its exposition."""
    target = start_target()
    daemon = Daemon(tmp_path_factory.mktemp("gq"),
                    daemon_config(pool={"size": 7}, queue={"maxsize": 50}))
    try:
        urls = [target.url(n=i) for i in range(3)] + [target.url(fail=1, retry_after=0),
                                                      target.url(status=404)]
        for url in urls:
            assert daemon.post({"url": url}).status_code == 202
        assert daemon.post("{not json").status_code == 400
        assert daemon.post({"url": target.url()}, content_type="text/plain").status_code == 415

        def settled():
            exposition = scrape(daemon)
            done = (finished(exposition) == 5
                    and exposition.value("gq_event_loop_delay_seconds_count") > 0)
            return done and exposition
        yield Populated(daemon, wait_for(settled, what="5 jobs finished and a lag probe observed"))
    finally:
        daemon.stop()
        target.stop()


@pytest.fixture(scope="module")
def redis_populated(redis_binary, tmp_path_factory) -> Iterator[Populated]:
    """A gq on the Redis broker that has delivered jobs to one host and seen the circuit of
    another open, and its exposition: the broker's and the destinations' series."""
    from support.redis_server import RedisServer
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    server.start()
    target = start_target()
    daemon = None
    try:
        breaker = {"breaker_failures": 2, "breaker_window": 0.2, "breaker_cooldown": 3600}  # open for the module
        daemon = Daemon(tmp_path_factory.mktemp("gq-redis"), daemon_config(
            broker={"kind": "redis", "url": server.url, "prefix": "gq-prometheus"},
            destinations={"overrides": {DOWN_HOST: breaker}}, retry={"max_attempts": 10}))
        jobs = ([{"url": target.url(n=i)} for i in range(3)]
                + [{"url": f"http://{DOWN_HOST}:{closed_port()}/hook"} for _ in range(5)])
        assert daemon.post(jobs).status_code == 202

        def settled():
            exposition = scrape(daemon)
            done = (finished(exposition) == 8
                    and exposition.value("gq_destination_circuit_state", host=DOWN_HOST) == 2)
            return done and exposition
        yield Populated(daemon, wait_for(settled, what=f"8 jobs finished and the circuit of {DOWN_HOST} open"))
    finally:
        if daemon is not None:
            daemon.stop()
        target.stop()
        server.kill()


@pytest.fixture(scope="module")
def exported(populated, redis_populated) -> Exposition:
    """What the running gqs export between them."""
    return Exposition(populated.exposition.text, redis_populated.exposition.text)


# -- a Prometheus server

def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@contextmanager
def prometheus_server(tools: Tools, workdir: Path, *scrape_targets: str) -> Iterator[str]:
    """A Prometheus on a free loopback port scraping `scrape_targets` every second as
    job "gq", with gq's alert rules loaded; yields its base URL, stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({   # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "gq", "static_configs": [{"targets": list(scrape_targets)}]}],
    }, indent=2))
    for attempt in range(3):   # another process may take the free port before Prometheus binds it
        port = free_port()
        log_path = workdir / f"prometheus-{port}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [tools.prometheus, f"--config.file={config}", f"--storage.tsdb.path={workdir / f'data-{port}'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir, preexec_fn=_die_with_parent)
        base = f"http://127.0.0.1:{port}"
        try:
            def ready():
                if proc.poll() is not None:
                    return "exited"
                try:
                    return requests.get(f"{base}/-/ready", timeout=2).status_code == 200
                except requests.RequestException:
                    return False
            if wait_for(ready, what="Prometheus to be ready") == "exited":
                log_text = log_path.read_text()
                if "address already in use" in log_text and attempt < 2:
                    continue
                pytest.fail(f"Prometheus exited with {proc.returncode}:\n{log_text[-4000:]}")
            yield base
            return
        finally:
            stop_process(proc)
    pytest.fail("Prometheus found no free port")


def query(base: str, expr: str) -> list[dict]:
    response = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def query_value(base: str, expr: str) -> float | None:
    """The value of an instant query expected to return at most one series."""
    result = query(base, expr)
    assert len(result) <= 1, f"{expr}: more than one series: {result}"
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def prometheus_populated(tools, populated, redis_populated, tmp_path_factory) -> Iterator[str]:
    """A Prometheus scraping both populated gqs, once it has scraped each twice (rates need two)."""
    addresses = [urlsplit(p.daemon.api).netloc for p in (populated, redis_populated)]
    with prometheus_server(tools, tmp_path_factory.mktemp("prometheus"), *addresses) as base:
        wait_for(lambda: query_value(base, 'count(count_over_time(up{job="gq"}[1m]) >= 2)') == len(addresses),
                 what="two scrapes of each gq")
        yield base


# -- PromQL in monitoring/ against the exposition

def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) for every query of the dashboard, rows' nested panels included."""
    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel.get("title", ""), target["expr"]) for panel in walk(dashboard["panels"])
            for target in panel.get("targets", []) if target.get("expr")]


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables as Prometheus can run it."""
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
            .replace("$__range", "1h").replace("$instance", ".*").replace("$host", ".*"))


def unknown_names(text: str, exposition: Exposition) -> list[str]:
    """gq_*/process_* names in `text` that are not series gq exports, each with a hint."""
    problems = []
    for name in sorted(set(METRIC_NAME.findall(text))):
        if name in exposition.names:
            continue
        family = exposition.family(name) or exposition.families.get(re.sub(r"_(total|bucket|sum|count)$", "", name))
        hint = (f"; the {family.type} {family.name} exports {sorted({s.name for s in family.samples})}"
                if family else "")
        problems.append(f"{name} is not exported{hint}")
    return problems


def label_problems(expr: str, exposition: Exposition) -> list[str]:
    """Label matchers and groupings in `expr` that do not fit the labels gq exports."""
    problems = []
    names = set(METRIC_NAME.findall(expr))
    for name, matchers in SELECTOR.findall(expr):
        if name == "up":
            continue
        known = exposition.labels(name)
        for label, op, value in MATCHER.findall(matchers):
            if label in TARGET_LABELS:
                continue
            if label not in known:
                problems.append(f"{name} has no label {label!r} (it has {sorted(known)})")
            elif op == "=" and value not in known[label]:
                problems.append(f"{name}{{{label}={value!r}}}: no such value, gq exports {sorted(known[label])}")
            elif op == "=~":
                for alternative in value.split("|"):
                    if re.fullmatch(r"\w+", alternative) and alternative not in known[label]:
                        problems.append(f"{name}{{{label}=~...{alternative}...}}: no such value, "
                                        f"gq exports {sorted(known[label])}")
    exported = set().union(*(exposition.labels(n) for n in names)) if names else set()
    for group in GROUPING.findall(expr):
        for label in (g.strip() for g in group.split(",")):
            if label and label not in TARGET_LABELS and label not in exported:
                problems.append(f"grouping by {label!r}: none of {sorted(names)} has it")
    return problems


# -- the monitoring files

def test_alert_rules_pass_promtool(tools):
    checked = promtool(tools, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    m = re.search(r"SUCCESS: (\d+) rules found", checked.stdout + checked.stderr)
    assert m and int(m.group(1)) == len(ALERTS), checked.stdout + checked.stderr


def test_alert_rules_pass_their_promtool_unit_tests(tools):
    tested = {case["alertname"] for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in group["alert_rule_test"]}
    assert tested >= UNIT_TESTED_ALERTS, f"no unit test for {sorted(UNIT_TESTED_ALERTS - tested)}"
    checked = promtool(tools, "test", "rules", str(RULE_TESTS))
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped,
    spaces to hyphens; a repeated one gets -1, -2, ..."""
    anchors, seen = set(), Counter[str]()
    for heading in re.findall(r"(?m)^#{1,6}[ \t]+(.+?)[ \t#]*$", markdown):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(f"{anchor}-{seen[anchor]}" if seen[anchor] else anchor)
        seen[anchor] += 1
    return anchors


def test_every_alert_says_what_happened_and_has_a_runbook_section():
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    runbook = RUNBOOK.read_text()
    anchors = github_anchors(runbook)
    for rule in rules:
        name, annotations = rule["alert"], rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), name
        url, _, anchor = annotations.get("runbook_url", "").partition("#")
        assert url == RUNBOOK_URL and anchor in anchors, f"{name}: runbook_url {annotations.get('runbook_url')!r}"
    # one section per alert, and none for an alert that is gone
    assert set(re.findall(r"(?m)^## (\w+)$", runbook)) == {rule["alert"] for rule in rules} == ALERTS


def test_example_config_passes_promtool(tools, tmp_path):
    text = EXAMPLE_CONFIG.read_text()
    assert "job_name: gq" in text and "127.0.0.1:8765" in text
    copy, count = re.subn(r"(?m)^(\s*-\s*)[\"']?gq-alerts\.yml[\"']?\s*$",
                          lambda m: f"{m.group(1)}{json.dumps(str(RULES))}", text)
    assert count == 1, "rule_files should list gq-alerts.yml once"
    (tmp_path / "prometheus.yml").write_text(copy)
    checked = promtool(tools, "check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "gq-alerts.yml" in checked.stdout + checked.stderr   # the rules were checked too


def test_dashboard_is_a_grafana_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    assert 'up{job="gq"}' in variables["instance"]["definition"]
    assert variables["host"]["type"] == "query" and variables["host"]["allValue"] == ".*"
    assert 'instance=~"$instance"' in variables["host"]["definition"]
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'job="gq"' in target["expr"] and 'instance=~"$instance"' in target["expr"], target["expr"]
            if "gq_destination_" in target["expr"]:
                assert 'host=~"$host"' in target["expr"], target["expr"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = [e for _, e in dashboard_exprs()]
    for expr in exprs:
        if "histogram_quantile" in expr:
            assert re.search(r"rate\(\w+_bucket\{", expr) and re.search(r"\ble\b", expr), expr
    used = set(METRIC_NAME.findall(" ".join(exprs)))
    missing = [n for n in CONTRACT if not any(u == n or u.startswith(n + "_") for u in used)]
    assert not missing, f"the dashboard shows nothing of {missing}"


def test_alert_rules_cover_what_an_operator_needs():
    text = RULES.read_text()
    for needed in ("gq_queue_depth", "gq_queue_maxsize", 'gq_jobs_finished_total{job="gq", outcome="dead"}',
                   "gq_event_loop_delay_seconds_bucket", "gq_event_loop_lag_seconds",
                   "gq_intake_rejected_total", 'up{job="gq"}', "gq_draining", "process_open_fds",
                   "process_max_fds", "gq_retry_scheduled", "gq_oldest_job_age_seconds", "gq_broker_ready",
                   "gq_destination_circuit_state", "gq_broker_pending"):
        assert needed in text, needed
    assert set(re.findall(r"(?m)^\s*- alert: (\w+)\s*$", text)) == ALERTS


def test_monitoring_names_only_exported_metrics(exported):
    exposition = exported
    problems = [f"gq-alerts.yml: {p}" for p in unknown_names(RULES.read_text(), exposition)]
    for title, expr in dashboard_exprs():
        problems += [f"dashboard {title!r}: {p}" for p in unknown_names(expr, exposition)]
        problems += [f"dashboard {title!r}: {p}" for p in label_problems(expr, exposition)]
    for expr in re.findall(r"(?m)^\s*expr:\s*(.+)$", RULES.read_text()):
        problems += [f"gq-alerts.yml {expr!r}: {p}" for p in label_problems(expr, exposition)]
    assert not problems, "\n".join(problems)


def test_dashboard_shows_every_gq_metric_the_daemons_export(exported):
    shown = {family.name for name in METRIC_NAME.findall(" ".join(e for _, e in dashboard_exprs()))
             if (family := exported.family(name))}
    missing = sorted(name for name in exported.families if name.startswith("gq_") and name not in shown)
    assert not missing, f"the dashboard shows nothing of {missing}"


# -- gq's exposition

def test_exposition_passes_promtool_check_metrics(tools, populated, redis_populated):
    for exposition in (populated.exposition, redis_populated.exposition):
        checked = promtool(tools, "check", "metrics", input=exposition.text)
        assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), \
            checked.stdout + checked.stderr


def test_contract_metrics_are_exported_with_their_types(populated):
    exposition = populated.exposition
    for name, (kind, labels) in CONTRACT.items():
        family = exposition.family(name)
        assert family is not None, f"{name} is not exported"
        assert family.type == kind, f"{name} is a {family.type}, the contract says {kind}"
        assert family.documentation, f"{name} has no HELP"
        if kind == "histogram":
            buckets = [s for s in family.samples if s.name == f"{name}_bucket"]
            assert buckets and buckets[-1].labels["le"] == "+Inf", name
            assert {f"{name}_sum", f"{name}_count"} <= {s.name for s in family.samples}, name
            counts = [s.value for s in buckets]
            assert counts == sorted(counts), f"{name}: buckets not cumulative"
            assert counts[-1] == exposition.value(f"{name}_count"), name
            continue
        assert name in exposition.names, f"{name}: no series"
        exported = exposition.labels(name)
        assert set(exported) == set(labels), f"{name} has labels {sorted(exported)}, expected {sorted(labels)}"
        for label, values in labels.items():
            if values is not None:
                assert exported[label] == values, f"{name}{{{label}}}: {sorted(exported[label])}"

    # the figures of what the fixture did: 5 jobs (one retried, one dead), 2 refused as invalid
    v = exposition.value
    assert v("gq_jobs_accepted_total") == 5
    assert v("gq_jobs_finished_total", outcome="succeeded") == 4
    assert v("gq_jobs_finished_total", outcome="dead") == 1
    assert [v("gq_attempts_total", result=r) for r in ("success", "retry", "fail")] == [4, 1, 1]
    assert v("gq_intake_rejected_total", reason="invalid") == 2
    assert sum(v("gq_intake_rejected_total", reason=r)
               for r in ("unauthorized", "too_large", "queue_full", "draining")) == 0
    assert v("gq_attempt_duration_seconds_count") == 6
    assert v("gq_queue_wait_seconds_count") == 6
    assert (v("gq_pool_size"), v("gq_queue_maxsize")) == (7, 50)
    assert (v("gq_queue_depth"), v("gq_retry_scheduled"), v("gq_journal_pending")) == (0, 0, 0)
    assert v("gq_dead_letters") == 1
    ledger = {state: v("gq_jobs", state=state) for state in exposition.labels("gq_jobs")["state"]}
    assert ledger == {**dict.fromkeys(ledger, 0), "accepted": 5, "succeeded": 4, "dead": 1}
    assert ledger == populated.daemon.status()["ledger"]
    assert v("gq_draining") == 0
    assert v("gq_build_info") == 1
    assert v("gq_broker_ready") == 1
    assert run_gq("--version").stdout.split() == ["gq", *exposition.labels("gq_build_info")["version"]]
    process = psutil.Process(populated.daemon.proc.pid)
    assert v("process_max_fds") == process.rlimit(psutil.RLIMIT_NOFILE)[0]
    assert 0 < v("process_open_fds") <= v("process_max_fds")
    assert 0.5 < v("process_resident_memory_bytes") / process.memory_info().rss < 2
    assert v("gq_greenlets", role="intake") >= 1  # the connection scraping it
    assert v("gq_greenlets", role="worker") == 0
    assert "listen" in exposition.labels("gq_connections")["state"]
    assert 0 <= v("gq_event_loop_lag_seconds") < 5


def test_backlog_gauges_show_the_oldest_due_job_and_the_journal_files(start_daemon, target, tmp_path):
    daemon = start_daemon(journal={"path": str(tmp_path / "journal.sqlite3")})

    def age() -> float:
        return scrape(daemon).value("gq_oldest_job_age_seconds")
    assert age() == 0
    # a scheduled job is not late: it counts as pending, not in the age
    assert daemon.post({"url": target.url(), "delay": 3600}).status_code == 202
    wait_for(lambda: scrape(daemon).value("gq_journal_pending") == 1, what="the scheduled job to be pending")
    assert age() == 0

    before = time.time()
    assert daemon.post({"url": target.url(gate="held")}).status_code == 202
    wait_for(lambda: age() >= 1, what="the held job to be a second old")
    seen = age()
    assert seen <= time.time() - before   # its age, measured on the wall clock it was accepted by
    target.control("/_open?gate=held")
    wait_for(lambda: age() == 0, what="the age back to 0 once the held job succeeded")

    def files_counted() -> bool:
        # SQLite's files: the database, its -wal and -shm (not the lock file beside them)
        on_disk = sum(p.stat().st_size for p in tmp_path.glob("journal.sqlite3*") if p.suffix != ".lock")
        return scrape(daemon).value("gq_journal_bytes") == on_disk > 0
    wait_for(files_counted, what="gq_journal_bytes to be the size of the journal's files")


def test_broker_ready_is_0_while_redis_is_gone(redis_server, start_daemon, target):
    daemon = start_daemon(broker={"kind": "redis", "url": redis_server.url, "prefix": "gq-ready"})

    def ready() -> float:
        return scrape(daemon).value("gq_broker_ready")
    assert ready() == 1
    redis_server.kill()
    wait_for(lambda: ready() == 0, what="gq_broker_ready 0 with Redis killed")
    assert daemon.get("/readyz").status_code == 503
    assert daemon.post({"url": target.url()}).status_code == 503
    redis_server.start()
    wait_for(lambda: ready() == 1, what="gq_broker_ready 1 once Redis serves again")
    assert daemon.get("/readyz").status_code == 200


# -- a real Prometheus server

def test_prometheus_scrapes_gq(tools, start_daemon, target, tmp_path):
    daemon = start_daemon()
    address = urlsplit(daemon.api).netloc
    with prometheus_server(tools, tmp_path / "prometheus", address) as prom:
        wait_for(lambda: query_value(prom, 'up{job="gq"}') == 1, what='up{job="gq"} == 1')
        # gq's counters start at 0: a scrape of the zero state lets increase() see the rise
        wait_for(lambda: query_value(prom, 'gq_jobs_finished_total{outcome="dead"}') == 0,
                 what="a scrape of the dead counter at 0")
        for i in range(5):
            assert daemon.post({"url": target.url(n=i)}).status_code == 202
        for i in range(2):
            assert daemon.post({"url": target.url(status=404, n=i)}).status_code == 202

        def reflected():
            return (query_value(prom, 'gq_jobs_finished_total{job="gq", outcome="succeeded"}') == 5
                    and query_value(prom, 'gq_jobs_finished_total{job="gq", outcome="dead"}') == 2)
        wait_for(reflected, what="Prometheus to see 5 succeeded and 2 dead")
        series = query(prom, 'up{job="gq"}')
        assert [(s["metric"]["instance"], s["value"][1]) for s in series] == [(address, "1")]
        assert query_value(prom, 'gq_jobs_accepted_total{job="gq"}') == 7
        assert query_value(prom, 'gq_attempts_total{job="gq", result="fail"}') == 2
        assert target.stats()["count"] == 7

        # the rules run against real data: the dead letters raise their alert, nothing else
        def dead_letters_alert():
            alerts = requests.get(f"{prom}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "GqDeadLettersRising"] and alerts
        alerts = wait_for(dead_letters_alert, what="GqDeadLettersRising to be pending")
        (alert,) = [a for a in alerts if a["labels"]["alertname"] == "GqDeadLettersRising"]
        assert alert["state"] in ("pending", "firing")
        assert alert["labels"]["instance"] == address and alert["labels"]["severity"] == "warning"
        assert float(alert["value"]) > 0
        active = {a["labels"]["alertname"] for a in alerts}
        assert not active & {"GqNoReadyInstance", "GqInstanceDown", "GqDrainingTooLong",
                             "GqQueueNearlyFull", "GqIntakeRejectingQueueFull"}, alerts


def test_rules_load_and_evaluate_in_prometheus(prometheus_populated, redis_populated):
    def evaluated():
        groups = requests.get(f"{prometheus_populated}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return all(r["health"] != "unknown" for r in rules) and rules
    rules = wait_for(evaluated, what="every rule to be evaluated")
    assert {r["name"] for r in rules} == ALERTS
    for rule in rules:
        assert rule["type"] == "alerting", rule["name"]
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        assert rule["labels"].get("severity") in SEVERITIES, rule["name"]
        assert rule["annotations"].get("summary") and len(rule["annotations"].get("description", "")) > 40, rule["name"]
    # healthy gqs, up and not draining: no availability alert is pending
    active = {a["labels"]["alertname"] for r in rules for a in r.get("alerts", [])}
    assert not active & {"GqNoReadyInstance", "GqInstanceDown", "GqDrainingTooLong", "GqBrokerNotReady",
                         "GqQueueNearlyFull", "GqFileDescriptorsNearLimit", "GqRedisPendingStalled"}, active

    # the circuit the Redis gq opened stays open: its alert is pending, for that host alone
    def circuit_alerts():
        alerts = requests.get(f"{prometheus_populated}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "GqCircuitOpen"]
    (alert,) = wait_for(circuit_alerts, what="GqCircuitOpen to be pending")
    assert alert["labels"]["host"] == DOWN_HOST
    assert alert["labels"]["instance"] == urlsplit(redis_populated.daemon.api).netloc


def test_dashboard_queries_return_data(prometheus_populated):
    missing = []

    def all_answered():
        missing[:] = [(title, expr) for title, expr in dashboard_exprs()
                      if not query(prometheus_populated, grafana_to_promql(expr))]
        return not missing
    deadline = time.monotonic() + 15
    while not all_answered():
        if time.monotonic() > deadline:
            pytest.fail("dashboard queries with no data from a running gq:\n"
                        + "\n".join(f"{t}: {e}" for t, e in missing))
        time.sleep(0.5)


# -- exact under concurrency

def test_counters_exact_under_concurrent_submits(start_daemon, target, tmp_path):
    daemon = start_daemon(journal={"path": str(tmp_path / "journal.sqlite3")})
    kinds = ["ok"] * 300 + ["retry"] * 100 + ["dead"] * 100
    random.Random(7).shuffle(kinds)
    urls = {"ok": target.url(), "retry": target.url(fail=1, retry_after=0), "dead": target.url(status=404)}
    local = threading.local()

    def submit(kind: str) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session.post(f"{daemon.api}/v1/jobs", json={"url": urls[kind]}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(submit, kinds))
    assert statuses == [202] * 500

    def done():
        exposition = scrape(daemon)
        return (finished(exposition) == 500 and exposition.value("gq_pool_busy") == 0
                and exposition.value("gq_journal_pending") == 0 and exposition)
    exposition = wait_for(done, what="500 jobs finished")
    v = exposition.value
    assert v("gq_jobs_accepted_total") == 500
    assert v("gq_jobs_finished_total", outcome="succeeded") == 400
    assert v("gq_jobs_finished_total", outcome="dead") == 100
    assert v("gq_attempts_total", result="success") == 400
    assert v("gq_attempts_total", result="retry") == kinds.count("retry")
    assert v("gq_attempts_total", result="fail") == 100
    assert v("gq_attempt_duration_seconds_count") == 600
    assert v("gq_queue_wait_seconds_count") == 600
    assert (v("gq_queue_depth"), v("gq_retry_scheduled"), v("gq_dead_letters")) == (0, 0, 100)
    assert sum(v("gq_intake_rejected_total", reason=r) for r in CONTRACT["gq_intake_rejected_total"][1]["reason"]) == 0

    stats = target.stats()
    assert (stats["count"], stats["keys"], stats["duplicates"]) == (600, 500, 100)
    by_query: dict[str, int] = {}
    for record in target.received():
        by_query[record["query"]] = by_query.get(record["query"], 0) + 1
    assert by_query == {"": 300, "fail=1&retry_after=0": 200, "status=404": 100}
    assert daemon.status()["finished"] == {"succeeded": 400, "dead": 100, "cancelled": 0}
