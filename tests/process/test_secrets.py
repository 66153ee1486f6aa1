"""Secrets (the token, credentials in job headers and URLs, signing secrets) reach the target
intact and appear in no output: not the job API, /metrics, the CLI or the log; and the
journal that keeps them is not readable by other users.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as secrets_
import signal
from urllib.parse import quote, unquote, urlsplit

import requests

from support import (
    Daemon,
    closed_port,
    daemon_config,
    fetch,
    final_state,
    free_port,
    new_id,
    post_job,
    records,
    run_gq,
    to_toml,
    wait_for,
)


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
        assert 'token = "<redacted>"' in check.stdout
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


class Planted:
    """Distinct secrets, each made for one place, and a check that none shows up in a text."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        """A new secret for `name`; the earlier ones made for it stay looked for."""
        value = f"{name}-{secrets_.token_hex(8)}"
        self.values[name if name not in self.values else f"{name} ({len(self.values)})"] = value
        return value

    def shown_in(self, outputs: dict[str, str]) -> list[str]:
        spellings = {name: {value, quote(value, safe="")} for name, value in self.values.items()}
        return [f"{what}: {name}" for what, text in outputs.items()
                for name, values in spellings.items() if any(v in text for v in values)]


def test_no_planted_secret_reaches_any_output(tmp_path, shared_target):
    """A distinct secret in every secret-bearing key, header and URL form; then every output
    gq has: the API's answers, each command, check-config and config errors, reloads of the
    restart-only keys, a start with Redis unreachable, the debug log. None shows a secret."""
    plant = Planted()
    whsec = "whsec_" + base64.b64encode(secrets_.token_bytes(32)).decode()
    plant.values["signing secret"] = whsec
    port, closed = shared_target.port, closed_port()

    def config(**broker: str) -> dict:
        return daemon_config(
            api={"token": plant("API_TOKEN")}, journal={"path": "gq-data/journal.sqlite3"},
            log={"level": "debug"}, retry={"max_attempts": 1},
            target={"url": f"http://svc:{plant('TARGET_URL_PW')}@127.0.0.1:{port}/default?api_key="
                           f"{plant('TARGET_URL_QUERY')}&status=404",
                    "secret_headers": ["X-Internal-Sig"], "signing_secrets": {"127.0.0.1": whsec}},
            broker={"url": f"redis://:{plant('BROKER_URL_PW')}@127.0.0.1:{closed}/0?password="
                           f"{plant('BROKER_URL_QUERY')}", **broker})

    daemon = Daemon(tmp_path, config())
    token = plant.values["API_TOKEN"]
    daemon.auth = {"Authorization": f"Bearer {token}"}
    jobs = [
        {"headers": {"Authorization": f"Bearer {plant('HEADER_AUTH')}", "Cookie": f"s={plant('HEADER_COOKIE')}",
                     "X-Api-Key": plant("HEADER_API_KEY"), "x-internal-sig": plant("HEADER_CUSTOM")}},
        {"url": f"http://u:{plant('JOB_URL_PW')}@127.0.0.1:{port}/x?status=404"},
        {"url": f"http://u%40corp:{plant('JOB_URL_ESCAPED')}%2Fx@127.0.0.1:{port}/x?status=404"},
        {"url": f"http://127.0.0.1:{port}/x?status=404&token={plant('JOB_URL_TOKEN')}&password="
                f"{plant('JOB_URL_PASSWORD')}"},
        {"url": f"http://127.0.0.1:{port}/x?status=503&sig={plant('JOB_URL_SIG')}"},
        {"url": f"http://u:{plant('SCHEDULED_URL_PW')}@127.0.0.1:{port}/x", "delay": 3600,
         "headers": {"Authorization": plant("SCHEDULED_AUTH")}},
    ]
    outputs: dict[str, str] = {}
    cli = {"cwd": tmp_path, "env": {**os.environ, "GQ_TOKEN": token}}
    c = ("-c", str(daemon.config_path))
    try:
        ids = [post_job(daemon, {"id": new_id("planted"), **job}).json()["id"] for job in jobs]
        for job_id in ids[:-1]:
            assert final_state(daemon, job_id)["state"] == "dead"
        refused = post_job(daemon, {"url": f"ftp://u:{plant('REFUSED_URL_PW')}@127.0.0.1/x"})
        assert refused.status_code == 400
        outputs["POST /v1/jobs refused"] = refused.text
        outputs["GET /v1/jobs/{id}"] = "\n".join(fetch(daemon, f"/v1/jobs/{i}").text for i in ids)
        outputs["GET /v1/jobs"] = fetch(daemon, "/v1/jobs").text
        outputs["/v1/status"] = fetch(daemon, "/v1/status").text
        outputs["/metrics"] = requests.get(f"{daemon.api}/metrics", timeout=10).text
        for args in (("status", "--api", daemon.api), ("jobs", "list", *c), ("jobs", "list", "--json", *c),
                     ("jobs", "list", "--api", daemon.api), ("jobs", "show", ids[0], *c),
                     ("jobs", "show", "--json", ids[1], *c), ("jobs", "show", ids[2], "--api", daemon.api),
                     ("dlq", "list", *c), ("dlq", "list", "--json", *c), ("check-config", *c),
                     ("check-config", "--comments", *c), ("jobs", "replay", ids[0], "--api", daemon.api),
                     ("dlq", "replay", ids[2], *c), ("jobs", "cancel", ids[5], "--api", daemon.api),
                     ("dlq", "purge", ids[4], *c)):
            done = run_gq(*args, **cli)
            assert done.returncode == 0, (args, done.stderr)
            outputs[" ".join(("gq", *args))] = done.stdout + done.stderr
        outputs["gq submit"] = run_gq("submit", "--api", daemon.api, "-", input=json.dumps(jobs[1]) + "\n"
                                      + json.dumps({"url": f"ftp://u:{plant('SUBMIT_URL_PW')}@h/"}),
                                      **cli).stdout
        # Reloads: every restart-only key changed (the old values are logged as kept), then a
        # file whose secret-bearing keys are all wrong.
        reload_config = config(url=f"redis://:{plant('BROKER_URL_PW_NEW')}@127.0.0.1:{closed}/1")
        reload_config["api"].update(listen=f"127.0.0.1:{free_port()}", health_listen=f"127.0.0.1:{free_port()}")
        reload_config["journal"]["path"] = "gq-data/other.sqlite3"
        reload_config["target"]["proxy"] = f"http://p:{plant('PROXY_PW')}@127.0.0.1:{closed}"
        daemon.config_path.write_text(to_toml(reload_config))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "reload: journal.path changed" in daemon.log(), what="the reload")
        daemon.config_path.write_text(BROKEN.format(**{k.lower(): plant(k) for k in BROKEN_KEYS}))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "reload: the config is unchanged" in daemon.log(), what="the refused reload")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        outputs["gq's log"] = daemon.log()
        assert "broker.url changed, but needs a restart: still \"redis://<redacted>@" in outputs["gq's log"]
        batch_config = tmp_path / "batch.toml"
        batch_config.write_text(to_toml(config()))
        batch = run_gq("batch", "-c", str(batch_config), "-", input="\n".join(json.dumps(j) for j in jobs[:5]), **cli)
        assert batch.returncode == 1 and '"dead": 5' in batch.stdout, batch.stderr
        outputs["gq batch"] = batch.stdout + batch.stderr

        broken = tmp_path / "broken.toml"
        broken.write_text(BROKEN.format(**{k.lower(): plant(k + "_CLI") for k in BROKEN_KEYS}))
        outputs["config errors"] = run_gq("check-config", "-c", str(broken), **cli).stderr
        assert outputs["config errors"].count("gq: config error") >= 4, outputs["config errors"]
        for form, url in {"userinfo": f"redis://:{plant('UNREACHABLE_PW')}@127.0.0.1:{closed}/0",
                          "query": f"redis://127.0.0.1:{closed}/0?password={plant('UNREACHABLE_QUERY')}",
                          "sentinel": f"redis+sentinel://:{plant('SENTINEL_MASTER_PW')}@127.0.0.1:{closed}/svc"
                                      f"?sentinel_password={plant('SENTINEL_PW')}"}.items():
            unreachable = tmp_path / f"unreachable-{form}.toml"
            unreachable.write_text(to_toml(daemon_config(broker={"kind": "redis", "url": url})))
            started = run_gq("run", "-c", str(unreachable), **cli)
            assert started.returncode == 1, started.stderr
            outputs[f"gq run, Redis unreachable ({form})"] = started.stdout + started.stderr
    finally:
        daemon.stop()
    assert not plant.shown_in(outputs), f"secrets shown: {plant.shown_in(outputs)}"
    assert "<redacted>" in outputs["GET /v1/jobs/{id}"]
    assert "<redacted>" in outputs[" ".join(("gq", "check-config", *c))]


BROKEN_KEYS = ("API_TOKEN_BAD", "TARGET_URL_BAD", "PROXY_BAD", "BROKER_BAD", "SIGNING_BAD")
BROKEN = """[api]
token = ["{api_token_bad}"]
[target]
url = "ftp://u:{target_url_bad}@127.0.0.1/"
proxy = "http://p:{proxy_bad}@127.0.0.1:1/a/path"
signing_secrets = {{ "127.0.0.1" = "whsec_{signing_bad}" }}
[broker]
url = "mysql://:{broker_bad}@127.0.0.1/0"
"""
