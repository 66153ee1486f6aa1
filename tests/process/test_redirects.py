"""gq never follows a redirect, to a forbidden address or anywhere: the answer itself is the
attempt's result.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from support import final_state, new_id, post_job


class Recorder(ThreadingHTTPServer):
    """A target on a thread: /redirect/CODE?to=URL answers that redirect; records every request."""

    daemon_threads = True

    def __init__(self):
        self.seen: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _RecorderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        url = urlsplit(self.path)
        self.server.seen.append((self.command, url.path))
        if url.path.startswith("/redirect/"):
            self.send_response(int(url.path.split("/")[2]))
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _any

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def recorder():
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("code,to", [(302, "http://169.254.169.254/latest/meta-data/iam/"),
                                     (301, "{base}/followed"), (302, "{base}/followed"), (303, "{base}/followed"),
                                     (307, "{base}/followed"), (308, "{base}/followed")])
def test_redirects_are_not_followed(gq, recorder, code, to):
    job_id = new_id(f"redirect{code}")
    location = to.format(base=recorder.base)
    response = post_job(gq, {"id": job_id, "url": f"{recorder.base}/redirect/{code}?to={quote(location, safe='')}",
                             "body": "payload"})
    assert response.status_code == 202, response.text
    job = final_state(gq, job_id)
    assert job["state"] == "dead" and job["attempts"] == 1 and job["last_status"] == code, job
    assert ("POST", "/followed") not in recorder.seen and ("GET", "/followed") not in recorder.seen
