"""gq.Client against a real `gq run`, and the CLI's messages that come from it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

import gq
from gq import Client, GqError, Refused, Unreachable
from support import TOKEN, closed_port, new_id, run_gq, wait_for, wait_state


def host_port(daemon) -> str:
    return daemon.api.split("://", 1)[1]


@pytest.fixture
def daemon(start_daemon):
    return start_daemon(journal={"path": "journal.sqlite3"})


@pytest.fixture
def client(daemon):
    with Client(host_port(daemon)) as c:   # plain HOST:PORT, as api.listen takes it
        yield c


def test_importing_gq_imports_neither_gevent_nor_requests():
    code = "import sys, gq; gq.Refused; print(sorted({'gevent', 'requests'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout == "[]\n"


def test_submit_one_many_and_duplicates(client, daemon, target):
    [one] = client.submit({"url": target.url()})
    ids = client.submit([{"id": "a", "url": target.url()}, {"url": target.url()}])
    assert ids[0] == "a" and len(ids) == 2 and one not in ids
    # A known id is not queued again, and is among the ids all the same.
    assert client.submit([{"id": "a", "url": target.url()}, {"id": "b", "url": target.url()}]) == ["a", "b"]
    assert client.submit({"id": "a", "url": target.url()}) == ["a"]
    for job_id in (one, *ids, "b"):
        wait_state(daemon, job_id, "succeeded")
    job = client.get("a")
    assert job["state"] == "succeeded" and job["attempts"] == 1
    assert len([r for r in target.received() if r["key"] == "a"]) == 1


def test_jobs_pages_through_every_match_with_filters(client, target, monkeypatch):
    monkeypatch.setattr("gq.client.PAGE", 2)
    ids = client.submit([{"id": f"p-{i}", "url": target.url(), "delay": 60, "ordering_key": f"k{i % 2}"}
                         for i in range(5)])
    client.submit({"id": "other", "url": target.url(), "delay": 60})
    assert [j["id"] for j in client.jobs(id_prefix="p-")] == ids[::-1]   # newest first, over 3 pages
    assert [j["id"] for j in client.jobs(ordering_key="k0")] == ["p-4", "p-2", "p-0"]
    assert [j["id"] for j in client.jobs(limit=3)] == ["other", "p-4", "p-3"]
    assert [j["id"] for j in client.jobs(state="scheduled", id_prefix="p-")][-1] == "p-0"
    assert list(client.jobs(state="dead")) == []
    assert len(list(client.jobs(host="127.0.0.1", since=time.time() - 60, until=time.time() + 60))) == 6


def test_cancel_and_its_refusals(client, target):
    [job_id] = client.submit({"url": target.url(), "delay": 60})
    assert client.cancel(job_id) == {"id": job_id, "state": "cancelled"}
    with pytest.raises(Refused) as again:
        client.cancel(job_id)
    assert again.value.status == 409 and again.value.answer["state"] == "cancelled"
    with pytest.raises(Refused) as unknown:
        client.get("no-such-job")
    assert unknown.value.status == 404


def test_replay_by_ids_and_by_filter(client, daemon, target):
    dead = client.submit([{"id": f"d-{i}", "url": target.url(status=404)} for i in range(3)])
    for job_id in dead:
        wait_state(daemon, job_id, "dead")
    assert client.replay(["d-0", "unknown"]) == ["d-0"]
    wait_state(daemon, "d-0", "dead")
    assert sorted(client.replay(state="dead", id_prefix="d-")) == dead
    wait_for(lambda: len(target.received()) == 7, what="every replayed job attempted again")
    with pytest.raises(TypeError):
        client.replay(["d-0"], state="dead")
    with pytest.raises(TypeError):
        client.replay(colour="red")


def test_a_bad_job_is_refused_with_its_field_and_index(client, target):
    with pytest.raises(Refused) as one:
        client.submit({"url": "ftp://example.com/"})
    assert (one.value.status, one.value.field) == (400, "url")
    with pytest.raises(Refused) as many:
        client.submit([{"url": target.url()}, {"url": target.url(), "json": {}, "body": "x"}])
    assert (many.value.status, many.value.index) == (400, 1)
    assert isinstance(many.value, GqError) and many.value.error
    assert list(client.jobs()) == []   # all or nothing


def test_a_wrong_token_is_refused_401(token_daemon):
    with pytest.raises(Refused) as wrong:
        Client(token_daemon.api, token="wrong").status()
    assert (wrong.value.status, wrong.value.field) == (401, "Authorization")
    assert wrong.value.error == "Authorization: missing or wrong bearer token"
    assert Client(token_daemon.api, token=TOKEN).status()["draining"] is False


def test_the_token_and_address_from_the_environment(token_daemon, monkeypatch):
    monkeypatch.setenv("GQ_API", host_port(token_daemon))
    monkeypatch.setenv("GQ_TOKEN", TOKEN)
    client = Client()
    assert client.api == token_daemon.api and client.status()["draining"] is False


@pytest.fixture
def full(start_daemon, target):
    """A memory-only daemon whose one worker is busy for 2 s and whose queue of one is full:
    the next job is refused 429 with Retry-After 1 until the worker is free."""
    daemon = start_daemon(queue={"maxsize": 1, "enqueue_timeout": 0.05}, pool={"size": 1})
    client = Client(daemon.api)
    client.submit({"id": "slow", "url": target.url(delay=2)})
    wait_state(daemon, "slow", "running")
    client.submit({"id": "waiting", "url": target.url()})
    return daemon


def test_429_is_retried_after_its_retry_after(full, target):
    started = time.monotonic()
    assert Client(full.api, timeout=20).submit({"id": "late", "url": target.url()}) == ["late"]
    assert time.monotonic() - started >= 1.0   # asked again after Retry-After: 1, not at once


def test_429_past_the_timeout_is_refused(full, target):
    started = time.monotonic()
    with pytest.raises(Refused) as busy:
        Client(full.api, timeout=0.5).submit({"url": target.url()})
    assert (busy.value.status, busy.value.retry_after) == (429, 1.0)
    assert time.monotonic() - started < 1.0    # a Retry-After beyond the timeout is not waited for


def test_an_unreachable_daemon_is_one_clear_line():
    port = closed_port()
    with pytest.raises(Unreachable) as down:
        Client(f"127.0.0.1:{port}").submit({"url": "http://127.0.0.1:1/"})
    assert str(down.value) == f"cannot reach the daemon at http://127.0.0.1:{port}: connection refused"
    assert isinstance(down.value, gq.GqError)


@pytest.mark.parametrize("given, url", [
    ("127.0.0.1:8765", "http://127.0.0.1:8765"), ("[::1]:8765", "http://[::1]:8765"),
    ("http://localhost:8765/", "http://localhost:8765"), ("https://gq.example.com", "https://gq.example.com"),
])
def test_the_forms_of_an_address(given, url):
    assert Client(given).api == url


@pytest.mark.parametrize("given", ["ftp://h:1", "h:port", "http://", "http://h:1?x=1"])
def test_a_bad_address_is_a_usage_error(given):
    with pytest.raises(gq.errors.UsageError):
        Client(given)


# -- the CLI's messages

def test_status_of_an_unreachable_daemon(tmp_path):
    port = closed_port()
    result = run_gq("status", "--api", f"127.0.0.1:{port}", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"gq: cannot reach the daemon at http://127.0.0.1:{port}: connection refused\n"


def test_status_with_host_port(daemon, tmp_path):
    result = run_gq("status", "--json", "--api", host_port(daemon), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [["status"], ["jobs", "list"], ["submit", "jobs.jsonl"]], ids=" ".join)
def test_a_wrong_token_says_how_to_give_one(token_daemon, tmp_path, command):
    (tmp_path / "jobs.jsonl").write_text('{"url": "http://127.0.0.1:1/"}\n')
    result = run_gq(*command, "--api", host_port(token_daemon), "--token", "wrong", cwd=tmp_path)
    [line] = result.stderr.splitlines()
    assert result.returncode == 1 and line.startswith("gq: ") and "unauthorized" in line
    assert line.endswith(" (give --token or set $GQ_TOKEN)")


def test_jobs_with_no_journal_file_asks_the_daemon_at_api_listen(daemon, target, tmp_path):
    """The rule gq status follows: no --api, no $GQ_API, and no journal file here."""
    job_id = new_id()
    Client(daemon.api).submit({"id": job_id, "url": target.url(), "delay": 60})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "gq.toml").write_text(f'[api]\nlisten = "{host_port(daemon)}"\n')   # no gq-data/ here
    result = run_gq("jobs", "list", "--json", "-c", "gq.toml", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert job_id in result.stdout
    status = run_gq("status", "-c", "gq.toml", cwd=elsewhere)
    assert status.returncode == 0, status.stderr


def test_a_busy_daemon_is_waited_for_by_submit(full, target, tmp_path):
    (tmp_path / "jobs.jsonl").write_text(f'{{"id": "cli", "url": "{target.url()}"}}\n')
    result = run_gq("submit", "--api", full.api, "jobs.jsonl", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "cli\n", "")


def test_a_client_thread_per_caller(client, target):
    """A Client's calls from several threads of a program that does not use gevent."""
    found: list[list[str]] = []
    threads = [threading.Thread(target=lambda: found.append(client.submit({"url": target.url()})))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({i for ids in found for i in ids}) == 4
