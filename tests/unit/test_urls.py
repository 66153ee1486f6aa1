"""One URL reading: intake, the host policy and the transport read a job's URL alike (URLs
that parsers read differently are refused at intake: tests/process/test_urls_at_intake.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from gq.core.hosts import HostPatterns, HostPolicy, url_host
from gq.core.job import parse
from gq.errors import JobError


def transport_host(url: str) -> str:
    """The host requests and urllib3 connect to for `url`, as HttpWorker prepares it."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return (parse_url(prepared.url).host or "").strip("[]").rstrip(".")


AUTHORITY = st.text(alphabet="ab1.:@%[]\\/?#-_~!$&'()*+,;=09é", max_size=24)


@settings(max_examples=400, deadline=None)
@given(AUTHORITY)
def test_a_url_intake_accepts_is_read_alike_by_intake_the_policy_and_the_transport(authority):
    url = f"http://{authority}/path"
    try:
        job = parse({"url": url})
    except JobError:
        return  # refused: nothing to compare
    host = url_host(job.url)
    assert host == transport_host(job.url), url
    other = (urlsplit(job.url).hostname or "").encode("idna").decode().rstrip(".")
    assert host == other, url


def test_the_policy_judges_the_host_the_transport_connects_to():
    # "a.allowed.test" is allowed; a URL whose transport host is another is refused, whatever
    # another parser would have read.
    policy = HostPolicy(HostPatterns.parse(["a.allowed.test"]))
    assert parse({"url": "http://a.allowed.test/x"}, policy=policy).url == "http://a.allowed.test/x"
    with pytest.raises(JobError, match="not in target.allowed_hosts"):
        parse({"url": "http://x@a.allowed.test@127.0.0.1/"}, policy=policy)
