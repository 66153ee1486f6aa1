"""Every command of the real CLI: exit codes, what it prints, what the target receives."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from support import TOKEN, Daemon, closed_port, daemon_config, gq_command, run_gq, start_target, to_toml, wait_for

LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ gq")

# The config of CONTRACT.md: every section, key and default.
CONTRACT_CONFIG = {
    "queue": {"maxsize": 1000, "enqueue_timeout": 1.0},
    "pool": {"size": 100},
    "api": {"listen": "127.0.0.1:8765", "token": "", "max_body_bytes": 1048576},
    "target": {"url": "", "timeout": 10.0, "allowed_hosts": []},
    "retry": {"max_attempts": 5, "backoff_base": 0.5, "backoff_max": 60.0},
    "journal": {"path": "gq-data/journal.sqlite3"},
    "shutdown": {"drain_timeout": 30.0},
    "broker": {"kind": "embedded", "url": "redis://127.0.0.1:6379/0"},
    "log": {"level": "info", "format": "text"},
}


# -- helpers

def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any GQ_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GQ_")}
    return {**env, **extra}


def gq(*args: str, cwd: Path | None = None, input: str | None = None, **env: str):
    return run_gq(*args, cwd=cwd, input=input, env=clean_env(**env), timeout=60)


def one_error(result: subprocess.CompletedProcess, start: str) -> str:
    """The single stderr line besides log records, which must start with `start`; no traceback."""
    lines = [line for line in result.stderr.splitlines() if not LOG_RECORD.match(line)]
    assert len(lines) == 1 and lines[0].startswith(start), result.stderr
    return lines[0]


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    path.write_text(to_toml(daemon_config(**sections)))
    return path


def write_jobs(path: Path, jobs: list[Any]) -> Path:
    path.write_text("".join((j if isinstance(j, str) else json.dumps(j)) + "\n" for j in jobs))
    return path


def summary(result: subprocess.CompletedProcess) -> dict[str, Any]:
    lines = result.stdout.splitlines()
    assert lines, result.stderr
    return json.loads(lines[-1])


def port_of(daemon: Daemon) -> int:
    return int(daemon.api.rsplit(":", 1)[1])


# -- --version and check-config

def test_version():
    result = gq("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, "gq 0.1.0\n", "")


def _assert_contract_keys(printed: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> None:
    for section, defaults in CONTRACT_CONFIG.items():
        expected = {**defaults, **overrides.get(section, {})}
        assert {k: printed[section].get(k, "<missing>") for k in expected} == expected, section


def test_check_config_without_a_file_prints_every_default(tmp_path):
    result = gq("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _assert_contract_keys(tomllib.loads(result.stdout), {})


@pytest.mark.parametrize("given_by", ["flag", "env", "flag over env"])
def test_check_config_with_a_valid_file(tmp_path, given_by):
    good = tmp_path / "good.toml"
    good.write_text('[pool]\nsize = 7\n[log]\nformat = "json"\n'
                    '[target]\nallowed_hosts = ["127.0.0.1"]\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("[pool]\nsize = 0\n")
    args, env = {"flag": (["-c", str(good)], {}),
                 "env": ([], {"GQ_CONFIG": str(good)}),
                 "flag over env": (["-c", str(good)], {"GQ_CONFIG": str(bad)})}[given_by]
    result = gq("check-config", *args, cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    _assert_contract_keys(tomllib.loads(result.stdout), {
        "pool": {"size": 7}, "log": {"format": "json"}, "target": {"allowed_hosts": ["127.0.0.1"]}})


def test_config_error_is_the_contracts_line(tmp_path):
    (tmp_path / "gq.toml").write_text('[pool]\nsize = "ten"\n')
    result = gq("check-config", "-c", "gq.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == 'gq: config error: gq.toml: pool.size: must be an integer >= 1, got "ten"\n'
    assert result.stdout == ""


# TOML text → the keys its problems name, one stderr line each
INVALID_CONFIGS = {
    "wrong type": ('[queue]\nenqueue_timeout = "soon"\n', ["queue.enqueue_timeout"]),
    "unknown key": ("[pool]\nsise = 3\n", ["pool.sise"]),
    "unknown section": ("[pools]\nsize = 3\n", ["pools"]),
    "bad choice": ('[log]\nlevel = "loud"\n', ["log.level"]),
    "bad listen": ('[api]\nlisten = "nowhere"\n', ["api.listen"]),
    "non-loopback listen without a token": ('[api]\nlisten = "0.0.0.0:8765"\n', ["api.token"]),
    "three problems": ('[pool]\nsize = -1\n[retry]\nmax_attempts = 1.5\n[log]\nformat = "xml"\n',
                       ["pool.size", "retry.max_attempts", "log.format"]),
}


@pytest.mark.parametrize("case, given_by", [(case, "flag") for case in INVALID_CONFIGS]
                         + [("three problems", "env")])
def test_check_config_rejects_an_invalid_file(tmp_path, case, given_by):
    text, keys = INVALID_CONFIGS[case]
    path = tmp_path / "broken.toml"
    path.write_text(text)
    args, env = (["-c", str(path)], {}) if given_by == "flag" else ([], {"GQ_CONFIG": str(path)})
    result = gq("check-config", *args, cwd=tmp_path, **env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(keys), result.stderr
    for line, key in zip(lines, keys):
        assert line.startswith(f"gq: config error: {path}: {key}: "), line


@pytest.mark.parametrize("content", [None, "[pool\nsize = 1\n"], ids=["missing", "not TOML"])
def test_check_config_with_a_missing_or_unparsable_file(tmp_path, content):
    path = tmp_path / "gq.toml"
    if content is not None:
        path.write_text(content)
    result = gq("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    one_error(result, f"gq: config error: {path}: ")


@pytest.mark.parametrize("command", [["run"], ["batch", "jobs.jsonl"]], ids=" ".join)
def test_commands_refuse_a_bad_config_with_2(tmp_path, command):
    write_jobs(tmp_path / "jobs.jsonl", [{"url": "http://127.0.0.1:1/"}])
    (tmp_path / "gq.toml").write_text("[pool]\nsize = 0\n")
    result = gq(command[0], "-c", "gq.toml", *command[1:], cwd=tmp_path)
    assert result.returncode == 2
    one_error(result, "gq: config error: gq.toml: pool.size: ")


def test_run_exits_1_when_the_address_is_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        config = write_config(tmp_path / "gq.toml", api={"listen": listen})
        result = gq("run", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    one_error(result, f"gq: cannot listen on {listen}")


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["batch"], ["submit"], ["run", "--bogus"],
                                  ["status", "--api"], ["check-config", "extra"]], ids=" ".join)
def test_usage_errors_exit_2_with_one_line(tmp_path, args):
    result = gq(*args, cwd=tmp_path)
    assert result.returncode == 2
    one_error(result, "gq: usage error")


# -- batch

def _jobs(target, n: int, prefix: str, **query: Any) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i}", "url": target.url(f"/{prefix}", **query), "json": {"n": i}}
            for i in range(n)]


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_batch_delivers_every_job_and_prints_the_summary(tmp_path, target, source):
    jobs = _jobs(target, 12, "batch")
    config = write_config(tmp_path / "gq.toml", pool={"size": 4})
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    arg, stdin = (str(path), None) if source == "file" else ("-", path.read_text())
    result = gq("batch", "-c", str(config), arg, cwd=tmp_path, input=stdin)
    assert result.returncode == 0, result.stderr
    done = summary(result)
    assert set(done) == {"total", "succeeded", "dead", "remaining", "seconds"}
    assert {k: done[k] for k in ("total", "succeeded", "dead", "remaining")} == \
        {"total": 12, "succeeded": 12, "dead": 0, "remaining": 0}
    assert isinstance(done["seconds"], (int, float)) and 0 <= done["seconds"] < 60
    assert "\r" not in result.stderr, "a progress bar on a stderr that is not a terminal"
    assert sorted(r["key"] for r in target.received()) == sorted(j["id"] for j in jobs)


def batch_at_a_terminal(tmp_path: Path, config: Path, path: Path) -> tuple[int, str, str]:
    """`gq batch` with a terminal for its stderr: (exit code, stdout, what the terminal showed)."""
    terminal, its_end = pty.openpty()
    proc = subprocess.Popen(gq_command("batch", "-c", str(config), str(path)), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=its_end, text=True)
    os.close(its_end)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: gq closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out, shown.decode()


def test_batch_draws_its_progress_on_a_terminal(tmp_path, target):
    config = write_config(tmp_path / "gq.toml", pool={"size": 4})
    path = write_jobs(tmp_path / "jobs.jsonl", _jobs(target, 12, "tty"))
    code, out, shown = batch_at_a_terminal(tmp_path, config, path)
    assert code == 0
    assert json.loads(out.splitlines()[-1])["succeeded"] == 12
    assert "\r[" + "#" * 30 + "] 12/12 ok 12 dead 0 " in shown, shown


def test_batch_with_log_lines_keeps_its_progress_bar_on_the_last_line(tmp_path, target):
    # Dead jobs log a warning each: every log line clears the bar's line first, and the bar
    # is drawn again below it, so no log line starts in the middle of a bar.
    config = write_config(tmp_path / "gq.toml", pool={"size": 2}, retry={"max_attempts": 1})
    path = write_jobs(tmp_path / "jobs.jsonl", _jobs(target, 3, "ok") + _jobs(target, 3, "gone", status=404))
    code, _, text = batch_at_a_terminal(tmp_path, config, path)
    assert code == 1
    warnings = re.findall(r"(\r\x1b\[K)?\d{4}-\d\d-\d\d [\d:,]+ WARNING gq\S*: job gone-\d dead[^\r\n]*\r?\n(.)", text)
    assert len(warnings) == 3, text
    assert warnings == [("\r\x1b[K", "[")] * 3, text  # the bar's line cleared before, the bar drawn after
    assert re.search(r"\r\[#{30}\] 6/6 ok 3 dead 3 \d+ jobs/s \r\n$", text), text  # the last bar stays


def test_batch_beside_a_daemon_on_the_same_journal_is_told_of_journal(tmp_path, target, start_daemon):
    daemon = start_daemon(journal={"path": "data/journal.sqlite3"})
    path = write_jobs(tmp_path / "jobs.jsonl", _jobs(target, 3, "beside"))
    refused = gq("batch", "-c", "gq.toml", str(path), cwd=tmp_path)
    assert refused.returncode == 1
    one_error(refused, f"gq: journal: data/journal.sqlite3 is in use by another gq process: gq run (pid {daemon.pid}) "
                       "(give this batch a journal of its own with --journal PATH)")
    done = gq("batch", "-c", "gq.toml", "--journal", "data/batch.sqlite3", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert summary(done)["succeeded"] == 3
    assert (tmp_path / "data" / "batch.sqlite3").exists()
    parts = gq("batch", "-c", "gq.toml", "--journal", "data/parts.sqlite3", "-p", "2", str(path), cwd=tmp_path)
    assert parts.returncode == 0, parts.stderr
    assert sorted(p.name for p in (tmp_path / "data").glob("parts*.sqlite3")) == \
        ["parts.part0of2.sqlite3", "parts.part1of2.sqlite3"]


def test_batch_on_several_processes_delivers_every_job_once_and_resumes(tmp_path, target):
    jobs = _jobs(target, 40, "parts") + [{"id": "parts-0", "url": target.url("/parts")}]  # a duplicate
    config = write_config(tmp_path / "gq.toml", pool={"size": 4}, journal={"path": "data/j.sqlite3"})
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    first = gq("batch", "-c", str(config), "-p", "3", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert {k: summary(first)[k] for k in ("total", "succeeded", "dead", "remaining")} == \
        {"total": 40, "succeeded": 40, "dead": 0, "remaining": 0}
    assert sorted(r["key"] for r in target.received()) == sorted(f"parts-{i}" for i in range(40))
    assert sorted(p.name for p in (tmp_path / "data").glob("*.sqlite3")) == \
        [f"j.part{i}of3.sqlite3" for i in range(3)]
    again = gq("batch", "-c", str(config), "-p", "3", str(path), cwd=tmp_path)  # each part's journal
    assert again.returncode == 0 and summary(again)["succeeded"] == 40
    assert target.count() == 40, "a finished batch run again sends nothing"


def test_batch_on_several_processes_from_stdin_checks_every_line_first(tmp_path, target):
    # Jobs without ids (an id from the line) read from stdin; the split files are private.
    config = write_config(tmp_path / "gq.toml", pool={"size": 4})
    spool = tmp_path / "tmp"
    spool.mkdir()
    lines = [json.dumps({"url": target.url("/stdin"), "json": {"n": n}}) for n in range(30)]
    bad = gq("batch", "-c", str(config), "-p", "2", "-", input="\n".join(lines[:20] + ["{nope"] + lines[20:]),
             cwd=tmp_path, TMPDIR=str(spool))
    assert bad.returncode == 2 and one_error(bad, "gq: stdin: line 21: not valid JSON: Expecting property name "
                                                  "enclosed in double quotes (column 2)")
    assert target.count() == 0 and list(spool.iterdir()) == []
    good = gq("batch", "-c", str(config), "-p", "2", "-", input="\n".join(lines), cwd=tmp_path, TMPDIR=str(spool))
    assert good.returncode == 0, good.stderr
    assert summary(good)["succeeded"] == 30
    assert sorted(json.loads(r["body"])["n"] for r in target.received()) == list(range(30))
    assert list(spool.iterdir()) == []


def test_batch_with_dead_jobs_exits_1(tmp_path, target):
    jobs = _jobs(target, 3, "ok") + _jobs(target, 2, "gone", status=404)
    config = write_config(tmp_path / "gq.toml", pool={"size": 2})
    result = gq("batch", "-c", str(config), str(write_jobs(tmp_path / "jobs.jsonl", jobs)), cwd=tmp_path)
    assert result.returncode == 1
    done = summary(result)
    assert (done["total"], done["succeeded"], done["dead"], done["remaining"]) == (5, 3, 2, 0)
    assert target.count() == 5


@pytest.mark.parametrize("line, field", [
    ('{"url": "ftp://127.0.0.1/x"}', "url"),
    ('{"url": "http://127.0.0.1:1/", "timeout": "soon"}', "timeout"),
    ('{"url": "http://127.0.0.1:1/", "colour": "red"}', "colour"),
    ('{"url": "http://127.0.0.1:1/", ', " line 2: not valid JSON: Expecting property name enclosed in double quotes "
                                         "(column 32)"),
], ids=["url", "timeout", "unknown field", "invalid JSON"])
def test_batch_with_an_invalid_line_exits_2_and_sends_nothing(tmp_path, target, line, field):
    jobs = [{"url": target.url()}, line, {"url": target.url()}]
    write_jobs(tmp_path / "jobs.jsonl", jobs)
    config = write_config(tmp_path / "gq.toml")
    result = gq("batch", "-c", str(config), "jobs.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    one_error(result, f"gq: jobs.jsonl:{field}" if field.startswith(" line") else f"gq: jobs.jsonl:2: {field}")
    assert result.stdout == ""
    assert target.count() == 0


def test_batch_with_a_missing_file_exits_2(tmp_path):
    result = gq("batch", "-c", str(write_config(tmp_path / "gq.toml")), "absent.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    one_error(result, "gq: absent.jsonl: ")


def test_batch_delivers_a_duplicated_id_once(tmp_path, target):
    jobs = [{"id": "same", "url": target.url()}, {"id": "other", "url": target.url()},
            {"id": "same", "url": target.url()}]
    config = write_config(tmp_path / "gq.toml", pool={"size": 2})
    result = gq("batch", "-c", str(config), str(write_jobs(tmp_path / "jobs.jsonl", jobs)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    done = summary(result)
    assert (done["total"], done["succeeded"], done["remaining"]) == (2, 2, 0)
    assert sorted(r["key"] for r in target.received()) == ["other", "same"]


def batch_stopped(tmp_path: Path, config: Path, jobs: Path, when) -> tuple[int, str, str]:
    """`gq batch` sent SIGTERM once `when()` holds: (exit code, stdout, stderr)."""
    proc = subprocess.Popen(gq_command("batch", "-c", str(config), str(jobs)), cwd=tmp_path,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(when, what="the batch's jobs in flight")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return proc.returncode, stdout, stderr


def test_batch_interrupted_by_sigterm_exits_1_with_remaining(tmp_path, target):
    jobs = [{"url": target.url(hang=1), "timeout": 60} for _ in range(3)]
    config = write_config(tmp_path / "gq.toml", pool={"size": 2}, shutdown={"drain_timeout": 0.3})
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    returncode, stdout, stderr = batch_stopped(tmp_path, config, path, lambda: target.count() == 2)
    assert returncode == 1, stderr
    done = json.loads(stdout.splitlines()[-1])
    assert (done["total"], done["succeeded"], done["dead"], done["remaining"]) == (3, 0, 0, 3)
    assert "Traceback" not in stderr


def test_batch_drain_starts_nothing_its_deadline_could_cut_off_and_resumes_without_duplicates(tmp_path, target):
    # 50 in flight on a 500 ms target, 500 waiting; job timeout 10 s, drain 3 s: SIGTERM
    # lets the 50 finish and starts none of the rest; run again, the batch sends each of
    # those once.
    jobs = [{"id": f"job{i}", "url": target.url(delay=0.5)} for i in range(550)]
    config = write_config(tmp_path / "gq.toml", journal={"path": "data/journal.sqlite3"}, pool={"size": 50},
                          target={"timeout": 10}, shutdown={"drain_timeout": 3})
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    returncode, stdout, stderr = batch_stopped(tmp_path, config, path, lambda: target.count() >= 50)
    assert returncode == 1, stderr
    first = json.loads(stdout.splitlines()[-1])
    assert (first["total"], first["succeeded"], first["remaining"]) == (550, 50, 500), first
    assert target.count() == 50

    again = gq("batch", "-c", str(config), str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert summary(again)["succeeded"] == 550
    stats = target.stats()
    print(f"\nbatch drained by SIGTERM, then resumed: {stats['count']} requests for {stats['keys']} jobs, "
          f"{stats['duplicates']} delivered twice")
    assert stats["keys"] == 550 and stats["duplicates"] == 0


# -- dlq

def _purge_at_a_terminal(tmp_path: Path, answer: str) -> tuple[int, str, str]:
    """`gq dlq purge --all` with a terminal for its stdin, answered `answer`."""
    terminal, its_end = pty.openpty()
    proc = subprocess.Popen(gq_command("dlq", "purge", "--all", "-c", "gq.toml"), cwd=tmp_path, stdin=its_end,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    os.close(its_end)
    try:
        prompt = proc.stderr.read(len("gq: dlq purge all 2 dead letters for good? [y/N] "))
        os.write(terminal, answer.encode() + b"\n")
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(terminal)
    return proc.returncode, out, prompt + err


def test_dlq_lists_with_a_header_and_purge_all_asks_first(tmp_path, target):
    config = write_config(tmp_path / "gq.toml", journal={"path": "data/journal.sqlite3"})
    write_jobs(tmp_path / "jobs.jsonl", _jobs(target, 2, "gone", status=404))
    assert gq("batch", "-c", str(config), "jobs.jsonl", cwd=tmp_path).returncode == 1
    listed = gq("dlq", "list", "-c", "gq.toml", cwd=tmp_path)
    assert (listed.returncode, listed.stderr) == (0, "")
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "ATTEMPTS", "LAST", "REASON", "URL"]
    assert [r.split()[:3] for r in rows] == [["gone-0", "1", "404"], ["gone-1", "1", "404"]]

    refused = gq("dlq", "purge", "--all", "-c", "gq.toml", cwd=tmp_path)
    assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", (
        "gq: usage error: dlq purge --all: give --yes to purge every dead letter (no terminal to ask for "
        "confirmation)\n"))
    code, out, err = _purge_at_a_terminal(tmp_path, "n")
    assert (code, out, err) == (1, "", "gq: dlq purge all 2 dead letters for good? [y/N] "
                                       "gq: dlq purge: not confirmed: nothing purged\n")
    code, out, err = _purge_at_a_terminal(tmp_path, "y")
    assert (code, sorted(out.split()), err) == (0, ["gone-0", "gone-1"],
                                                "gq: dlq purge all 2 dead letters for good? [y/N] ")
    empty = gq("dlq", "list", "-c", "gq.toml", cwd=tmp_path)
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "no dead letters\n")
    assert gq("dlq", "purge", "--all", "--yes", "-c", "gq.toml", cwd=tmp_path).returncode == 0


# -- submit

def _auth_env() -> dict[str, str]:
    return {"GQ_TOKEN": TOKEN}


def _wait_delivered(target, ids: list[str]) -> None:
    wait_for(lambda: sorted(r["key"] for r in target.received()) == sorted(ids),
             what=f"{len(ids)} jobs delivered")


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_submit_prints_one_id_per_line(tmp_path, target, token_daemon, source):
    jobs = _jobs(target, 3, f"submit-{source}") + [{"url": target.url("/no-id")}]
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    arg, stdin = (str(path), None) if source == "file" else ("-", path.read_text())
    result = gq("submit", "--api", token_daemon.api, arg, input=stdin, **_auth_env())
    assert result.returncode == 0, result.stderr
    ids = result.stdout.splitlines()
    assert len(ids) == 4 and ids[:3] == [j["id"] for j in jobs[:3]] and ids[3]
    _wait_delivered(target, ids)


@pytest.mark.parametrize("count, bad_lines", [(3, [2]), (150, [120, 130])],
                         ids=["one request", "several requests"])
def test_submit_reports_rejected_lines_and_delivers_the_rest(tmp_path, target, token_daemon, count,
                                                             bad_lines):
    jobs = [{"id": f"kept-{count}-{i}", "url": target.url()} for i in range(1, count + 1)]
    for line in bad_lines:
        jobs[line - 1] = {"id": f"bad-{line}", "url": "ftp://127.0.0.1/x"}
    write_jobs(tmp_path / "jobs.jsonl", jobs)
    result = gq("submit", "--api", token_daemon.api, "jobs.jsonl", cwd=tmp_path, **_auth_env())
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert len(errors) == len(bad_lines), result.stderr
    for error, line in zip(errors, bad_lines):
        assert error.startswith(f"gq: jobs.jsonl:{line}: url: "), error
    kept = [j["id"] for j in jobs if j["id"].startswith("kept-")]
    assert result.stdout.splitlines() == kept
    _wait_delivered(target, kept)


@pytest.mark.parametrize("shape", ["array", "pretty object"])
def test_submit_reads_a_json_array_or_one_pretty_printed_object(tmp_path, target, token_daemon, shape):
    jobs = _jobs(target, 2 if shape == "array" else 1, f"submit-{shape.replace(' ', '-')}")
    text = json.dumps(jobs if shape == "array" else jobs[0], indent=2)
    (tmp_path / "jobs.json").write_text(text)
    result = gq("submit", "--api", token_daemon.api, "jobs.json", cwd=tmp_path, **_auth_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [j["id"] for j in jobs]
    _wait_delivered(target, [j["id"] for j in jobs])


@pytest.mark.parametrize(("text", "error"), [
    ('{"url": "http://a/"}\n{"url": \n', "line 2: not valid JSON: Expecting value (column 9)"),
    ('{\n  "url": "http://a/"\n  "json": {}\n}\n', "line 3: not valid JSON: Expecting ',' delimiter (column 3)"),
    ('[\n  {"url": "http://a/"},\n  {"url": NaN}\n]\n', "line 1: not valid JSON: NaN is not JSON"),
    ('[\n  {"url": "http://a/"}\n  {}\n]\n', "line 3: not valid JSON: Expecting ',' delimiter (column 3)"),
], ids=["JSON lines", "pretty object", "array: NaN", "array: a comma missing"])
def test_submit_names_the_line_of_a_file_that_is_not_json(tmp_path, text, error):
    (tmp_path / "pretty.json").write_text(text)
    result = gq("submit", "--api", f"http://127.0.0.1:{closed_port()}", "pretty.json", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"gq: pretty.json: {error}\n")


def test_submit_with_a_wrong_token_exits_1(tmp_path, target, token_daemon):
    path = write_jobs(tmp_path / "jobs.jsonl", [{"url": target.url()}])
    result = gq("submit", "--api", token_daemon.api, "--token", "wrong", str(path))
    assert result.returncode == 1
    assert "401" in result.stderr or "unauthorized" in result.stderr
    assert all(line.startswith("gq: ") for line in result.stderr.splitlines())
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert target.count() == 0


@pytest.mark.parametrize("command", ["submit", "status"])
def test_an_unreachable_daemon_exits_1(tmp_path, command):
    write_jobs(tmp_path / "jobs.jsonl", [{"url": "http://127.0.0.1:1/"}])
    args = ["jobs.jsonl"] if command == "submit" else []
    result = gq(command, "--api", f"http://127.0.0.1:{closed_port()}", *args, cwd=tmp_path)
    assert result.returncode == 1
    one_error(result, "gq: cannot reach the daemon")


# -- status

@pytest.fixture(scope="module")
def busy_daemon(tmp_path_factory):
    """A daemon with one of its 3 workers held by a hanging job."""
    target = start_target()
    try:
        config = daemon_config(pool={"size": 3}, queue={"maxsize": 40})
        daemon = Daemon(tmp_path_factory.mktemp("busy"), config)
        try:
            daemon.post({"url": target.url(hang=1), "timeout": 60})
            wait_for(lambda: target.count() == 1, what="a job in flight")
            yield daemon
        finally:
            daemon.stop()
    finally:
        target.stop()


def test_status_prints_queue_workers_draining(busy_daemon):
    result = gq("status", "--api", busy_daemon.api)
    assert result.returncode == 0, result.stderr
    lines = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in result.stdout.splitlines()}
    assert lines == {"draining": "no", "queue": "0/40 in memory, waiting for a worker", "workers": "1/3 busy",
                     "jobs kept now": "0 queued, 0 scheduled, 1 running, 0 retrying, 0 dead",
                     "finished since this daemon started": "0 succeeded, 0 dead, 0 cancelled",
                     "ledger": "accepted 1 = queued 0 + scheduled 0 + running 1 + retrying 0 + succeeded 0 + dead 0 "
                               "+ cancelled 0 + forgotten 0"}
    assert result.stdout.splitlines()[0] == "draining:                           no"


def test_status_json(busy_daemon):
    result = gq("status", "--json", "--api", busy_daemon.api)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert {k: status.get(k) for k in ("queue_depth", "pool_busy", "pool_size", "draining")} == \
        {"queue_depth": 0, "pool_busy": 1, "pool_size": 3, "draining": False}


# -- where the client finds the daemon and its token

def _client_config(path: Path, port: int, token: str = "") -> Path:
    path.write_text(to_toml({"api": {"listen": f"127.0.0.1:{port}", "token": token}}))
    return path


@pytest.mark.parametrize("given_by", ["--api", "GQ_API", "api.listen"])
def test_the_daemon_address_is_taken_from_each_source(tmp_path, token_daemon, given_by):
    good = _client_config(tmp_path / "good.toml", port_of(token_daemon), TOKEN)
    dead_port = closed_port()
    dead = _client_config(tmp_path / "dead.toml", dead_port, TOKEN)
    dead_url = f"http://127.0.0.1:{dead_port}"
    args, env = {
        "--api": (["--api", token_daemon.api, "-c", str(dead)], {"GQ_API": dead_url}),
        "GQ_API": (["-c", str(dead)], {"GQ_API": token_daemon.api}),
        "api.listen": (["-c", str(good)], {}),
    }[given_by]
    result = gq("status", "--json", *args, GQ_TOKEN=TOKEN, **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pool_size"] == 4


@pytest.mark.parametrize("given_by", ["--token", "GQ_TOKEN", "api.token"])
def test_the_token_is_taken_from_each_source(tmp_path, target, token_daemon, given_by):
    config = _client_config(tmp_path / "gq.toml", port_of(token_daemon), TOKEN)
    wrong = _client_config(tmp_path / "wrong.toml", port_of(token_daemon), "wrong")
    args, env = {
        "--token": (["--api", token_daemon.api, "--token", TOKEN], {"GQ_TOKEN": "wrong"}),
        "GQ_TOKEN": (["--api", token_daemon.api, "-c", str(wrong)], {"GQ_TOKEN": TOKEN}),
        "api.token": (["-c", str(config)], {}),
    }[given_by]
    path = write_jobs(tmp_path / "jobs.jsonl", [{"id": f"token-{given_by}", "url": target.url()}])
    result = gq("submit", *args, str(path), **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"token-{given_by}"]
    _wait_delivered(target, [f"token-{given_by}"])
