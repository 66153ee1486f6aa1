"""gq's log lines on stderr: plain text with a timestamp, or, on the stream systemd connects to
journald (JOURNAL_STREAM names it), each line led by its priority and without a timestamp.
tests/system/test_systemd.py reads the same lines back from a real journald."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from support import daemon_config, gq_command, to_toml, wait_for

# journald's priority for each level gq logs at.
PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


class Run:
    """One `gq run` with stderr in a file, through a succeeded job, a dead one, a refused
    reload and a drain."""

    def __init__(self, tmp_path: Path, target, journal_stream: str | None, fmt: str = "text"):
        config_path = tmp_path / "gq.toml"
        config_path.write_text(to_toml(daemon_config(log={"level": "debug", "format": fmt})))
        self.path = tmp_path / "gq.log"
        with open(self.path, "w") as log:
            info = os.fstat(log.fileno())
            env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
            if journal_stream is not None:
                env["JOURNAL_STREAM"] = journal_stream.format(this=f"{info.st_dev}:{info.st_ino}")
            proc = subprocess.Popen(gq_command("run", "-c", str(config_path)), cwd=tmp_path, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            api = wait_for(lambda: re.search(r"listening on (http://\S+)", self.path.read_text()),
                           what="gq to listen").group(1)
            jobs = [{"id": "fine", "url": target.url()}, {"id": "gone", "url": target.url(fail=1, fail_status=404)}]
            assert requests.post(f"{api}/v1/jobs", json=jobs, timeout=10).status_code == 202
            wait_for(lambda: "job gone dead" in self.text and "job fine succeeded" in self.text,
                     what="both jobs finished")
            config_path.write_text('[pool]\nsize = "ten"\n')
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload: the config is unchanged" in self.text, what="the reload refused")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, self.text
        finally:
            proc.kill()
            proc.wait()

    @property
    def text(self) -> str:
        return self.path.read_text()

    def lines(self) -> list[str]:
        return self.text.splitlines()


def test_on_journalds_stream_each_line_leads_with_its_priority_and_no_timestamp(tmp_path, target):
    run = Run(tmp_path, target, journal_stream="{this}")
    seen = set()
    for line in run.lines():
        m = re.fullmatch(r"<(\d)>(DEBUG|INFO|WARNING|ERROR|CRITICAL) gq(\.\w+)*: (.*)", line)
        assert m, f"not a journald line: {line!r}"
        assert int(m.group(1)) == PRIORITY[m.group(2)], line
        assert not re.match(STAMP, m.group(4)), line
        seen.add(m.group(2))
    assert seen == {"DEBUG", "INFO", "WARNING", "ERROR"}, run.text
    assert "<3>ERROR gq: reload: config error: " in run.text
    assert "<6>INFO gq: gq " in run.text and "ready: listening on" in run.text


@pytest.mark.parametrize("journal_stream", [None, "0:0", "{this}x"], ids=["unset", "other", "malformed"])
def test_elsewhere_lines_keep_their_timestamp_and_carry_no_prefix(tmp_path, target, journal_stream):
    # "other": systemd's stream, but the service sent stderr somewhere else.
    run = Run(tmp_path, target, journal_stream)
    assert run.lines() and all(re.match(STAMP + r"(DEBUG|INFO|WARNING|ERROR) gq", line) for line in run.lines()), \
        run.text


def test_json_lines_stay_json_under_journald(tmp_path, target):
    run = Run(tmp_path, target, journal_stream="{this}", fmt="json")
    assert run.lines() and all(line.startswith('{"ts": "') for line in run.lines()), run.text
