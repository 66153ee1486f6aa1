"""URLs that parsers read differently are refused at intake, by a running daemon (that
intake, the host policy and the transport read the others alike: tests/unit/test_urls.py)."""

from __future__ import annotations

import pytest

AMBIGUOUS = {
    # urllib.parse reads the host after the "@", urllib3 (the transport) before the "\"
    "http://169.254.169.254\\@127.0.0.1/": "url: contains a backslash, which URL parsers read differently",
    "http://127.0.0.1:8000\\@a.allowed.test/": "url: contains a backslash, which URL parsers read differently",
    # urllib3 decodes it to 169.254.169.254; urllib.parse does not
    "http://%31%36%39.254.169.254/": "url: has a percent-encoded host",
    "http://ex%41mple.com/": "url: has a percent-encoded host",
}


@pytest.mark.parametrize("url", list(AMBIGUOUS))
def test_a_url_parsers_read_differently_is_refused_at_intake(start_daemon, target, url):
    daemon = start_daemon(target={"allowed_hosts": ["a.allowed.test", "127.0.0.1"]})
    response = daemon.post({"url": url})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": AMBIGUOUS[url], "field": "url"}
    assert target.count() == 0
