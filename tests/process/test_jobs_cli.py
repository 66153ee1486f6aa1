"""`gq jobs list|show|cancel|replay` on real processes: on the journal of a running daemon
(looked up in the file, changed through its API), of a stopped one (the file itself), and
with --api on a daemon's API (memory only, Redis)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from support import (
    NOT_KEPT,
    TOKEN,
    Daemon,
    closed_port,
    daemon_config,
    fetch,
    free_port,
    metric,
    post_job,
    records,
    run_gq,
    start_target,
    wait_for,
)

JOURNAL = {"path": "data/journal.sqlite3"}
# The CLI's local time here: UTC+05:30 (a POSIX TZ, no time zone database needed), so
# that times shown are seen to be converted.
TZ = "IST-5:30"
LOCAL = timezone(timedelta(hours=5, minutes=30))
COLUMNS = ["ID", "STATE", "ATTEMPTS", "LAST", "ACCEPTED", "HOST", "URL"]
CANCEL_ONLY = "(only a queued, scheduled or retrying job can be cancelled)"


def gq_jobs(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`gq jobs ARGS` in `cwd`, with no GQ_* variable but those given, in TZ."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GQ_")}
    return run_gq("jobs", *args, cwd=cwd, env={**clean, "TZ": TZ, **env})


def ok(result: subprocess.CompletedProcess) -> list[str]:
    """stdout's lines of a command that succeeded with nothing on stderr."""
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.splitlines()


