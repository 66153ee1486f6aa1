"""Jobs aimed at forbidden addresses (cloud metadata, link-local, their many spellings) are
refused at intake, or, where the spelling passes intake, never reach the address.
"""

from __future__ import annotations

import json

import pytest

from support import exchange, final_state, new_id, records, rejected

FORBIDDEN_URLS = ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://[fe80::1%25lo]/",
                  "http://[::ffff:169.254.169.254]/", "http://[::ffff:a9fe:a9fe]/", "http://2852039166/",
                  "http://0xa9.0xfe.0xa9.0xfe/", "http://0xA9FEA9FE/", "http://0251.0376.0251.0376/",
                  "http://169.254.43518/", "http://169.254.169.254:80/", "http://user:pw@169.254.169.254/",
                  "HTTP://169.254.169.254/", "http://100.100.100.200/", "http://[fd00:ec2::254]/",
                  "https://169.254.169.254/"]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_forbidden_addresses_are_refused_at_intake(gq, url):
    before = rejected(gq, "invalid")
    answer = exchange(gq.api, json.dumps({"url": url}).encode(), "application/json")
    assert answer.status == 400, f"{url}: {answer}"
    assert answer.json()["error"].startswith("url") and answer.json().get("field") == "url", answer
    assert rejected(gq, "invalid") == before + 1


@pytest.mark.parametrize("url", ["http://169.254.169.254./", "http://169.254.169.254\\@127.0.0.1:{port}/x",
                                 "http://[::169.254.169.254]/", "http://[64:ff9b::a9fe:a9fe]/"])
def test_odd_spellings_of_a_forbidden_address_never_reach_it(gq, shared_target, url):
    """Refused at intake; or accepted, never delivered, and dead: refused at connect time, or
    (where this machine has no route or no such name) failing to connect."""
    job_id = new_id("odd")
    answer = exchange(gq.api, json.dumps({"id": job_id, "url": url.format(port=shared_target.port),
                                          "max_attempts": 1, "timeout": 2}).encode(), "application/json")
    if answer.status == 400:
        return
    assert answer.status == 202, answer
    job = final_state(gq, job_id)
    assert job["state"] == "dead", job
    error = job["last_error"] or ""
    assert (job["attempts"] == 1 and error.startswith("refused:")) or error.startswith(("connect:", "timeout:")), job
    assert not records(shared_target, job_id)
