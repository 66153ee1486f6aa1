"""Secrets (the token, credentials in job headers and URLs, signing secrets) reach the target
intact and appear in no output: not the job API, /metrics, the CLI or the log; and the
journal that keeps them is not readable by other users.
"""

from __future__ import annotations

import base64
import os
import secrets as secrets_
import signal
from urllib.parse import unquote, urlsplit

import requests

from support import Daemon, daemon_config, fetch, final_state, new_id, post_job, records, run_gq, wait_for


def test_secrets_appear_in_no_output_yet_reach_the_target_intact(tmp_path, shared_target):
    token = f"TOKEN-{secrets_.token_hex(12)}"
    key = secrets_.token_bytes(32)
    whsec = "whsec_" + base64.b64encode(key).decode()
    secret_values: dict[str, str] = {}

    def secret(name: str) -> str:
        secret_values[name] = f"{name}-{secrets_.token_hex(10)}"
        return secret_values[name]

    ok, dead = shared_target.url("/secret"), shared_target.url("/secret", status=404)
    port = shared_target.port
    jobs = {
        "auth-ok": {"url": ok, "headers": {"Authorization": f"Bearer {secret('AUTHOK')}", "X-Trace": "visible-1"}},
        "auth-dead": {"url": dead, "headers": {"AUTHORIZATION": f"Bearer {secret('AUTHDEAD')}"}},
        "cookie": {"url": dead, "headers": {"Cookie": f"session={secret('COOKIE')}"}},
        "api-key": {"url": dead, "headers": {"X-Api-Key": secret("APIKEY")}},
        "api-key-lower": {"url": ok, "headers": {"x-api-key": secret("APIKEYLOW")}},
        "custom": {"url": dead, "headers": {"X-Internal-Sig": secret("CUSTOM")}},
        "custom-lower": {"url": ok, "headers": {"x-internal-sig": secret("CUSTOMLOW")}},
        "userinfo-dead": {"url": f"http://svc:{secret('URLPWDEAD')}@127.0.0.1:{port}/secret?status=404"},
        "userinfo-ok": {"url": f"http://svc:{secret('URLPWOK')}@127.0.0.1:{port}/secret"},
        "userinfo-escaped": {"url": f"http://svc%40corp:{secret('URLPWESC')}%2Fx@127.0.0.1:{port}/secret"},
    }
    config = daemon_config(
        api={"token": token}, journal={"path": "gq-data/journal.sqlite3"}, log={"level": "debug"},
        target={"secret_headers": ["X-Internal-Sig"], "signing_secrets": {"localhost": whsec}},
        retry={"max_attempts": 2})
    daemon = Daemon(tmp_path, config)
    daemon.auth = {"Authorization": f"Bearer {token}"}
    try:
        ids = {}
        for name, job in jobs.items():
            response = post_job(daemon, {"id": new_id(name), **job})
            assert response.status_code == 202, f"{name}: {response.text}"
            ids[name] = response.json()["id"]
        states = {name: final_state(daemon, job_id) for name, job_id in ids.items()}
        for name, job in states.items():
            expected = "dead" if "status=404" in jobs[name]["url"] else "succeeded"
            assert job["state"] == expected, (name, job)

        # the target got every value intact
        for name, job in jobs.items():
            got = records(shared_target, ids[name])
            assert got, name
            for header, value in job.get("headers", {}).items():
                assert got[-1]["headers"][header.lower()] == value, (name, header)
            userinfo = urlsplit(job["url"])
            if userinfo.password:
                basic = base64.b64encode(f"{unquote(userinfo.username)}:{unquote(userinfo.password)}".encode())
                assert got[-1]["headers"].get("authorization") == f"Basic {basic.decode()}", (name, got[-1])

        # and shows it nowhere
        dead_ids = {job_id for name, job_id in ids.items() if states[name]["state"] == "dead"}
        cwd = {"cwd": tmp_path}

        def dlq_text() -> str:
            result = run_gq("dlq", "list", "-c", str(daemon.config_path), **cwd)
            assert result.returncode == 0, result.stderr
            return result.stdout + result.stderr

        def all_listed() -> str | None:
            text = dlq_text()
            return text if all(i in text for i in dead_ids) else None

        listing = wait_for(all_listed, what="the dead letters in gq dlq list")
        as_json = run_gq("dlq", "list", "--json", "-c", str(daemon.config_path), **cwd)
        check = run_gq("check-config", "-c", str(daemon.config_path), **cwd)
        assert check.returncode == 0, check.stderr
        shown_jobs = {name: fetch(daemon, f"/v1/jobs/{job_id}").text for name, job_id in ids.items()}
        outputs = {
            "GET /v1/jobs/{id}": "\n".join(shown_jobs.values()),
            "/v1/status": fetch(daemon, "/v1/status").text,
            "/metrics": requests.get(f"{daemon.api}/metrics", timeout=10).text,
            "gq dlq list": listing,
            "gq dlq list --json": as_json.stdout + as_json.stderr,
            "gq check-config": check.stdout + check.stderr,
        }
        daemon.signal(signal.SIGTERM)
        daemon.wait()
        outputs["gq's log"] = daemon.log()
        leaks = [f"{what}: {name}" for what, text in outputs.items()
                 for name, value in {**secret_values, "api.token": token, "signing secret": whsec,
                                     "signing key": whsec[len("whsec_"):]}.items() if value in text]
        assert not leaks, f"secrets shown: {leaks}"

        # what is shown instead
        assert '"<redacted>"' in shown_jobs["cookie"] and "visible-1" in shown_jobs["auth-ok"]
        assert "//<redacted>@" in shown_jobs["userinfo-dead"]  # the whole user:password part
        assert all(i in as_json.stdout for i in dead_ids)
        assert '"<secret>"' in check.stdout
    finally:
        daemon.stop()


def test_the_journal_which_holds_credentials_is_not_readable_by_others(tmp_path, shared_target):
    """Jobs are kept whole in the journal, Authorization headers included."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    old = os.umask(0o022)   # a common default umask
    try:
        daemon = Daemon(workdir, daemon_config(journal={"path": "gq-data/journal.sqlite3"}))
    finally:
        os.umask(old)
    try:
        assert post_job(daemon, {"url": shared_target.url("/j"), "headers": {"Authorization": "Bearer x"}}).ok
        journal = workdir / "gq-data" / "journal.sqlite3"
        wait_for(journal.exists, what="the journal")
        readable = [(p.name, oct(p.stat().st_mode & 0o777)) for p in (journal.parent, journal)
                    if p.stat().st_mode & 0o044]
        directory_closed = not (journal.parent.stat().st_mode & 0o005)
        assert directory_closed or not [r for r in readable if r[0] == journal.name], (
            f"journal.path created readable by other users under umask 022: {readable}")
    finally:
        daemon.stop()