def errors(result: subprocess.CompletedProcess, code: int = 1) -> list[str]:
    """stderr's lines of a command that failed with `code`: each one `gq: ` line, no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("gq: ") for line in lines), result.stderr
    return lines


def local(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, LOCAL).strftime("%Y-%m-%d %H:%M:%S")


def table(lines: list[str]) -> list[dict[str, str]]:
    """A list's lines as rows: checks the header and that every column starts where its
    header does."""
    header, *rows = lines
    assert header.split() == COLUMNS, header
    starts = [header.index(name) for name in COLUMNS]
    parsed = []
    for line in rows:
        for start in starts[1:]:
            assert line[start - 2:start] == "  " and line[start] != " ", f"misaligned:\n{header}\n{line}"
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line)])]
        parsed.append(dict(zip(COLUMNS, cells)))
    return parsed


def journal_daemon(start_daemon, **sections: dict[str, Any]) -> Daemon:
    """A daemon on JOURNAL (unless `sections` name another journal section) whose gq.toml
    names its port (the CLI finds it by api.listen)."""
    return start_daemon(**{"journal": JOURNAL, **sections}, api={"listen": f"127.0.0.1:{free_port()}"})


def state(daemon: Daemon, job_id: str) -> str | None:
    return daemon.job(job_id).get("state")


def wait_states(daemon: Daemon, expected: dict[str, str]) -> None:
    wait_for(lambda: all(state(daemon, i) == s for i, s in expected.items()), what=f"states {expected}")


def stop(daemon: Daemon) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.log()


# -- list and show, on a journal with jobs of every kind, by the file and by the API

@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    """A daemon on its journal with settled jobs, accepted in this order, one request each:
    window A `ok` (succeeded; a password in its URL, secret headers), `gone` (dead: 404),
    `later` (scheduled), `broken` (dead: connection refused); then, accepted at or after
    the whole second `boundary`, window B to `localhost`: `local-ok`, `local-gone`."""
    target = start_target()
    workdir = tmp_path_factory.mktemp("settled")
    daemon = Daemon(workdir, daemon_config(journal=JOURNAL, api={"listen": f"127.0.0.1:{free_port()}"},
                                           target={"secret_headers": ["X-Tenant"]}))
    try:
        window_a = [
            {"id": "ok", "url": target.url("/ok").replace("http://", "http://user:hunter2@"),
             "headers": {"Authorization": "Bearer hunter2", "X-Tenant": "tenant-secret", "X-Seen": "yes"},
             "body": "sent once"},
            {"id": "gone", "url": target.url("/gone", status=404, size=12), "json": {"order": "é1"}},
            {"id": "later", "url": target.url("/later"), "delay": 3600},
            {"id": "broken", "url": f"http://127.0.0.1:{closed_port()}/x", "max_attempts": 1},
        ]
        for job in window_a:
            assert post_job(daemon, job).status_code == 202
        boundary = math.ceil(max(daemon.job(j["id"])["accepted_at"] for j in window_a) + 0.001)
        wait_for(lambda: time.time() > boundary, what="the next whole second")
        local_url = target.url().replace("127.0.0.1", "localhost")
        for job in ({"id": "local-ok", "url": local_url + "/lok"},
                    {"id": "local-gone", "url": local_url + "/lgone?status=404"}):
            assert post_job(daemon, job).status_code == 202
        wait_states(daemon, {"ok": "succeeded", "gone": "dead", "later": "scheduled", "broken": "dead",
                             "local-ok": "succeeded", "local-gone": "dead"})
        yield daemon, workdir, boundary
    finally:
        daemon.stop()
        target.stop()


NEWEST_FIRST = ["local-gone", "local-ok", "broken", "later", "gone", "ok"]


def source_args(daemon: Daemon, source: str) -> list[str]:
    return ["-c", "gq.toml"] if source == "journal" else ["--api", daemon.api]


@pytest.mark.parametrize("source", ["journal", "api"])
def test_list_shows_aligned_columns_newest_first_in_local_time(settled, source):
    daemon, workdir, _ = settled
    rows = table(ok(gq_jobs(workdir, "list", *source_args(daemon, source))))
    assert [r["ID"] for r in rows] == NEWEST_FIRST
    shown = {r["ID"]: r for r in rows}
    for job_id, row in shown.items():
        job = daemon.job(job_id)
        assert row["STATE"] == job["state"] and row["ATTEMPTS"] == str(job["attempts"])
        assert row["ACCEPTED"] == local(job["accepted_at"])
        assert row["URL"] == job["request"]["url"]
    assert [shown[i]["LAST"] for i in ("ok", "gone", "later", "local-gone")] == ["200", "404", "-", "404"]
    assert shown["broken"]["LAST"].startswith("connect: ")
    assert shown["ok"]["URL"].startswith("http://<redacted>@127.0.0.1:")
    assert {r["HOST"] for r in rows if r["ID"].startswith("local-")} == {"localhost"}
    assert {r["HOST"] for r in rows if not r["ID"].startswith("local-")} == {"127.0.0.1"}


@pytest.mark.parametrize("source", ["journal", "api"])
def test_list_fits_the_terminal_cutting_the_url_first(settled, source):
    daemon, workdir, _ = settled
    lines = ok(gq_jobs(workdir, "list", *source_args(daemon, source), COLUMNS="80"))
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    rows = table(lines)
    assert [r["ID"] for r in rows] == NEWEST_FIRST
    for row in rows:
        url = daemon.job(row["ID"])["request"]["url"]
        assert row["URL"].endswith("…") and url.startswith(row["URL"][:-1]), row
        assert local(daemon.job(row["ID"])["accepted_at"]).endswith(row["ACCEPTED"]), row
    wide = table(ok(gq_jobs(workdir, "list", *source_args(daemon, source), COLUMNS="300")))
    assert [r["URL"] for r in wide] == [daemon.job(r["ID"])["request"]["url"] for r in wide]


@pytest.mark.parametrize("source", ["journal", "api"])
def test_list_json_is_the_apis_job_object_with_secrets_redacted(settled, source):
    daemon, workdir, _ = settled
    result = gq_jobs(workdir, "list", "--json", *source_args(daemon, source))
    listed = [json.loads(line) for line in ok(result)]
    assert listed == [daemon.job(job_id) for job_id in NEWEST_FIRST]
    headers = listed[-1]["request"]["headers"]
    assert headers == {"Authorization": "<redacted>", "X-Tenant": "<redacted>", "X-Seen": "yes"}
    assert "hunter2" not in result.stdout and "tenant-secret" not in result.stdout


@pytest.mark.parametrize("source", ["journal", "api"])
def test_list_filters_by_state_host_and_acceptance_time(settled, source):
    daemon, workdir, boundary = settled

    def ids(*args: str) -> list[str]:
        return [r["ID"] for r in table(ok(gq_jobs(workdir, "list", *source_args(daemon, source), *args)))]

    assert ids("--state", "dead") == ["local-gone", "broken", "gone"]
    assert ids("--state", "scheduled") == ["later"]
    assert ids("--state", "queued") == []
    assert ids("--host", "LOCALHOST.") == ["local-gone", "local-ok"]
    assert ids("--host", "127.0.0.1", "--state", "succeeded") == ["ok"]
    window_a, window_b = NEWEST_FIRST[2:], NEWEST_FIRST[:2]
    rfc3339 = datetime.fromtimestamp(boundary, UTC).isoformat()
    assert ids("--since", str(boundary)) == window_b                      # Unix seconds
    assert ids("--until", rfc3339) == window_a                            # RFC 3339
    assert ids("--since", local(boundary)) == window_b                    # local YYYY-MM-DD HH:MM:SS
    first = min(daemon.job(job_id)["accepted_at"] for job_id in NEWEST_FIRST)
    assert ids("--until", local(first)[:16]) == []                        # local, to the minute: before them all
    tomorrow = (datetime.fromtimestamp(boundary, LOCAL) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert ids("--since", "2000-01-01T00:00", "--until", tomorrow) == NEWEST_FIRST  # local dates
    two = gq_jobs(workdir, "list", *source_args(daemon, source), "--limit", "2")
    assert [r["ID"] for r in table(two.stdout.splitlines())] == NEWEST_FIRST[:2]
    assert two.stderr == "… more jobs match than the 2 shown: --limit N shows N (0: all)\n"
    assert ids("--limit", str(len(NEWEST_FIRST))) == NEWEST_FIRST  # as many as match: no note


@pytest.mark.parametrize("source", ["journal", "api"])
def test_list_filters_by_id_prefix_and_ordering_key(settled, source):
    daemon, workdir, _ = settled

    def ids(*options: str) -> list[str]:
        lines = ok(gq_jobs(workdir, "list", "--json", *options, *source_args(daemon, source)))
        return [json.loads(line)["id"] for line in lines]

    assert ids("--id-prefix", "local-") == ["local-gone", "local-ok"]
    assert ids("--id-prefix", "o", "--state", "succeeded") == ["ok"]
    assert ids("--key", "none") == []
    refused = gq_jobs(workdir, "list", "--key", "", *source_args(daemon, source))
    assert errors(refused, 2) == ["gq: usage error: jobs list: --key: give a non-empty text"]


@pytest.mark.parametrize("source", ["journal", "api"])
def test_show_prints_every_field_and_the_attempts(settled, source):
    daemon, workdir, _ = settled
    lines = ok(gq_jobs(workdir, "show", "ok", *source_args(daemon, source)))
    job = daemon.job("ok")
    fields = {}
    for line in lines:
        if not line.startswith(" ") and line.split(":", 1)[0] != "header":
            name, value = line.split(":", 1)
            fields[name] = value.strip()
    assert fields["id"] == "ok" and fields["state"] == "succeeded" and fields["attempts"] == "1"
    assert fields["url"] == job["request"]["url"] and fields["method"] == "POST"
    assert fields["last_status"] == "200" and fields["last_error"] == "-" and fields["dead_reason"] == "-"
    assert fields["accepted_at"] == local(job["accepted_at"])
    assert {"next_attempt_at", "run_at", "ordering_key", "history"} <= set(fields)
    assert [line.split(None, 1)[1] for line in lines if line.startswith("header:")] == \
        ["Authorization: <redacted>", "X-Tenant: <redacted>", "X-Seen: yes"]
    [attempt] = [line for line in lines if line.startswith("  ") and not line.startswith("    ")]
    started = job["history"][0]["started"]
    assert attempt.split() == [*local(started).split(), f"{job['history'][0]['duration']:.3f}s", "success",
                               "status", "200"]
    assert fields["payload"] == "not kept" and "sent once" not in "\n".join(lines)  # succeeded: body dropped
    assert "hunter2" not in "\n".join(lines) and "tenant-secret" not in "\n".join(lines)

    dead = ok(gq_jobs(workdir, "show", "gone", *source_args(daemon, source)))
    snippet = daemon.job("gone")["history"][0]["response"]
    assert snippet and f"    response: {snippet}" in dead
    assert f"dead_reason:     {daemon.job('gone')['dead_reason']}" in dead
    assert 'json:            {"order": "é1"}' in dead and daemon.job("gone")["request"]["json"] == {"order": "é1"}
    as_json = ok(gq_jobs(workdir, "show", "later", "--json", *source_args(daemon, source)))
    assert [json.loads(line) for line in as_json] == [daemon.job("later")]
    missing = gq_jobs(workdir, "show", "nope", *source_args(daemon, source))
    assert errors(missing) == ["gq: jobs show: nope: no such job"] and missing.stdout == ""


def test_list_follows_pages_up_to_the_limit(start_daemon, target, tmp_path):
    # More jobs than a page holds (1000, in the file and the API alike).
    daemon = journal_daemon(start_daemon)
    ids = [f"p{i:04d}" for i in range(1234)]
    for start in range(0, len(ids), 617):
        jobs = [{"id": i, "url": target.url(), "delay": 3600} for i in ids[start:start + 617]]
        assert daemon.post(jobs).status_code == 202
    newest_first = ids[::-1]
    more = "… more jobs match than the {} shown: --limit N shows N (0: all)\n"
    for source in ("journal", "api"):
        def listed(*args: str) -> list[str]:
            return [json.loads(line)["id"] for line in ok(gq_jobs(tmp_path, "list", "--json",
                                                                   *source_args(daemon, source), *args))]
        first = gq_jobs(tmp_path, "list", "--json", *source_args(daemon, source))
        assert (first.returncode, first.stderr) == (0, more.format(100)), source
        assert [json.loads(line)["id"] for line in first.stdout.splitlines()] == newest_first[:100], source
        cut = gq_jobs(tmp_path, "list", *source_args(daemon, source), "--limit", "1233")
        assert (cut.returncode, cut.stderr, len(table(cut.stdout.splitlines()))) == (0, more.format(1233), 1233)
        assert listed("--limit", "1234") == newest_first, source
        assert listed("--limit", "0") == newest_first, source
        assert listed("--limit", "0", "--state", "scheduled", "--host", "127.0.0.1") == newest_first, source
    rows = table(ok(gq_jobs(tmp_path, "list", "-c", "gq.toml", "--limit", "0")))
    assert len(rows) == 1234 and rows[-1]["ID"] == "p0000"


# -- cancel

def test_cancel_through_the_running_daemon(start_daemon, target, tmp_path):
    daemon = journal_daemon(start_daemon)
    assert post_job(daemon, {"id": "sched", "url": target.url(), "delay": 3600}).status_code == 202
    assert post_job(daemon, {"id": "run", "url": target.url(hang=1), "timeout": 60}).status_code == 202
    wait_for(lambda: target.count() == 1 and state(daemon, "run") == "running", what="a job in flight")

    result = gq_jobs(tmp_path, "cancel", "-c", "gq.toml", "sched", "run", "nope")
    assert errors(result) == [f"gq: jobs cancel: run: running {CANCEL_ONLY}", "gq: jobs cancel: nope: no such job"]
    assert result.stdout == "sched\n"
    assert state(daemon, "sched") == "cancelled"
    # The daemon itself cancelled it: its metrics count it.
    assert metric(daemon, "gq_jobs_finished_total", outcome="cancelled") == 1
    again = gq_jobs(tmp_path, "cancel", "-c", "gq.toml", "sched")
    assert errors(again) == [f"gq: jobs cancel: sched: cancelled {CANCEL_ONLY}"]


def test_cancel_on_the_file_of_a_stopped_daemon(start_daemon, target, tmp_path):
    # One worker: `first` (due first) would run before `second`.
    daemon = journal_daemon(start_daemon, pool={"size": 1})
    for job_id in ("first", "second"):
        assert post_job(daemon, {"id": job_id, "url": target.url(), "delay": 4}).status_code == 202
    stop(daemon)
    assert ok(gq_jobs(tmp_path, "cancel", "-c", "gq.toml", "first")) == ["first"]
    assert table(ok(gq_jobs(tmp_path, "list", "-c", "gq.toml", "--state", "cancelled")))[0]["ID"] == "first"

    daemon = journal_daemon(start_daemon, pool={"size": 1})
    wait_for(lambda: records(target, "second"), what="the job not cancelled to run")
    assert records(target, "first") == [] and state(daemon, "first") == "cancelled"


def test_cancel_with_the_journal_held_and_no_address_is_a_usage_error(start_daemon, tmp_path):
    start_daemon(journal=JOURNAL)  # api.listen's port 0
    result = gq_jobs(tmp_path, "cancel", "-c", "gq.toml", "any")
    [line] = errors(result, 2)
    assert line.startswith(f"gq: {JOURNAL['path']} is in use by a running gq, and api.listen has port 0: ")
    assert "--api" in line


# -- replay

def replayable_jobs(daemon: Daemon, target) -> None:
    """`dead` and `dead-2` (dead at their first attempt, a 404; the next one succeeds),
    `done` (succeeded), `waiting` (scheduled), `local-dead` (like `dead`, to localhost)."""
    once = {"fail": 1, "fail_status": 404}
    local_url = target.url("/local", **once).replace("127.0.0.1", "localhost")
    for job in ({"id": "dead", "url": target.url("/dead", **once)},
                {"id": "done", "url": target.url("/done")},
                {"id": "waiting", "url": target.url("/waiting"), "delay": 3600},
                {"id": "dead-2", "url": target.url("/dead", **once)},
                {"id": "local-dead", "url": local_url}):
        assert post_job(daemon, job).status_code == 202
    wait_states(daemon, {"dead": "dead", "done": "succeeded", "waiting": "scheduled", "dead-2": "dead",
                         "local-dead": "dead"})


def delivered_twice(target, *ids: str) -> None:
    wait_for(lambda: all(len(records(target, i)) == 2 for i in ids), what=f"{ids} delivered again")


def test_replay_through_the_running_daemon(start_daemon, target, tmp_path):
    daemon = journal_daemon(start_daemon)
    replayable_jobs(daemon, target)

    result = gq_jobs(tmp_path, "replay", "-c", "gq.toml", "done", "dead", "waiting", "nope", "dead")
    assert errors(result) == ["gq: jobs replay: waiting: not finished: scheduled",
                              "gq: jobs replay: nope: no such job"]
    assert result.stdout == "dead\ndone\n"   # in the order accepted, each once
    delivered_twice(target, "dead", "done")
    wait_states(daemon, {"dead": "succeeded", "done": "succeeded"})

    assert ok(gq_jobs(tmp_path, "replay", "-c", "gq.toml", "--state", "dead", "--host", "localhost")) == \
        ["local-dead"]
    delivered_twice(target, "local-dead")
    assert ok(gq_jobs(tmp_path, "replay", "-c", "gq.toml", "--state", "dead")) == ["dead-2"]
    delivered_twice(target, "dead-2")
    wait_states(daemon, {"dead-2": "succeeded", "local-dead": "succeeded"})
    assert records(target, "waiting") == []
    assert ok(gq_jobs(tmp_path, "replay", "-c", "gq.toml", "--state", "dead")) == []


def test_replay_on_the_file_of_a_stopped_daemon_runs_at_the_next_start(start_daemon, target, tmp_path):
    daemon = journal_daemon(start_daemon)
    replayable_jobs(daemon, target)
    stop(daemon)

    result = gq_jobs(tmp_path, "replay", "-c", "gq.toml", "dead", "done", "waiting", "nope")
    assert errors(result) == ["gq: jobs replay: waiting: not finished: scheduled",
                              "gq: jobs replay: nope: no such job"]
    assert result.stdout == "dead\ndone\n"
    until = datetime.now(UTC).isoformat()
    assert ok(gq_jobs(tmp_path, "replay", "-c", "gq.toml", "--state", "dead", "--host", "127.0.0.1",
                      "--until", until)) == ["dead-2"]
    queued = table(ok(gq_jobs(tmp_path, "list", "-c", "gq.toml", "--state", "queued")))
    assert [(r["ID"], r["ATTEMPTS"]) for r in queued] == [("dead-2", "0"), ("done", "0"), ("dead", "0")]
    assert [len(records(target, i)) for i in ("dead", "done", "dead-2")] == [1, 1, 1]

    daemon = journal_daemon(start_daemon)
    delivered_twice(target, "dead", "done", "dead-2")
    wait_states(daemon, {"dead": "succeeded", "dead-2": "succeeded", "local-dead": "dead"})
    assert records(target, "waiting") == []


@pytest.mark.parametrize("running", [True, False], ids=["through --api", "on the file"])
def test_replay_by_filter_takes_every_page(start_daemon, target, tmp_path, running):
    # More dead jobs than a replay's page (1000, in the API and on the file alike).
    daemon = journal_daemon(start_daemon)
    ids = [f"d{i:04d}" for i in range(1100)]
    url = target.url("/many", fail=1, fail_status=404)
    for start in range(0, len(ids), 550):
        assert daemon.post([{"id": i, "url": url} for i in ids[start:start + 550]]).status_code == 202
    wait_for(lambda: daemon.status()["jobs"]["dead"] == len(ids), what="every job dead")
    if running:
        args = ["--api", daemon.api]
    else:
        stop(daemon)
        args = ["-c", "gq.toml"]
    replayed = ok(gq_jobs(tmp_path, "replay", "--state", "dead", *args))
    assert sorted(replayed) == ids
    if not running:
        daemon = journal_daemon(start_daemon)
    wait_for(lambda: sorted(r["key"] for r in target.received()) == sorted(ids * 2), what="each delivered again")
    wait_for(lambda: daemon.status()["jobs"]["dead"] == 0, what="none dead")


@pytest.mark.parametrize("running", [True, False], ids=["through the daemon", "on the file"])
def test_replay_says_which_jobs_it_skipped_and_why(start_daemon, target, tmp_path, running):
    # Seven jobs succeed with their bodies dropped (the default); three more once they are kept.
    daemon = journal_daemon(start_daemon)
    early, late = [f"early-{n}" for n in range(7)], [f"late-{n}" for n in range(3)]
    daemon.post([{"id": i, "url": target.url(), "json": {"order": i}} for i in early])
    wait_states(daemon, dict.fromkeys(early, "succeeded"))
    stop(daemon)
    daemon = journal_daemon(start_daemon, journal={**JOURNAL, "keep_succeeded_payload": True})
    daemon.post([{"id": i, "url": target.url(), "json": {"order": i}} for i in late])
    wait_states(daemon, dict.fromkeys(late, "succeeded"))
    if not running:
        stop(daemon)

    # A filter: those replayed on stdout, those passed over on stderr; it named none: exit 0.
    result = gq_jobs(tmp_path, "replay", "-c", "gq.toml", "--state", "succeeded")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == late
    assert result.stderr.splitlines() == [f"gq: jobs replay: {i}: {NOT_KEPT}" for i in reversed(early)]
    # Named: each one skipped says why (its id as a terminal shows it), and the exit status is 1.
    result = gq_jobs(tmp_path, "replay", "-c", "gq.toml", "early-3", "\x1b[2Jearly-3")
    assert errors(result) == [f"gq: jobs replay: early-3: {NOT_KEPT}",
                              "gq: jobs replay: \\x1b[2Jearly-3: no such job"]
    assert result.stdout == ""

    if not running:
        daemon = journal_daemon(start_daemon, journal={**JOURNAL, "keep_succeeded_payload": True})
    wait_for(lambda: all(len(records(target, i)) == 2 for i in late), what="the kept ones delivered again")
    wait_states(daemon, dict.fromkeys(late, "succeeded"))
    assert [r["body"] for r in records(target, "late-0")] == ['{"order":"late-0"}'] * 2
    assert all(len(records(target, i)) == 1 for i in early)


# -- --api: any daemon, whatever its broker

def test_api_of_a_memory_only_daemon_with_a_token(start_daemon, target, tmp_path):
    daemon = start_daemon(api={"token": TOKEN})  # journal.path = ""
    daemon.auth = {"Authorization": f"Bearer {TOKEN}"}
    for job in ({"id": "gone", "url": target.url(status=404)}, {"id": "later", "url": target.url(), "delay": 60}):
        assert post_job(daemon, job).status_code == 202
    wait_for(lambda: fetch(daemon, "/v1/jobs/gone").json()["state"] == "dead", what="a dead job")

    by_flag = ["--api", daemon.api, "--token", TOKEN]
    by_env = {"GQ_API": daemon.api, "GQ_TOKEN": TOKEN}
    assert [r["ID"] for r in table(ok(gq_jobs(tmp_path, "list", **by_env)))] == ["later", "gone"]
    assert json.loads(ok(gq_jobs(tmp_path, "show", "gone", "--json", *by_flag))[0])["state"] == "dead"
    assert ok(gq_jobs(tmp_path, "cancel", "later", *by_flag)) == ["later"]
    assert ok(gq_jobs(tmp_path, "replay", "gone", **by_env)) == ["gone"]
    wait_for(lambda: len(records(target, "gone")) == 2, what="the replayed job delivered")

    [wrong] = errors(gq_jobs(tmp_path, "list", "--api", daemon.api, "--token", "wrong"))
    assert wrong.startswith("gq: cannot list jobs: unauthorized")
    [memory] = errors(gq_jobs(tmp_path, "list", "-c", "gq.toml"), 2)
    assert memory.startswith("gq: usage error: jobs: journal.path is empty: the jobs were kept in memory only")
    [gone] = errors(gq_jobs(tmp_path, "list", "--api", f"http://127.0.0.1:{closed_port()}"))
    assert gone.startswith("gq: cannot reach the daemon at ")


def test_api_of_a_redis_daemon_lists_and_replays(redis_server, start_daemon, target, tmp_path):
    daemon = start_daemon(broker={"kind": "redis", "url": redis_server.url, "prefix": "gq-jobs-cli"})
    assert post_job(daemon, {"id": "r1", "url": target.url()}).status_code == 202
    wait_for(lambda: state(daemon, "r1") == "succeeded", what="the job delivered")
    assert json.loads(ok(gq_jobs(tmp_path, "show", "r1", "--json", "--api", daemon.api))[0])["state"] == "succeeded"
    listed = ok(gq_jobs(tmp_path, "list", "--json", "--api", daemon.api))
    assert [json.loads(line)["id"] for line in listed] == ["r1"]
    ok(gq_jobs(tmp_path, "replay", "r1", "--api", daemon.api))  # a succeeded job keeps its body on Redis
    wait_for(lambda: target.count() == 2, what="the replayed job delivered again")
    [no_api] = errors(gq_jobs(tmp_path, "list", "-c", "gq.toml"), 2)
    assert no_api.startswith("gq: usage error: jobs: the Redis broker keeps the jobs") and "--api" in no_api


# -- usage errors: exit 2, one line, before any file or daemon is asked

@pytest.mark.parametrize("args, start", [
    (["replay"], "gq: usage error: jobs replay: give job ids, or --state"),
    (["replay", "--host", "h"], "gq: usage error: jobs replay: give job ids, or --state"),
    (["replay", "x", "--state", "dead"], "gq: usage error: jobs replay: give job ids or a filter"),
    (["replay", "--state", "queued"], "gq: usage error: argument --state: invalid choice"),
    (["list", "--state", "lost"], "gq: usage error: argument --state: invalid choice"),
    (["list", "--since", "yesterday"], "gq: usage error: argument --since: 'yesterday': not Unix seconds"),
    (["list", "--until", "2026-13-01"], "gq: usage error: argument --until: '2026-13-01': not Unix seconds"),
    (["list", "--limit", "-1"], "gq: usage error: jobs list: --limit"),
    (["list", "--host", " "], "gq: usage error: jobs list: --host"),
    (["show"], "gq: usage error: the following arguments are required: ID"),
    (["cancel"], "gq: usage error: the following arguments are required: ID"),
    ([], "gq: usage error: the following arguments are required: ACTION"),
], ids=" ".join)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, start):
    [line] = errors(gq_jobs(tmp_path, *args), 2)
    assert line.startswith(start), line


def test_a_journal_that_is_not_there_is_named(tmp_path):
    # No journal file: the daemon at api.listen is asked, as `gq status` asks it.
    port = closed_port()
    (tmp_path / "gq.toml").write_text(f'[journal]\npath = "nowhere/journal.sqlite3"\n'
                                      f'[api]\nlisten = "127.0.0.1:{port}"\n')
    [line] = errors(gq_jobs(tmp_path, "list", "-c", "gq.toml"))
    assert line == (f"gq: cannot reach the daemon at http://127.0.0.1:{port} (api.listen's, as the journal "
                    "nowhere/journal.sqlite3 does not exist; give another address with --api or $GQ_API): "
                    "connection refused")
    dlq = run_gq("dlq", "list", cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("GQ_")})
    assert (dlq.returncode, dlq.stderr) == (1, "gq: journal: gq-data/journal.sqlite3 does not exist (journal.path); "
                                               "is gq running elsewhere? give -c FILE\n")
