"""The console in a real browser (headless Chromium, tests/support/browser.py), used as a person uses
it: sign in, find a dead job by filter and by id prefix, read its payload and attempts, replay
it and see the target receive it, a bulk replay after its count, a viewer refused, a change
without the CSRF token refused, nothing asked of any origin but gq's, the page's policy, local
times, refresh in place, phone width and dark mode. Each page is saved as a screenshot
($GQ_SCREENSHOTS: docs/images/ are made so)."""

from __future__ import annotations

import json

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from support import TOKEN, Daemon, fetch, final_state, new_id, post_job, wait_for
from support.browser import (
    cookies,
    desktop,
    loaded,
    origin,
    phone,
    requested_origins,
    resource_origins,
    screenshot,
    wait_until,
)

READ_TOKEN = "v13wer-token"
FAR = 4102444800  # 2100-01-01: a scheduled job that never comes due in a test
ORDER = {"order": 4127, "customer": "c-981", "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
         "note": "<img src=x onerror=alert(1)>"}


SECTIONS = {"api": {"token": TOKEN, "read_token": READ_TOKEN},
            "journal": {"path": "journal.sqlite3", "min_free_mb": 16}, "console": {"refresh": 1.0}}


@pytest.fixture
def daemon(start_daemon):
    started = start_daemon(**SECTIONS)
    started.auth = {"Authorization": f"Bearer {TOKEN}"}
    return started


def dead_job(daemon: Daemon, target, prefix: str = "order", **extra) -> str:
    """A job the target refuses once with 404 (dead at once), and accepts when replayed."""
    job_id = new_id(prefix)
    job = {"id": job_id, "url": target.url("/orders", fail=1, fail_status=404), "json": ORDER,
           "headers": {"Authorization": "Bearer target-secret", "X-Tenant": "acme"}, **extra}
    assert post_job(daemon, job).status_code == 202
    assert final_state(daemon, job_id)["state"] == "dead"
    return job_id


def sign_in(driver, daemon: Daemon, token: str, path: str = "/ui/") -> None:
    driver.get(f"{daemon.api}{path}")
    wait_until(driver, lambda d: "/ui/sign-in" in d.current_url, "the sign-in page")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    field.send_keys(Keys.ENTER)
    wait_until(driver, lambda d: "/ui/sign-in" not in d.current_url and loaded(d), "signed in")


def state(daemon: Daemon, job_id: str) -> str:
    return fetch(daemon, f"/v1/jobs/{job_id}").json()["state"]


def delivered(target, job_id: str) -> list[dict]:
    return [r for r in target.received() if r["key"] == job_id]


