"""The HTTP worker in process, with no target: what an attempt's error may say (against a
real target: tests/process/test_transport.py)."""

from __future__ import annotations

from gq.core.job import Job
from gq.delivery.transport import HttpWorker


def job(url: str, **headers: str) -> Job:
    return Job("j1", "POST", url, dict(headers))


def test_an_error_built_from_the_url_never_shows_its_password():
    # requests refuses this URL and quotes it whole in its error (intake refuses it too:
    # this is the transport's own line of defence).
    result = HttpWorker(1).attempt(job("http://\\user:s3cretPASS@127.0.0.1:1/x"), 5.0)
    assert result.error, result
    assert "s3cretPASS" not in result.error and "<redacted>" in result.error, result.error
