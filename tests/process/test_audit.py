"""The read token and the audit on real processes: `gq run` with its journal (or Redis), the
CLI as a subprocess on the journal file and through --api, a SIGHUP reload."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from support import (
    TOKEN,
    Daemon,
    closed_port,
    fetch,
    free_port,
    metric,
    post_job,
    rejected,
    run_gq,
    to_toml,
    wait_for,
    wait_state,
)

READ_TOKEN = "r3ad-only-token"
FORBIDDEN = {"error": "Authorization: the read token cannot change anything", "field": "Authorization"}
JOURNAL = {"path": "data/journal.sqlite3"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def gq(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`gq ARGS` in `cwd` with no GQ_* variable; it must exit 0 with nothing on stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GQ_")}
    result = run_gq(*args, cwd=cwd, env=clean)
    assert (result.returncode, result.stderr) == (0, ""), (args, result.stdout, result.stderr)
    return result


def audit(daemon: Daemon, token: str = TOKEN, **query: Any) -> dict[str, Any]:
    response = daemon.get("/v1/audit", params=query, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def actions(daemon: Daemon, token: str = TOKEN) -> list[dict[str, Any]]:
    """Every kept action, newest first, through every page (two at a time: paging is used)."""
    found, query = [], {"limit": 2}
    while True:
        page = audit(daemon, token, **query)
        found += page["actions"]
        if page["next"] is None:
            return found
        query["cursor"] = page["next"]


def brief(rows: list[dict[str, Any]]) -> list[tuple]:
    """Each row without its time: (action, ids or filter, count, by, via)."""
    for row in rows:
        assert isinstance(row["at"], float) and ("ids" in row) != ("filter" in row) or row["action"] == "reload"
    return [(r["action"], r.get("ids", r.get("filter")), r["count"], r["by"], r["via"]) for r in rows]


def operator_actions(daemon: Daemon) -> dict[str, float | None]:
    daemon.auth = bearer(TOKEN)
    return {a: metric(daemon, "gq_operator_actions_total", action=a) for a in ("cancel", "replay", "purge", "reload")}


def later(daemon: Daemon, job_id: str) -> None:
    """A job scheduled an hour ahead: it can be cancelled."""
    response = post_job(daemon, {"id": job_id, "url": "http://127.0.0.1:9/x", "delay": 3600}, **bearer(TOKEN))
    assert response.status_code == 202, response.text


def dead(daemon: Daemon, job_id: str) -> None:
    response = post_job(daemon, {"id": job_id, "url": f"http://127.0.0.1:{closed_port()}/x", "max_attempts": 1},
                        **bearer(TOKEN))
    assert response.status_code == 202, response.text
    daemon.auth = bearer(TOKEN)
    wait_state(daemon, job_id, "dead")


def journal_daemon(start_daemon, **api: Any) -> Daemon:
    """A daemon with a token on JOURNAL, whose gq.toml names its port (the CLI finds it there)."""
    daemon = start_daemon(journal=JOURNAL, api={"listen": f"127.0.0.1:{free_port()}", "token": TOKEN, **api})
    daemon.session.headers.update(bearer(TOKEN))
    daemon.auth = bearer(TOKEN)
    return daemon


# -- the read token

def test_the_read_token_reads_everything_and_changes_nothing(start_daemon):
    daemon = journal_daemon(start_daemon, read_token=READ_TOKEN)
    later(daemon, "waits")
    dead(daemon, "gone")
    read = bearer(READ_TOKEN)
    for path in ("/v1/jobs", "/v1/jobs/waits", "/v1/status", "/v1/audit"):
        assert daemon.session.get(f"{daemon.api}{path}", headers=read, timeout=10).status_code == 200, path
    refusals = [daemon.post({"url": "http://127.0.0.1:9/x"}, headers=read),
                daemon.delete("/v1/jobs/waits", headers=read),
                daemon.session.post(f"{daemon.api}/v1/jobs/replay", json={"ids": ["gone"]}, headers=read, timeout=10),
                daemon.session.post(f"{daemon.api}/v1/jobs/replay", json={"state": "dead"}, headers=read, timeout=10)]
    for response in refusals:
        assert (response.status_code, response.json()) == (403, FORBIDDEN), response.text
    assert daemon.job("waits")["state"] == "scheduled" and daemon.job("gone")["state"] == "dead"
    assert daemon.status()["jobs"]["queued"] == 0
    assert actions(daemon) == []
    assert daemon.log().count("the read token cannot change anything (403)") == 4
    daemon.auth = bearer(TOKEN)
    assert rejected(daemon, "unauthorized") == 4
    assert operator_actions(daemon) == {"cancel": 0, "replay": 0, "purge": 0, "reload": 0}
    wrong = daemon.session.get(f"{daemon.api}/v1/jobs", headers=bearer("not-it"), timeout=10)
    assert wrong.status_code == 401


def test_a_reload_takes_a_new_read_token_and_is_kept(start_daemon):
    daemon = journal_daemon(start_daemon, read_token=READ_TOKEN)
    config = daemon.config_path.read_text()
    daemon.config_path.write_text(config.replace(READ_TOKEN, "another-read-token"))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload: applied" in daemon.log(), what="the reload")
    assert daemon.session.get(f"{daemon.api}/v1/jobs", headers=bearer(READ_TOKEN), timeout=10).status_code == 401
    assert audit(daemon, "another-read-token")["actions"][0]["changed"] == ["api.read_token"]
    assert brief(actions(daemon)) == [("reload", None, 1, "local", "signal")]
    assert operator_actions(daemon)["reload"] == 1
    assert "read-token" not in daemon.log().split("audit:", 1)[1]  # names the key, never its value
    daemon.config_path.write_text(config.replace(READ_TOKEN, TOKEN))  # broken: the same as api.token
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload: the config is unchanged" in daemon.log(), what="the refused reload")
    assert len(actions(daemon)) == 1 and operator_actions(daemon)["reload"] == 1  # not an action done


# -- the audit: each source, on the journal

def test_every_action_from_the_api_and_the_cli_is_kept_and_survives_a_restart(start_daemon, tmp_path):
    daemon = journal_daemon(start_daemon)
    for job_id in ("a", "b", "c", "d"):
        later(daemon, job_id)
    for job_id in ("gone-1", "gone-2", "gone-3"):
        dead(daemon, job_id)

    # Through the API, then the CLI through the API, then `gq dlq` through the daemon's control table.
    assert daemon.delete("/v1/jobs/a").status_code == 200
    assert daemon.delete("/v1/jobs/a").status_code == 409      # refused: not an action done
    assert daemon.delete("/v1/jobs/nope").status_code == 404
    gq(tmp_path, "jobs", "cancel", "b", "--api", daemon.api, "--token", TOKEN)
    gq(tmp_path, "dlq", "replay", "gone-1", "-c", "gq.toml")
    daemon.auth = bearer(TOKEN)
    wait_state(daemon, "gone-1", "dead")
    gq(tmp_path, "jobs", "replay", "--state", "dead", "-c", "gq.toml")  # daemon running: through its API
    wait_for(lambda: {daemon.job(i)["state"] for i in ("gone-1", "gone-2", "gone-3")} == {"dead"},
             what="the replayed jobs dead again")
    running = [("replay", {"state": "dead"}, 3, "token", "cli"),
               ("replay", ["gone-1"], 1, "local", "cli"),
               ("cancel", ["b"], 1, "token", "cli"),
               ("cancel", ["a"], 1, "token", "api")]
    assert brief(actions(daemon)) == running
    assert operator_actions(daemon) == {"cancel": 2, "replay": 2, "purge": 0, "reload": 0}
    assert "audit: cancel of 1 job(s); ids 'a'; by token via api" in daemon.log()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.log()

    # On the file, no daemon running: written in its audit table.
    gq(tmp_path, "jobs", "cancel", "c", "-c", "gq.toml")
    gq(tmp_path, "jobs", "replay", "gone-2", "-c", "gq.toml")
    gq(tmp_path, "dlq", "purge", "--all", "--yes", "-c", "gq.toml")
    restarted = journal_daemon(start_daemon)
    assert brief(actions(restarted)) == [("purge", {"state": "dead"}, 2, "local", "cli"),
                                         ("replay", ["gone-2"], 1, "local", "cli"),
                                         ("cancel", ["c"], 1, "local", "cli"), *running]
    newest = audit(restarted, limit=1)
    assert len(newest["actions"]) == 1 and newest["next"]
    assert audit(restarted, limit=1, cursor=newest["next"])["actions"][0]["action"] == "replay"
    assert operator_actions(restarted) == {"cancel": 0, "replay": 0, "purge": 0, "reload": 0}  # this process's
    bad = restarted.get("/v1/audit", params={"cursor": "nope!"})
    assert bad.status_code == 400 and bad.json()["field"] == "cursor"


def test_a_bulk_replay_is_one_small_row(start_daemon):
    daemon = journal_daemon(start_daemon)
    ids = [f"gone-{n}" for n in range(130)]
    response = daemon.post([{"id": i, "url": f"http://127.0.0.1:{closed_port()}/x", "max_attempts": 1} for i in ids])
    assert response.status_code == 202, response.text
    wait_for(lambda: daemon.status()["jobs"]["dead"] == len(ids), 20, "130 dead letters")
    replay = daemon.session.post(f"{daemon.api}/v1/jobs/replay", json={"ids": ids}, timeout=10)
    assert replay.json()["replayed"] == 130
    (row,) = actions(daemon)
    assert (row["count"], len(row["ids"]), row["via"]) == (130, 100, "api")
    assert "and 30 more" in daemon.log()


# -- Redis

def test_the_redis_broker_keeps_the_same_rows(redis_server, start_daemon, tmp_path):
    broker = {"kind": "redis", "url": redis_server.url, "prefix": "gqt-audit"}
    daemon = start_daemon(broker=broker, api={"token": TOKEN, "read_token": READ_TOKEN})
    daemon.session.headers.update(bearer(TOKEN))
    later(daemon, "a")
    dead(daemon, "gone")
    assert daemon.delete("/v1/jobs/a").status_code == 200
    assert daemon.delete("/v1/jobs/a", headers=bearer(READ_TOKEN)).status_code == 403
    cli = tmp_path / "cli.toml"
    cli.write_text(to_toml({"broker": broker}))
    gq(tmp_path, "dlq", "purge", "gone", "-c", str(cli))
    assert brief(actions(daemon, READ_TOKEN)) == [("purge", ["gone"], 1, "local", "cli"),
                                                  ("cancel", ["a"], 1, "token", "api")]
    assert operator_actions(daemon)["cancel"] == 1
    assert redis_server.client().xlen("gqt-audit:audit") == 2


def test_without_a_token_the_actions_are_anonymous_and_the_cli_header_says_where_from(start_daemon):
    daemon = start_daemon()
    response = post_job(daemon, {"id": "a", "url": "http://127.0.0.1:9/x", "delay": 3600})
    assert response.status_code == 202
    assert fetch(daemon, "/v1/jobs/a").status_code == 200
    assert daemon.delete("/v1/jobs/a", headers={"X-GQ-Client": "cli"}).status_code == 200
    assert brief(actions(daemon)) == [("cancel", ["a"], 1, "anonymous", "cli")]