def test_an_operator_signs_in_finds_a_dead_job_reads_it_and_replays_it(browser, daemon, target):
    job_id = dead_job(daemon, target, ordering_key="customer-981")
    other = dead_job(daemon, target, prefix="other")
    sign_in(browser, daemon, TOKEN, "/ui/dead")
    session = cookies(browser)["gq_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""

    # By filter: the state
    browser.get(f"{daemon.api}/ui/jobs")
    Select(browser.find_element(By.NAME, "state")).select_by_value("dead")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait_until(browser, lambda d: "state=dead" in d.current_url, "the filtered list")
    wait_until(browser, lambda d: {a.text for a in d.find_elements(By.CSS_SELECTOR, "table.jobs tbody th a")}
               == {job_id, other}, "both dead jobs listed")
    screenshot(browser, "console-jobs")

    # By id prefix, typed after "/" (the keyboard's way to the search)
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    search = browser.switch_to.active_element
    assert search.get_attribute("name") == "id"
    search.send_keys(job_id[:12], Keys.ENTER)
    listed = (By.CSS_SELECTOR, "table.jobs tbody th a")
    wait_until(browser, lambda d: "id=" in d.current_url and loaded(d)
               and [a.text for a in d.find_elements(*listed)] == [job_id], "the list by id prefix")
    browser.find_element(*listed).click()

    wait_until(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Job"), "the job's page")
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "Why it failed" in text and "permanent status 404" in text
    payload = json.loads(browser.find_element(By.CSS_SELECTOR, "pre.payload").text)
    assert payload == ORDER  # the markup in it shown as text, never run
    assert "target-secret" not in browser.page_source and "acme" in text
    history = browser.find_elements(By.CSS_SELECTOR, "table.history tbody tr")
    assert len(history) == 1 and "404" in history[0].text and "fail" in history[0].text
    assert "customer-981" in text
    screenshot(browser, "console-job")

    browser.find_element(By.XPATH, "//button[text()='Replay']").click()
    wait_until(browser, lambda d: "done=replayed" in d.current_url, "the replay's answer")
    assert "Replayed." in browser.find_element(By.CSS_SELECTOR, ".notice").text
    assert final_state(daemon, job_id)["state"] == "succeeded"
    received = delivered(target, job_id)
    assert len(received) == 2 and json.loads(received[-1]["body"]) == ORDER
    assert received[-1]["headers"]["authorization"] == "Bearer target-secret"


def test_a_job_gq_died_during_says_at_the_top_that_it_may_have_been_delivered(browser, daemon, start_daemon, target):
    job_id = new_id("held")
    assert post_job(daemon, {"id": job_id, "url": target.url("/orders", gate="held"), "timeout": 60}).status_code == 202
    wait_for(lambda: len(delivered(target, job_id)) == 1, what="the attempt in flight")
    daemon.proc.kill()  # kill -9 while the target holds the attempt
    daemon.wait()
    target.control("/_open?gate=held")
    restarted = start_daemon(**SECTIONS)
    restarted.auth = daemon.auth
    assert final_state(restarted, job_id)["state"] == "succeeded" and len(delivered(target, job_id)) == 2

    sign_in(browser, restarted, TOKEN, f"/ui/jobs/{job_id}")
    wait_until(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Job"), "the job's page")
    first = browser.find_element(By.CSS_SELECTOR, "main section")
    assert first.get_attribute("class") == "maybe", "the first thing the page says"
    assert first.text.startswith("May have been delivered\n1 attempt of unknown outcome: gq stopped during it")
    history = browser.find_elements(By.CSS_SELECTOR, "table.history tbody tr")
    assert ["may have been delivered" in row.text for row in history] == [True, False]
    screenshot(browser, "console-job-unknown")


def test_a_bulk_replay_shows_its_count_first_then_replays_every_job(browser, daemon, target):
    jobs = {dead_job(daemon, target) for _ in range(3)}
    sign_in(browser, daemon, TOKEN, "/ui/dead")
    # the page refreshes itself until the journal's file lists all three
    wait_until(browser, lambda d: {a.text for a in d.find_elements(By.CSS_SELECTOR, "table.jobs tbody th a")} == jobs,
               "the three dead letters listed")
    browser.find_element(By.PARTIAL_LINK_TEXT, "Replay every job that matches").click()
    wait_until(browser, lambda d: "/ui/confirm" in d.current_url, "the confirmation")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Replay 3 jobs?"
    screenshot(browser, "console-confirm")
    assert not any(len(delivered(target, j)) > 1 for j in jobs)  # nothing before the confirmation
    browser.find_element(By.XPATH, "//button[text()='Replay 3 jobs']").click()
    wait_until(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Replayed 3 jobs", "the summary")
    wait_for(lambda: all(len(delivered(target, j)) == 2 for j in jobs), what="the target to receive all three")


def test_a_viewer_sees_the_job_and_cannot_change_it(browser, daemon, target):
    job_id = dead_job(daemon, target)
    sign_in(browser, daemon, READ_TOKEN, f"/ui/jobs/{job_id}")
    assert "viewer" in browser.find_element(By.TAG_NAME, "header").text
    assert json.loads(browser.find_element(By.CSS_SELECTOR, "pre.payload").text) == ORDER
    assert browser.find_elements(By.XPATH, "//button[text()='Replay']") == []
    # The form the page does not offer, posted anyway with the viewer's own CSRF token.
    csrf = browser.find_element(By.NAME, "csrf").get_attribute("value")
    post_from_page(browser, f"/ui/jobs/{job_id}/replay", {"csrf": csrf})
    wait_until(browser, lambda d: "read token" in d.find_element(By.TAG_NAME, "main").text, "the refusal")
    screenshot(browser, "console-viewer-refused")
    assert state(daemon, job_id) == "dead" and len(delivered(target, job_id)) == 1


def post_from_page(driver, path: str, fields: dict[str, str]) -> None:
    """Submit a form the page did not have, as a forged or hand-made request would
    (Selenium's script runs beside the page's policy, as a browser extension's would)."""
    driver.execute_script("""
        const form = document.createElement("form");
        form.method = "post"; form.action = arguments[0];
        for (const [name, value] of Object.entries(arguments[1])) {
          const input = document.createElement("input");
          input.type = "hidden"; input.name = name; input.value = value; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();""", path, fields)


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(browser, daemon, target):
    job_id = dead_job(daemon, target)
    sign_in(browser, daemon, TOKEN, f"/ui/jobs/{job_id}")
    for fields in ({}, {"csrf": "forged"}):
        post_from_page(browser, f"/ui/jobs/{job_id}/replay", fields)
        wait_until(browser, lambda d: "nothing was changed" in d.find_element(By.TAG_NAME, "main").text,
                   "the refusal")
    post_from_page(browser, "/ui/bulk", {"action": "replay", "state": "dead"})
    wait_until(browser, lambda d: "nothing was changed" in d.find_element(By.TAG_NAME, "main").text, "the refusal")
    assert state(daemon, job_id) == "dead" and len(delivered(target, job_id)) == 1


def test_no_page_asks_any_origin_but_gqs_and_the_policy_stops_inline_script(browser, daemon, target):
    job_id = dead_job(daemon, target)
    later = new_id("later")
    assert post_job(daemon, {"id": later, "url": target.url(), "run_at": FAR}).status_code == 202
    sign_in(browser, daemon, TOKEN)
    requested_origins(browser)  # from here on
    gq = origin(daemon.api)
    for path in ("/ui/", "/ui/jobs", "/ui/dead", "/ui/scheduled", "/ui/destinations", "/ui/audit", f"/ui/jobs/{job_id}",
                 f"/ui/jobs/{later}", "/ui/confirm?action=replay&state=dead"):
        browser.get(f"{daemon.api}{path}")
        wait_until(browser, loaded, f"{path} to load")
        assert resource_origins(browser) == {gq}, path
    assert requested_origins(browser) == {gq}
    # The console's own script ran (times rewritten); one put inline in the page does not run.
    browser.execute_script("""
        const s = document.createElement("script");
        s.textContent = "window.injected = true";
        document.body.appendChild(s);""")
    assert browser.execute_script("return window.injected === undefined")
    answer = requests.get(f"{daemon.api}/ui/sign-in", timeout=10)
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


def test_times_are_shown_in_the_browsers_zone(browser, daemon, target):
    job_id = dead_job(daemon, target)
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Kolkata"})
    sign_in(browser, daemon, TOKEN, f"/ui/jobs/{job_id}")
    accepted = browser.find_element(By.CSS_SELECTOR, ".facts time")
    wait_until(browser, lambda d: "GMT+5:30" in accepted.text, "the accepted time in the browser's zone")
    assert "UTC" not in accepted.text and "ago" in accepted.get_attribute("title")


def test_a_page_refreshes_in_place_and_can_be_paused(browser, daemon, target):
    sign_in(browser, daemon, TOKEN)
    browser.execute_script("window.stayed = true")  # gone if the page were loaded again
    dead_tile = (By.CSS_SELECTOR, "a.tile[href='/ui/jobs?state=dead'] .figure")
    assert browser.find_element(*dead_tile).text == "0"
    dead_job(daemon, target)
    wait_until(browser, lambda d: d.find_element(*dead_tile).text == "1", "the overview to count the dead job")
    assert browser.execute_script("return window.stayed === true")
    pause = browser.find_element(By.ID, "pause")
    pause.click()
    assert pause.get_attribute("aria-pressed") == "true" and pause.text == "Resume refresh"
    browser.refresh()
    wait_until(browser, loaded, "the page")
    assert browser.find_element(By.ID, "pause").get_attribute("aria-pressed") == "true"  # kept for the tab


def test_phone_width_and_dark_mode(browser, daemon, target):
    job_id = dead_job(daemon, target)
    for n in range(4):
        post_job(daemon, {"id": new_id("ok"), "url": target.url("/orders"), "json": {"n": n}})
    sign_in(browser, daemon, TOKEN)
    phone(browser)
    for path, name in (("/ui/", "console-phone-overview"), (f"/ui/jobs/{job_id}", "console-phone-job"),
                       ("/ui/dead", "console-phone-dead")):
        browser.get(f"{daemon.api}{path}")
        wait_until(browser, loaded, path)
        # Nothing wider than the screen but the tables, which scroll in their own box.
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), path
        screenshot(browser, name)
    desktop(browser)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    browser.get(f"{daemon.api}/ui/jobs/{job_id}")
    wait_until(browser, loaded, "the job's page")
    background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 24)"
    screenshot(browser, "console-dark-job")


def test_the_overview_for_the_readme(browser, daemon, target):
    """The overview of docs/images/: deliveries and failures in the chart, a dead letter, a scheduled job."""
    for n in range(40):
        post_job(daemon, {"id": new_id("ok"), "url": target.url("/orders"), "json": {"n": n}})
    for n in range(6):
        post_job(daemon, {"id": new_id("flaky"), "url": target.url("/billing", fail=2), "json": {"n": n}})
    dead_job(daemon, target)
    post_job(daemon, {"id": new_id("later"), "url": target.url("/reports"), "run_at": FAR})
    wait_for(lambda: target.count() >= 40 + 6 * 3 + 1, what="the jobs to be delivered")
    sign_in(browser, daemon, TOKEN)
    wait_until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "a.tile[href='/ui/jobs?state=dead'] .figure")
               .text == "1", "the overview's counts")
    chart = browser.find_element(By.CSS_SELECTOR, "svg.chart")
    assert chart.get_attribute("aria-label").startswith("Last hour: 46 delivered, 13 failed")
    assert "127.0.0.1" in browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=hosts]").text
    screenshot(browser, "console-overview")
