"""The README's quick start, run as a newcomer runs it: `gq echo` in one terminal, `gq run` in
another, the curl in a third, and `gq jobs list`; the job arrives at the echo, and the list
shows it succeeded. The commands are read from the README itself, ports included: a README
that drifts from gq fails here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from support import ROOT, wait_for

API = "http://127.0.0.1:8765"


def quick_start_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("**Tests.**", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def free(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    except requests.ConnectionError:
        return True
    return False


# A newcomer's shell: none of gq's variables set.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GQ_")}


def start(command: str, cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", f"exec {command.strip()}"], cwd=cwd, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env={**ENV, "PYTHONUNBUFFERED": "1"})


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30, env=ENV)


def test_the_quick_start_delivers_a_job_to_the_echo_and_lists_it(tmp_path):
    install, echo, run, submit = quick_start_blocks()[:4]
    assert "pip install -e ." in install and echo.strip() == ".venv/bin/gq echo" and run.strip() == ".venv/bin/gq run"
    for port in (8765, 9000):
        assert free(port), f"port {port}, which the quick start uses, is taken on this machine"
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the venv the tests run in
    processes = []
    try:
        processes.append(echo_proc := start(echo, tmp_path, tmp_path / "echo.log"))
        processes.append(start(run, tmp_path, tmp_path / "run.log"))
        wait_for(lambda: not free(8765) and requests.get(f"{API}/readyz", timeout=2).ok, what="gq run to be ready")
        curl, listing = [line.split("#")[0].strip() for line in " ".join(submit.split("\\\n")).splitlines()]
        answer = shell(curl, tmp_path)
        assert answer.returncode == 0 and '"id"' in answer.stdout, answer
        def echoed() -> str | None:
            text = (tmp_path / "echo.log").read_text()
            return text if "Idempotency-Key" in text else None
        shown = wait_for(echoed, what="the job to reach gq echo")
        assert re.search(r"POST /hook HTTP/1\.1", shown) and '"hello": "world"' in shown
        listed = wait_for(lambda: out.stdout if "succeeded" in (out := shell(listing, tmp_path)).stdout else None,
                          what="gq jobs list to show the job succeeded")
        assert re.search(r"succeeded\s+1\s+200", listed), listed
        assert echo_proc.poll() is None
    finally:
        for proc in processes:
            proc.send_signal(signal.SIGTERM)
        for proc in processes:
            try:
                assert proc.wait(30) == 0, f"{proc.args} exited with {proc.returncode}"
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"{proc.args} did not stop on SIGTERM")
