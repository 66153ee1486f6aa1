"""The console under /ui/, as HTTP: who may see and act (sessions, the read token, CSRF),
the headers every page carries, and what its actions do to jobs (the target receives a
replayed job). The same flows in a real browser are in tests/process/test_console_browser.py."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
import requests

from support import TOKEN, Daemon, fetch, final_state, new_id, post_job, wait_for, wait_state

READ_TOKEN = "v13wer-token"
FAR = 4102444800  # 2100-01-01: a scheduled job that never comes due in a test


def page(session: requests.Session, daemon: Daemon, path: str, **kw) -> requests.Response:
    return session.get(f"{daemon.api}{path}", timeout=30, allow_redirects=False, **kw)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def post_form(session: requests.Session, daemon: Daemon, path: str, **fields: str) -> requests.Response:
    return session.post(f"{daemon.api}{path}", data=fields, timeout=30, allow_redirects=False)


def dead_job(daemon: Daemon, target, **extra) -> str:
    job_id = new_id("dead")
    job = {"id": job_id, "url": target.url(status=404), "json": {"order": 7, "note": "<script>x</script>"}, **extra}
    assert post_job(daemon, job).status_code == 202
    assert final_state(daemon, job_id)["state"] == "dead"
    return job_id


def signed_in(daemon: Daemon, token: str) -> requests.Session:
    session = requests.Session()
    answer = post_form(session, daemon, "/ui/sign-in", token=token, next="/ui/dead")
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/dead"
    return session


@pytest.fixture
def open_daemon(start_daemon):
    return start_daemon(journal={"path": "journal.sqlite3", "min_free_mb": 16})


@pytest.fixture
def guarded(start_daemon):
    daemon = start_daemon(api={"token": TOKEN, "read_token": READ_TOKEN},
                          journal={"path": "journal.sqlite3", "min_free_mb": 16})
    daemon.auth = {"Authorization": f"Bearer {TOKEN}"}
    return daemon


def test_every_page_answers_with_a_policy_that_allows_no_inline_or_foreign_script_and_no_framing(open_daemon, target):
    job_id = dead_job(open_daemon, target)
    session = requests.Session()
    for path in ("/ui/", "/ui/jobs", "/ui/dead", "/ui/scheduled", "/ui/destinations", "/ui/audit", f"/ui/jobs/{job_id}",
                 "/ui/confirm?action=replay&state=dead", "/ui/jobs/nope", "/ui/nowhere"):
        answer = page(session, open_daemon, path)
        assert answer.status_code in (200, 404), path
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = dict(part.strip().split(" ", 1) for part in answer.headers["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'" and answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Cache-Control"] == "no-store"
        # No inline script, handler or style for the policy to block: one script, from gq.
        assert [s for s in re.findall(r"<script[^>]*>", answer.text) if "src=\"/ui/static/console.js" not in s] == []
        assert re.search(r"<[^>]+\s(on\w+|style)=", answer.text) is None and "javascript:" not in answer.text


def test_an_open_console_gives_a_session_cookie_that_scripts_cannot_read_and_other_sites_cannot_send(open_daemon):
    answer = page(requests.Session(), open_daemon, "/ui/")
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("gq_session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/ui/" in cookie and re.search(r"Max-Age=\d+", cookie)


def test_a_dead_job_shows_its_payload_escaped_and_why_it_failed(open_daemon, target):
    job_id = dead_job(open_daemon, target)
    html = page(requests.Session(), open_daemon, f"/ui/jobs/{job_id}").text
    assert "permanent status 404" in html and "404" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(open_daemon, target):
    job_id = dead_job(open_daemon, target)
    session = requests.Session()
    page(session, open_daemon, "/ui/")  # the session's cookie
    for fields in ({}, {"csrf": "forged"}):
        refused = post_form(session, open_daemon, f"/ui/jobs/{job_id}/replay", **fields)
        assert refused.status_code == 403 and "nothing was changed" in refused.text
    token = csrf_of(page(session, open_daemon, f"/ui/jobs/{job_id}").text)
    refused = post_form(requests.Session(), open_daemon, f"/ui/jobs/{job_id}/replay", csrf=token)
    assert refused.status_code == 403  # a token of another session's
    for elsewhere in ("http://evil.example", "null"):
        refused = session.post(f"{open_daemon.api}/ui/jobs/{job_id}/replay", data={"csrf": token},
                               headers={"Origin": elsewhere}, timeout=30, allow_redirects=False)
        assert refused.status_code == 403, elsewhere
    assert open_daemon.job(job_id)["state"] == "dead" and target.count() == 1


def test_replay_from_a_jobs_page_reaches_the_target(open_daemon, target):
    job_id = new_id("again")
    assert post_job(open_daemon, {"id": job_id, "url": target.url(fail=1, fail_status=404),
                                  "json": {"n": 1}}).status_code == 202
    assert final_state(open_daemon, job_id)["state"] == "dead"
    session = requests.Session()
    token = csrf_of(page(session, open_daemon, f"/ui/jobs/{job_id}").text)
    done = post_form(session, open_daemon, f"/ui/jobs/{job_id}/replay", csrf=token)
    assert done.status_code == 303 and done.headers["Location"] == f"/ui/jobs/{job_id}?done=replayed"
    assert final_state(open_daemon, job_id)["state"] == "succeeded"
    delivered = [r for r in target.received() if r["key"] == job_id]
    assert len(delivered) == 2 and json.loads(delivered[-1]["body"]) == {"n": 1}
    row = open_daemon.get("/v1/audit").json()["actions"][0]
    assert {k: row[k] for k in ("action", "ids", "count", "by", "via")} == {
        "action": "replay", "ids": [job_id], "count": 1, "by": "anonymous", "via": "console"}


def test_cancel_from_a_jobs_page(open_daemon, target):
    job_id = new_id("later")
    assert post_job(open_daemon, {"id": job_id, "url": target.url(), "run_at": FAR}).status_code == 202
    session = requests.Session()
    html = page(session, open_daemon, f"/ui/jobs/{job_id}").text
    assert "Cancel" in html and "Replay" not in html
    done = post_form(session, open_daemon, f"/ui/jobs/{job_id}/cancel", csrf=csrf_of(html))
    assert done.headers["Location"].endswith("done=cancelled")
    assert open_daemon.job(job_id)["state"] == "cancelled"


def test_a_bulk_replay_confirms_how_many_jobs_it_touches_then_replays_them(open_daemon, target):
    host_jobs = [dead_job(open_daemon, target, ordering_key=f"k{i}") for i in range(3)]
    session = requests.Session()
    # A list reads the journal's file, which the writer brings up to date a moment after
    # a job's own look-up (from memory) says it is dead.
    wait_for(lambda: all(job_id in page(session, open_daemon, "/ui/dead").text for job_id in host_jobs),
             what="the dead letters to list the three jobs")
    confirm = page(session, open_daemon, "/ui/confirm?action=replay&state=dead")
    assert confirm.status_code == 200 and "Replay 3 jobs" in confirm.text
    target.control("/_reset")
    done = post_form(session, open_daemon, "/ui/bulk", csrf=csrf_of(confirm.text), action="replay", state="dead")
    assert done.status_code == 200 and "Replayed 3 jobs" in done.text
    wait_for(lambda: target.count() >= 3, what="the replayed jobs to reach the target")
    assert {r["key"] for r in target.received()} == set(host_jobs)
    row = open_daemon.get("/v1/audit").json()["actions"][0]
    assert (row["action"], row["filter"], row["count"], row["via"]) == ("replay", {"state": "dead"}, 3, "console")
    audit = page(session, open_daemon, "/ui/audit").text
    assert "state dead" in audit and ">3</td>" in audit and "console" in audit


def test_a_bulk_cancel_takes_only_what_can_be_cancelled(open_daemon, target):
    later = [new_id("later") for _ in range(4)]
    assert open_daemon.post([{"id": i, "url": target.url(), "run_at": FAR} for i in later]).status_code == 202
    session = requests.Session()
    confirm = page(session, open_daemon, "/ui/confirm?action=cancel&state=scheduled")
    assert "Cancel 4 jobs" in confirm.text
    done = post_form(session, open_daemon, "/ui/bulk", csrf=csrf_of(confirm.text), action="cancel",
                     state="scheduled")
    assert "Cancelled 4 jobs" in done.text
    assert {open_daemon.job(i)["state"] for i in later} == {"cancelled"}
    refused = page(session, open_daemon, "/ui/confirm?action=cancel&state=dead")
    assert refused.status_code == 400 and "state" in refused.text


def test_filters_that_name_nothing_gq_knows_answer_400_naming_the_field(open_daemon):
    session = requests.Session()
    for query, field in (("state=lost", "state"), ("since=yesterday", "since"), ("cursor=%21%21", "cursor")):
        answer = page(session, open_daemon, f"/ui/jobs?{query}")
        assert answer.status_code == 400 and f"{field}:" in answer.text, query


def test_with_a_token_pages_need_a_sign_in_and_a_wrong_token_is_refused(guarded):
    answer = page(requests.Session(), guarded, "/ui/jobs?state=dead")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/ui/sign-in?next=%2Fui%2Fjobs%3Fstate%3Ddead"
    wrong = post_form(requests.Session(), guarded, "/ui/sign-in", token="guess")
    assert wrong.status_code == 401 and "not one of this daemon" in wrong.text and "Set-Cookie" not in wrong.headers
    elsewhere = post_form(requests.Session(), guarded, "/ui/sign-in", token=TOKEN, next="//evil.example/")
    assert elsewhere.headers["Location"] == "/ui/"


def test_a_viewer_sees_everything_and_changes_nothing(guarded, target):
    job_id = dead_job(guarded, target)
    viewer = signed_in(guarded, READ_TOKEN)
    html = page(viewer, guarded, f"/ui/jobs/{job_id}").text
    assert "viewer" in html and "Replay</button>" not in html and "order" in html
    refused = post_form(viewer, guarded, f"/ui/jobs/{job_id}/replay", csrf=csrf_of(html))
    assert refused.status_code == 403 and "read token" in refused.text
    refused = post_form(viewer, guarded, "/ui/bulk", csrf=csrf_of(html), action="replay", state="dead")
    assert refused.status_code == 403
    assert fetch(guarded, f"/v1/jobs/{job_id}").json()["state"] == "dead" and target.count() == 1
    assert guarded.get("/v1/audit", headers=guarded.auth).json()["actions"] == []


def test_an_operator_acts_and_a_signed_out_session_is_over(guarded, target):
    job_id = dead_job(guarded, target)
    operator = signed_in(guarded, TOKEN)
    html = page(operator, guarded, f"/ui/jobs/{quote(job_id)}").text
    assert post_form(operator, guarded, f"/ui/jobs/{job_id}/replay", csrf=csrf_of(html)).status_code == 303
    wait_state(guarded, job_id, "dead")
    row = guarded.get("/v1/audit", headers=guarded.auth).json()["actions"][0]
    assert (row["action"], row["by"], row["via"]) == ("replay", "token", "console")
    cookie = operator.cookies.get("gq_session")
    out = post_form(operator, guarded, "/ui/sign-out", csrf=csrf_of(html))
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    stolen = requests.Session()
    stolen.cookies.set("gq_session", cookie)
    assert page(stolen, guarded, "/ui/").status_code == 303  # back to the sign-in


def test_the_console_can_be_turned_off(start_daemon):
    daemon = start_daemon(console={"enabled": False})
    assert daemon.get("/ui/").status_code == 404


@pytest.fixture(params=["memory", "journal", "redis"])
def any_broker(request, start_daemon, tmp_path):
    """A daemon on each broker: memory only, the journal, a Redis of its own."""
    if request.param == "memory":
        return start_daemon()
    if request.param == "journal":
        return start_daemon(journal={"path": "journal.sqlite3", "min_free_mb": 16})
    server = request.getfixturevalue("redis_server")
    return start_daemon(broker={"kind": "redis", "url": server.url})


def test_every_broker_serves_every_page_and_replays_from_it(any_broker, target):
    daemon = any_broker
    job_id = dead_job(daemon, target, ordering_key="orders-1")
    later = new_id("later")
    assert post_job(daemon, {"id": later, "url": target.url(), "run_at": FAR}).status_code == 202
    session = requests.Session()
    # Redis's counts are the fleet's, read every so often
    wait_for(lambda: '>1</span><span class="label">dead' in page(session, daemon, "/ui/").text,
             what="the overview to count the dead job")
    for path, shows in (("/ui/dead", job_id),
                        ("/ui/scheduled", later), ("/ui/jobs?key=orders-1", job_id),
                        (f"/ui/jobs?id={job_id[:8]}", job_id), ("/ui/destinations", "127.0.0.1"),
                        (f"/ui/jobs/{job_id}", "orders-1")):
        wait_for(lambda: (answer := page(session, daemon, path)).status_code == 200 and shows in answer.text,
                 what=f"{path} to show {shows}")
    for path in ("/ui/dead", "/ui/jobs?key=orders-1", f"/ui/jobs?id={job_id[:8]}"):
        assert later not in page(session, daemon, path).text, path
    html = page(session, daemon, f"/ui/jobs/{job_id}").text
    target.control("/_reset")
    assert post_form(session, daemon, f"/ui/jobs/{job_id}/replay", csrf=csrf_of(html)).status_code == 303
    wait_for(lambda: target.count() == 1, what="the replayed job to reach the target")
