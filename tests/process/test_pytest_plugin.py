"""gq's pytest plugin (gq/pytest_plugin.py), as an application's test session uses it: its
example test file (the one docs/client.md shows) run with pytester in a pytest of its own."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from support import ROOT

pytest_plugins = ["pytester"]

EXAMPLE = ROOT / "tests" / "support" / "plugin_example.py"
DOCS = ROOT / "docs" / "client.md"


def test_the_docs_show_the_example_file_as_it_is():
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert EXAMPLE.read_text() in blocks


def test_the_example_runs_green_in_an_application_s_session(pytester):
    pytester.makepyfile(test_app=EXAMPLE.read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("passed"), outcomes.get("failed")) == (4, None), result.stdout.str()


def test_loading_the_plugin_imports_neither_gevent_nor_requests():
    # An application's session may patch with gevent later, or never use it.
    code = "import sys, gq.pytest_plugin; print(sorted({'gevent', 'requests'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout == "[]\n"


def test_the_fixtures_clean_up(pytester, monkeypatch):
    pytester.makepyfile(test_app='''
        import json
        import os

        def test_unasked():
            pass

        def test_asked(gq_daemon, gq_receiver, tmp_path):
            assert gq_daemon.config_path.read_text().startswith("[")
            assert str(tmp_path) in gq_daemon.config_path.read_text()  # the journal is the test's
            status = gq_daemon.client.status()
            assert status["draining"] is False
            with open(os.environ["RECORD"], "w") as f:
                json.dump({"pid": gq_daemon.proc.pid, "api": gq_daemon.api, "receiver": gq_receiver.url}, f)
    ''')
    record = pytester.path / "record.json"
    monkeypatch.setenv("RECORD", str(record))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    seen = json.loads(record.read_text())
    assert not Path(f"/proc/{seen['pid']}").exists()  # gq was killed and waited for
    for url in (seen["api"], seen["receiver"]):
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as s:  # the port is free again: a server can listen on it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))


def test_a_gq_config_of_the_application_s_own_is_used(pytester):
    pytester.makeconftest('''
        import pytest

        @pytest.fixture
        def gq_config():
            return {"api": {"token": "app-token"}, "pool": {"size": 3}}
    ''')
    pytester.makepyfile(test_app='''
        import pytest
        from gq import Client, Refused

        def test_token(gq_daemon):
            assert gq_daemon.client.status()["pool_size"] == 3   # the fixture's client has the token
            with pytest.raises(Refused) as refused:
                Client(gq_daemon.api, token="wrong").status()
            assert refused.value.status == 401
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
