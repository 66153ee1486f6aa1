"""The bearer token: where it comes from (api.token, api.token_file, systemd credentials),
what a request must send, and the listeners that may not run without one.
"""

from __future__ import annotations

import json
import re
import secrets as secrets_
import signal
import socket
import subprocess
import sys

import pytest
import requests

from support import Daemon, daemon_config, run_gq, to_toml, wait_for


def _jobs_status(daemon: Daemon, target, authorization: str | None, **extra) -> int:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return requests.post(f"{daemon.api}/v1/jobs", data=json.dumps({"url": target.url("/tok")}),
                         headers=headers, timeout=10, **extra).status_code


def _token_outcomes(daemon: Daemon, target, token: str) -> None:
    assert _jobs_status(daemon, target, None) == 401
    assert _jobs_status(daemon, target, "Bearer wrong") == 401
    assert _jobs_status(daemon, target, f"Bearer {token[:-1]}") == 401
    assert _jobs_status(daemon, target, f"Bearer {token}x") == 401
    assert _jobs_status(daemon, target, f"Basic {token}") == 401
    assert _jobs_status(daemon, target, token) == 401
    assert _jobs_status(daemon, target, f"Bearer {token}") == 202
    assert _jobs_status(daemon, target, f"bearer {token}") == 202


def test_token_file_gives_the_token(start_daemon, shared_target, tmp_path):
    token = secrets_.token_urlsafe(24)
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    daemon = start_daemon(api={"token_file": str(path)})
    _token_outcomes(daemon, shared_target, token)
    assert "other users" not in daemon.log() and token not in daemon.log()


def test_a_relative_token_file_is_read_from_credentials_directory(start_daemon, shared_target, tmp_path):
    token = secrets_.token_urlsafe(24)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "gq-token").write_text(token)
    (credentials / "gq-token").chmod(0o400)
    daemon = start_daemon(api={"token_file": "gq-token"}, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    _token_outcomes(daemon, shared_target, token)


def test_a_token_file_others_can_read_is_warned_about(start_daemon, shared_target, tmp_path):
    token = secrets_.token_urlsafe(24)
    path = tmp_path / "readable-token"
    path.write_text(token)
    path.chmod(0o644)
    daemon = start_daemon(api={"token_file": str(path)})
    warnings = [line for line in daemon.log().splitlines() if "WARNING" in line and str(path) in line]
    assert warnings, daemon.log()
    assert token not in daemon.log()
    _token_outcomes(daemon, shared_target, token)


@pytest.mark.parametrize("content", [None, "", " \n\t\n"])
def test_a_missing_or_empty_token_file_is_a_config_error(tmp_path, content):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    config = tmp_path / "gq.toml"
    config.write_text(to_toml(daemon_config(api={"token_file": str(path)})))
    result = run_gq("run", "-c", str(config), timeout=20)
    assert result.returncode == 2, result
    assert result.stderr.startswith("gq: ") and "api.token_file" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0"])
def test_a_non_loopback_listen_without_a_token_is_refused(tmp_path, listen):
    config = tmp_path / "gq.toml"
    config.write_text(to_toml(daemon_config(api={"listen": listen})))
    result = run_gq("run", "-c", str(config), timeout=20)
    assert result.returncode == 2, result
    assert result.stderr.startswith("gq: ") and "api.token" in result.stderr


def test_a_non_loopback_socket_from_systemd_without_a_token_is_refused(tmp_path):
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    config = tmp_path / "gq.toml"
    config.write_text(to_toml(daemon_config()))
    fd = listener.fileno()
    try:
        wrapper = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                   "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
                   "os.execv(sys.executable, [sys.executable, '-m', 'gq', 'run', '-c', sys.argv[2]])")
        result = subprocess.run([sys.executable, "-c", wrapper, str(fd), str(config)], pass_fds=(fd,),
                                capture_output=True, text=True, timeout=20)
    finally:
        listener.close()
    assert result.returncode == 2, result
    assert "api.token" in result.stderr


def test_a_reload_cannot_drop_the_token_of_a_non_loopback_listener(start_daemon, shared_target):
    """The listen address cannot change live: a reloaded file that drops the token while moving
    the listen address to loopback would leave the old, public listener open to anyone."""
    token = secrets_.token_urlsafe(16)
    daemon = start_daemon(api={"listen": "0.0.0.0:0", "token": token})
    daemon.api = daemon.api.replace("0.0.0.0", "127.0.0.1")
    assert _jobs_status(daemon, shared_target, None) == 401
    daemon.config_path.write_text(to_toml(daemon_config(api={"listen": "127.0.0.1:0"})))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: re.search(r"reload: (applied|nothing changed|the config is unchanged)", daemon.log()),
             what="the reload")
    assert re.search(r"reload: config error: .*api\.token: required", daemon.log()), daemon.log()
    listening = [line for line in daemon.log().splitlines() if "listening on" in line]
    assert "0.0.0.0" in listening[0]
    status = _jobs_status(daemon, shared_target, None)
    assert status == 401, (f"after SIGHUP with a file without api.token (listen moved to 127.0.0.1, kept at "
                           f"0.0.0.0 until a restart), POST /v1/jobs without a token on 0.0.0.0 gets {status}")
