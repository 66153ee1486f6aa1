"""`gq echo`: the receiver for trying gq, run as a user runs it, with a real `gq run` sending to it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from gq.commands.echo import SHOWN_BODY, body_text
from support import Daemon, daemon_config, gq_command, post_job, run_gq, wait_for


class Echo:
    """A `gq echo` process; its stdout read as it comes."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(gq_command("echo", "--listen", "127.0.0.1:0", *args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert m, line + self.proc.stderr.read()
        self.url = m.group(1)
        self.out: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.out.append(line)

    def shown(self) -> str:
        return "".join(self.out)

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(sig)
        code = self.proc.wait(10)
        self._reader.join(5)
        return code, self.proc.stderr.read()


@pytest.fixture
def echo() -> Iterator[Echo]:
    e = Echo()
    yield e
    if e.proc.poll() is None:
        e.proc.kill()
        e.proc.wait()


def test_a_job_delivered_by_gq_run_is_printed_with_its_key_and_body(tmp_path, echo):
    daemon = Daemon(tmp_path, daemon_config())
    try:
        answer = post_job(daemon, {"id": "echo-1", "url": f"{echo.url}/hook?from=gq", "json": {"order": 17}})
        assert answer.status_code == 202, answer.text
        wait_for(lambda: "Idempotency-Key: echo-1" in echo.shown(), what="the echo to print the job")
        wait_for(lambda: echo.shown().count("\n\n") >= 1, what="the whole request")
    finally:
        daemon.stop()
    shown = echo.shown()
    assert "POST /hook?from=gq HTTP/1.1\n" in shown
    assert "Idempotency-Key: echo-1\n" in shown
    assert re.search(r"\nUser-Agent: gq/\S+\n", shown)
    assert '{\n  "order": 17\n}\n' in shown
    code, err = echo.stop()
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_exits_0_without_a_traceback(echo, sig):
    assert requests.get(f"{echo.url}/x", timeout=10).status_code == 200
    code, err = echo.stop(sig)
    assert code == 0
    assert "Traceback" not in err and "gq: " not in err, err


def test_status_and_delay_apply_to_concurrent_requests():
    e = Echo("--status", "503", "--delay", "1")
    try:
        answers: list[requests.Response] = []
        started = time.monotonic()
        threads = [threading.Thread(target=lambda: answers.append(
            requests.post(f"{e.url}/slow", data=b"x", timeout=10))) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - started
        assert [a.status_code for a in answers] == [503] * 5
        assert answers[0].json() == {"status": 503, "echo": "gq"}
        assert 1 <= took < 3, f"5 requests of 1 s took {took:.1f}s: not served at once"
    finally:
        code, _ = e.stop(signal.SIGTERM)
    assert code == 0


def test_a_port_in_use_is_a_usage_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        result = run_gq("echo", "--listen", listen)
    assert result.returncode == 2
    assert result.stderr == f"gq: echo: cannot listen on {listen}: address in use\n"


@pytest.mark.parametrize(("args", "error"), [
    (["--status", "42"], "gq: usage error: echo: --status must be an HTTP status from 200 to 599, got 42\n"),
    (["--delay", "-1"], "gq: usage error: echo: --delay must be seconds from 0 to 3600, got -1\n"),
    (["--listen", "nowhere"], 'gq: usage error: echo: --listen must be "HOST:PORT" with a port 0-65535, '
                              'got "nowhere"\n'),
])
def test_bad_options_are_usage_errors(args, error):
    result = run_gq("echo", *args)
    assert (result.returncode, result.stderr) == (2, error)


def test_a_body_is_shown_pretty_escaped_and_cut():
    assert body_text(b'{"a":[1]}') == '{\n  "a": [\n    1\n  ]\n}'
    assert body_text(b"plain\ttext\x1b[2J") == "plain\ttext\\x1b[2J"
    long = body_text(b"x" * (SHOWN_BODY + 10))
    assert long == "x" * SHOWN_BODY + f"\n… cut: 10 more characters ({SHOWN_BODY + 10} bytes in all)"
    assert json.loads(body_text(b'"\\u00e9"')) == "é"
