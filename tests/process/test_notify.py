"""The sd_notify protocol as systemd sees it: a real notify socket bound by the test, gq as a
real subprocess with $NOTIFY_SOCKET (and $WATCHDOG_USEC) in its environment, real signals.

Every datagram is recorded with the pid the kernel says sent it (SCM_CREDENTIALS, as systemd
checks for NotifyAccess=main) and the order it arrived in.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from gq.broker.journal_file import JournalFile
from gq.core import hosts
from gq.core.job import parse
from support import DEADLINE, Daemon, daemon_config, earlier_journal, gq_command, records, run_gq, to_toml, wait_for

WATCHDOG_USEC = 1_000_000  # gq pings at half of it
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                "LISTEN_FDNAMES")


@dataclass
class Message:
    """One datagram: when it arrived, who sent it, its KEY=value lines in order."""
    seq: int
    at: float
    pid: int | None
    text: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    # Taken by the reader as a READY=1 datagram arrives: gq's log so far, and /readyz.
    log_at_arrival: str | None = None
    readyz_at_arrival: int | None = None

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)

    def has(self, key: str, value: str | None = None) -> bool:
        return any(k == key and (value is None or v == value) for k, v in self.fields)


class NotifySocket:
    """The service manager's side of sd_notify: a unix datagram socket and a reader thread."""

    def __init__(self, address: str):
        self.env_value = address  # what goes in $NOTIFY_SOCKET: a path or "@name"
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.messages: list[Message] = []
        self.on_ready = None  # called in the reader thread with each READY=1 message
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            except OSError:
                return
            at, pid = time.monotonic(), None
            for level, kind, cdata in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[:12])[0]
            text = data.decode("utf-8", "replace")
            fields = [tuple(line.split("=", 1)) for line in text.split("\n") if "=" in line]
            message = Message(len(self.messages), at, pid, text, fields)
            if message.has("READY", "1") and self.on_ready is not None:
                self.on_ready(message)
            with self._cond:
                self.messages.append(message)
                self._cond.notify_all()

    def snapshot(self) -> list[Message]:
        with self._cond:
            return list(self.messages)

    def wait_for(self, predicate, after: int = 0, timeout: float = DEADLINE, what: str = "a message") -> Message:
        """The first message from index `after` on that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages[after:]:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    shown = "\n".join(repr(m.text) for m in self.messages[after:][-20:])
                    pytest.fail(f"timed out after {timeout:g}s waiting for {what}; last messages:\n{shown}")
                self._cond.wait(min(left, 0.1))

    def barrier(self) -> int:
        """Send a marker from this process; returns once the reader has taken it, so every
        datagram sent before the call has been recorded. Returns the marker's index."""
        marker = f"X_TEST_MARKER={uuid.uuid4().hex}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(marker.encode(), self.address)
        return self.wait_for(lambda m: m.text == marker, what="the test's own marker").seq

    def close(self) -> None:
        self._closed = True
        self._thread.join(5)
        self.sock.close()


def Gq(workdir: Path, config: dict, notify: NotifySocket, **systemd_env: str) -> Daemon:
    """`python -m gq run -c FILE` with exactly the systemd variables given; returns at once
    (its `api` waits for the "listening on" line)."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    env.update(NOTIFY_SOCKET=notify.env_value, **systemd_env)
    return Daemon(workdir, config, env=env, wait=False)


@pytest.fixture
def notify_dir():
    # Not tmp_path: a unix socket path must stay under 108 bytes.
    with tempfile.TemporaryDirectory(prefix="gqn-") as d:
        yield Path(d)


@pytest.fixture
def systemd(tmp_path, notify_dir):
    """systemd(kind="path"|"abstract", env=..., **sections) → (Gq, NotifySocket); READY=1
    datagrams are checked against the log and /readyz the moment they arrive."""
    sockets: list[NotifySocket] = []
    daemons: list[Gq] = []

    def start(kind: str = "path", env: dict | None = None, **sections) -> tuple[Gq, NotifySocket]:
        address = str(notify_dir / "notify.sock") if kind == "path" else f"@gq-test-{uuid.uuid4().hex}"
        notify = NotifySocket(address)
        sockets.append(notify)
        box: dict[str, Gq] = {}

        def on_ready(message: Message) -> None:
            message.log_at_arrival = box["gq"].log()
            m = re.search(r"listening on (http://\S+)", message.log_at_arrival)
            if m:
                try:
                    message.readyz_at_arrival = requests.get(f"{m.group(1)}/readyz", timeout=5).status_code
                except requests.RequestException:
                    message.readyz_at_arrival = -1

        notify.on_ready = on_ready
        config = daemon_config(**sections)
        gq = Gq(tmp_path, config, notify, **(env if env is not None else {"WATCHDOG_USEC": str(WATCHDOG_USEC)}))
        box["gq"] = gq
        daemons.append(gq)
        return gq, notify

    yield start
    for gq in daemons:
        gq.stop()
    for notify in sockets:
        notify.close()


def from_gq(gq: Gq):
    return lambda m: m.pid == gq.pid


STATUS_RE = re.compile(r"^(running|draining): queue (\d+)/(\d+), workers (\d+)/(\d+) busy, "
                       r"\d+ retrying, (\d+) succeeded, (\d+) dead$")


def ready(gq: Gq, notify: NotifySocket, after: int = 0, timeout: float = DEADLINE) -> Message:
    return notify.wait_for(lambda m: m.pid == gq.pid and m.has("READY", "1"), after, timeout, "READY=1")


# -- start: READY, STATUS, WATCHDOG


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_status_and_watchdog(systemd, kind):
    gq, notify = systemd(kind, pool={"size": 3}, queue={"maxsize": 7})
    first_ready = ready(gq, notify)

    # READY=1 comes from gq's own pid, once and only after the API listens and answers.
    assert first_ready.pid == gq.pid
    assert "listening on http://127.0.0.1:" in first_ready.log_at_arrival, \
        f"READY=1 arrived before the 'listening on' log line:\n{first_ready.log_at_arrival}"
    assert first_ready.readyz_at_arrival == 200, "/readyz did not answer 200 right after READY=1"
    assert gq.get("/healthz").status_code == 200
    before = notify.snapshot()[:first_ready.seq]
    assert not any(m.has("READY") for m in before)
    # Before READY=1, only STATUS= and EXTEND_TIMEOUT_USEC (the start's: see below); no
    # WATCHDOG=1 before the loop runs, no STOPPING=1.
    assert all(k in ("STATUS", "EXTEND_TIMEOUT_USEC") for m in before for k, _ in m.fields), [m.text for m in before]

    # STATUS= with queue and worker figures, in the READY=1 datagram and in the heartbeat.
    status = first_ready.get("STATUS")
    assert status is not None and STATUS_RE.match(status), status
    assert "queue 0/7, workers 0/3 busy" in status
    later = notify.wait_for(lambda m: m.pid == gq.pid and m.has("STATUS") and not m.has("READY"),
                            after=first_ready.seq + 1, what="a heartbeat STATUS=")
    assert STATUS_RE.match(later.get("STATUS")), later.text

    # WATCHDOG=1 again and again, at about half of WATCHDOG_USEC: count them over a window.
    start = notify.barrier()
    window = 3.0
    end = notify.wait_for(lambda m: m.at >= notify.messages[start].at + window, after=start,
                          timeout=window + DEADLINE, what=f"messages {window:g}s on")
    pings = [m for m in notify.snapshot()[start:end.seq + 1] if m.pid == gq.pid and m.has("WATCHDOG", "1")]
    assert len(pings) >= 2, f"{len(pings)} WATCHDOG=1 in {window:g}s with WATCHDOG_USEC={WATCHDOG_USEC}"
    assert len(pings) <= window / 0.1, f"{len(pings)} WATCHDOG=1 in {window:g}s: flooding"
    # Only one READY=1 while nothing asked for a reload.
    assert sum(m.has("READY", "1") for m in notify.snapshot()) == 1

    gq.signal(signal.SIGTERM)
    assert gq.wait() == 0


def test_a_long_start_asks_for_more_time_until_ready(systemd, target, tmp_path):
    """Opening a journal of the earlier layout rewrites every row before gq listens: all
    along, gq asks systemd for more start time (systemd would kill a start that outlasts
    TimeoutStartSec), until READY=1; then the queued jobs run. (That systemd lets such a
    start go on: tests/system/test_systemd.py.)"""
    (tmp_path / "data").mkdir()
    now = time.time()
    earlier_journal.write(str(tmp_path / "data" / "journal.sqlite3"),
                          ((f"q{n}", target.url(), "queued", now, None, None) for n in range(20_000)))
    gq, notify = systemd(journal={"path": "data/journal.sqlite3"}, pool={"size": 50})
    first_ready = ready(gq, notify, timeout=120)
    assert "upgrading the file's layout for about 20000 job(s)" in first_ready.log_at_arrival
    asked = [m for m in notify.snapshot()[:first_ready.seq] if m.pid == gq.pid]
    assert asked and all(m.get("EXTEND_TIMEOUT_USEC") == "10000000" for m in asked), [m.text for m in asked]
    assert {m.get("STATUS") for m in asked} == {"starting: opening the journal data/journal.sqlite3"}, asked
    wait_for(lambda: records(target, "q0"), what="a job of the upgraded file delivered")
    gq.signal(signal.SIGTERM)
    assert gq.wait() == 0


# -- a command that holds the journal: the start waits for it

JOURNAL = {"path": "data/journal.sqlite3"}
REPLAYED = 3000   # dead letters replayed while gq starts
LONG_ID = 100     # characters an id has: the replay's output of a few hundred fills a pipe


def write_dead_letters(path: Path, url: str, ids: list[str]) -> None:
    """A journal in gq's own layout (JournalFile lays it out) holding `ids` as dead letters to
    `url`: written at once, rather than made to die one by one."""
    journal = JournalFile(str(path))
    now = time.time()
    journal.db.execute("BEGIN")
    journal.db.executemany(
        "INSERT INTO jobs (id, spec, state, attempts, accepted_at, finished_at, reason, host) "
        "VALUES (?, ?, 'dead', 1, ?, ?, 'status 503', ?)",
        ((job_id, parse({"id": job_id, "url": url}).to_json(), now, now, hosts.destination(url)) for job_id in ids))
    journal.db.execute("COMMIT")
    journal.close()


def replayed_so_far(workdir: Path) -> int:
    with closing(sqlite3.connect(workdir / JOURNAL["path"])) as db:
        return db.execute("SELECT count(*) FROM jobs WHERE state = 'queued'").fetchone()[0]


@pytest.fixture
def held_replay(tmp_path, target):
    """`gq jobs replay --state dead` of REPLAYED dead letters, under way: it holds the journal's
    lock from its first change to its end, and its output is not read, so it stops in the
    middle, as one piped to a pager would (a pipe holds 64 KiB). Yields (process, ids); reading
    its output lets it finish. Its config is admin.toml."""
    ids = [f"{n:05d}-".ljust(LONG_ID, "x") for n in range(REPLAYED)]
    (tmp_path / "data").mkdir()
    write_dead_letters(tmp_path / JOURNAL["path"], target.url("/replayed"), ids)
    (tmp_path / "admin.toml").write_text(to_toml({"journal": JOURNAL}))
    replay = subprocess.Popen(gq_command("jobs", "replay", "--state", "dead", "-c", "admin.toml"), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: replayed_so_far(tmp_path), what="the replay to be under way")
    yield replay, ids
    replay.kill()
    replay.communicate()


def waiting_for(gq: Daemon, holder: str) -> None:
    """Returns once gq's log names `holder` as what its start waits for."""
    def logged() -> bool:
        if gq.proc.poll() is not None:
            pytest.fail(f"gq exited with {gq.proc.returncode} instead of waiting for {holder}:\n{gq.log()}")
        return f"{holder} holds it; gq run starts once it is done" in gq.log()
    wait_for(logged, what=f"gq to log that it waits for {holder}")


def test_a_start_waits_for_a_command_that_holds_the_journal_then_runs_what_it_replayed(systemd, target,
                                                                                       held_replay):
    """An admin command never keeps the daemon from starting. Exiting at once, as gq did, had
    systemd restart it every second until its start limit, then leave it down. gq waits for the
    command instead, names it in its log and to systemd, asks for more start time all along,
    and once the command is done starts and delivers each replayed job once."""
    replay, ids = held_replay
    gq, notify = systemd(journal=JOURNAL, pool={"size": 50})
    holder = f"gq jobs replay (pid {replay.pid})"
    waiting_for(gq, holder)
    status = f"starting: waiting for {holder} to let the journal {JOURNAL['path']} go"
    told = notify.wait_for(lambda m: m.pid == gq.pid and m.get("STATUS") == status, what="STATUS= naming the command")
    assert told.get("EXTEND_TIMEOUT_USEC") == "10000000", told.text
    assert replay.poll() is None, "the command was done before gq waited for it"

    out, err = replay.communicate(timeout=DEADLINE)
    assert (replay.returncode, err) == (0, "")
    assert sorted(out.split()) == ids
    first_ready = ready(gq, notify)
    assert first_ready.readyz_at_arrival == 200
    assert "taken after waiting" in first_ready.log_at_arrival
    before = [m for m in notify.snapshot()[:first_ready.seq] if m.pid == gq.pid]
    assert all(m.has("EXTEND_TIMEOUT_USEC") for m in before), [m.text for m in before]

    wait_for(lambda: gq.status()["finished"]["succeeded"] == len(ids), what="every replayed job to succeed")
    assert Counter(r["key"] for r in target.received()) == Counter(ids), "not each replayed job once"
    gq.signal(signal.SIGTERM)
    assert gq.wait() == 0


def test_a_start_that_waits_for_a_command_stops_at_once_on_sigterm(systemd, held_replay, tmp_path):
    replay, ids = held_replay
    holder = f"gq jobs replay (pid {replay.pid})"
    # Another command meanwhile is told who holds the journal (none of a daemon's ways is open).
    other = run_gq("dlq", "purge", "--all", "--yes", "-c", "admin.toml", cwd=tmp_path)
    assert other.returncode == 1, other.stderr
    assert other.stderr == f"gq: journal: {JOURNAL['path']} is in use by {holder}; try again once it is done\n"

    gq, notify = systemd(journal=JOURNAL)
    waiting_for(gq, holder)
    gq.signal(signal.SIGTERM)
    assert gq.wait() == 0  # nothing accepted, nothing to drain
    assert f"stopped while waiting for {holder}" in gq.log()
    assert not any(m.has("READY") for m in notify.snapshot())
    out, _ = replay.communicate(timeout=DEADLINE)
    assert replay.returncode == 0 and sorted(out.split()) == ids


@pytest.mark.parametrize("env", [{}, {"WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": "1"}],
                         ids=["no-watchdog-usec", "watchdog-pid-of-another-process"])
def test_no_watchdog_pings_when_the_watchdog_is_not_for_gq(systemd, env):
    gq, notify = systemd(env=env)
    first = ready(gq, notify)
    # Three heartbeats (one a second) with no WATCHDOG=1 among them.
    third = first
    for _ in range(3):
        third = notify.wait_for(lambda m: m.pid == gq.pid and m.has("STATUS"), after=third.seq + 1,
                                what="a heartbeat STATUS=")
    assert not any(m.has("WATCHDOG") for m in notify.snapshot()), \
        [m.text for m in notify.snapshot() if m.has("WATCHDOG")]
    gq.signal(signal.SIGTERM)
    assert gq.wait() == 0


# -- SIGHUP


def test_sighup_reloads_pool_size_between_reloading_and_ready(systemd):
    gq, notify = systemd(pool={"size": 2})
    first = ready(gq, notify)
    assert gq.status()["pool_size"] == 2

    config = daemon_config(pool={"size": 5})
    gq.config_path.write_text(to_toml(config))
    mark = notify.barrier()
    before_ns = time.monotonic_ns()
    gq.signal(signal.SIGHUP)
    reloading = notify.wait_for(lambda m: m.pid == gq.pid and m.has("RELOADING"), after=mark,
                                what="RELOADING=1")
    assert reloading.get("RELOADING") == "1"
    # MONOTONIC_USEC (CLOCK_MONOTONIC, as systemd's Type=notify-reload requires) of the reload.
    monotonic = reloading.get("MONOTONIC_USEC")
    assert monotonic is not None and monotonic.isdigit(), reloading.text
    assert before_ns // 1000 - 1_000_000 <= int(monotonic) <= time.monotonic_ns() // 1000
    again = ready(gq, notify, after=reloading.seq)
    assert again.seq > reloading.seq > first.seq
    # Between RELOADING=1 and READY=1: no READY, no STOPPING.
    between = notify.snapshot()[reloading.seq + 1:again.seq]
    assert not any(m.has("READY") or m.has("STOPPING") for m in between)
    # Right after READY=1 the new size is in force, and STATUS= says so.
    assert gq.status()["pool_size"] == 5
    assert "workers 0/5 busy" in again.get("STATUS"), again.text
    assert "reload: applied pool.size" in gq.log()
    assert gq.proc.poll() is None

    gq.signal(signal.SIGTERM)
    assert gq.wait() == 0


@pytest.mark.parametrize("broken, named", [
    ('[pool]\nsize = "ten"\n', "pool.size"),
    ("[pool\nsize = 3\n", "invalid TOML"),
], ids=["bad-value", "bad-toml"])
def test_sighup_with_a_broken_config_keeps_the_old_one(systemd, target, broken, named):
    gq, notify = systemd(pool={"size": 2})
    ready(gq, notify)
    gq.config_path.write_text(broken)
    mark = notify.barrier()
    gq.signal(signal.SIGHUP)
    reloading = notify.wait_for(lambda m: m.pid == gq.pid and m.has("RELOADING", "1"), after=mark,
                                what="RELOADING=1")
    # gq stays ready on the old config: READY=1 follows, no STOPPING=1.
    ready(gq, notify, after=reloading.seq)
    log = wait_for(lambda: (lambda text: text if "config error" in text else None)(gq.log()),
                   what="the config error in the log")
    error_lines = [line for line in log.splitlines() if "config error" in line]
    assert any(named in line and str(gq.config_path.name) in line for line in error_lines), error_lines
    assert not any(m.has("STOPPING") for m in notify.snapshot())
    assert gq.proc.poll() is None
    assert gq.get("/healthz").status_code == 200
    assert gq.get("/readyz").status_code == 200
    assert gq.status()["pool_size"] == 2
    # And it still runs jobs.
    job_id = gq.post({"url": target.url()}).json()["id"]
    wait_for(lambda: gq.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded", what="a job after the failed reload")

    gq.signal(signal.SIGTERM)
    assert gq.wait() == 0


# -- SIGTERM: drain


def test_sigterm_stopping_then_extend_timeout_while_draining_then_exit_0(systemd, target):
    gq, notify = systemd(pool={"size": 2}, shutdown={"drain_timeout": 30})
    ready(gq, notify)
    ids = gq.post([{"url": target.url(delay=2)} for _ in range(6)]).json()["ids"]
    wait_for(lambda: gq.status()["pool_busy"] == 2, what="2 jobs in flight")
    assert gq.status()["queue_depth"] > 0
    busy = notify.wait_for(lambda m: m.pid == gq.pid and "workers 2/2 busy" in (m.get("STATUS") or ""),
                           what="STATUS= with 2 of 2 workers busy")
    assert STATUS_RE.match(busy.get("STATUS"))

    mark = notify.barrier()
    gq.signal(signal.SIGTERM)
    stopping = notify.wait_for(lambda m: m.pid == gq.pid and m.has("STOPPING"), after=mark, what="STOPPING=1")
    assert stopping.get("STOPPING") == "1"
    assert gq.get("/readyz").status_code == 503
    # EXTEND_TIMEOUT_USEC while jobs are still running: at the start, and as the drain progresses.
    first = notify.wait_for(lambda m: m.pid == gq.pid and m.has("EXTEND_TIMEOUT_USEC"), after=stopping.seq,
                            what="EXTEND_TIMEOUT_USEC")
    assert gq.proc.poll() is None
    notify.wait_for(lambda m: m.pid == gq.pid and m.has("EXTEND_TIMEOUT_USEC"), after=first.seq + 1,
                    what="a second EXTEND_TIMEOUT_USEC as jobs finish")
    assert gq.wait() == 0
    after_stop = notify.snapshot()[mark:]
    extends = [int(m.get("EXTEND_TIMEOUT_USEC")) for m in after_stop if m.has("EXTEND_TIMEOUT_USEC")]
    # Each asks for at least what is left of the 30 s drain, never far beyond it.
    assert all(1_000_000 <= usec <= 45_000_000 for usec in extends), extends
    # Order: STOPPING=1 before every EXTEND_TIMEOUT_USEC, and no READY=1 after it.
    keys = [k for m in after_stop if m.pid == gq.pid for k, _ in m.fields]
    assert keys.index("STOPPING") < keys.index("EXTEND_TIMEOUT_USEC")
    assert "READY" not in keys
    draining = [m.get("STATUS") for m in after_stop if m.has("STATUS") and m.seq > stopping.seq]
    assert draining and all(s.startswith("draining") for s in draining), draining
    assert {r["key"] for r in target.received()} == set(ids)
    assert "nothing left in flight" in gq.log()


# -- a hung gq is not pinging


def test_a_stopped_gq_sends_no_watchdog(systemd):
    gq, notify = systemd()
    first = ready(gq, notify)
    notify.wait_for(lambda m: m.pid == gq.pid and m.has("WATCHDOG", "1"), after=first.seq, what="WATCHDOG=1")

    gq.signal(signal.SIGSTOP)
    stat = Path(f"/proc/{gq.pid}/stat")
    wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", what="gq to be stopped")
    mark = notify.barrier()  # everything sent before it stopped is recorded
    # Over twice WATCHDOG_USEC, i.e. over 4 ping intervals: nothing at all from gq.
    window = 2 * WATCHDOG_USEC / 1e6
    observed_until = time.monotonic() + window
    while time.monotonic() < observed_until:
        late = [m for m in notify.snapshot()[mark:] if m.pid == gq.pid]
        assert not late, f"a stopped gq sent {[m.text for m in late]}"
        time.sleep(0.05)

    gq.signal(signal.SIGCONT)
    # Alive again: the pings resume (the loop lag of the stop passes once measured).
    resumed = notify.wait_for(lambda m: m.pid == gq.pid and m.has("WATCHDOG", "1"), after=mark,
                              what="WATCHDOG=1 after SIGCONT")
    assert resumed.at >= observed_until
    gq.signal(signal.SIGTERM)
    assert gq.wait() == 0


# -- memory guard


def test_memory_guard_drains_and_exits_1(systemd):
    gq, notify = systemd(memory={"max_rss_mb": 1})
    first = ready(gq, notify)
    stopping = notify.wait_for(lambda m: m.pid == gq.pid and m.has("STOPPING", "1"), after=first.seq,
                               what="STOPPING=1 from the memory guard")
    assert stopping.seq > first.seq
    assert gq.wait() == 1
    log = gq.log()
    assert "memory.max_rss_mb" in log
    # Nothing was left: the guard drains like SIGTERM does.
    assert "nothing left in flight" in log
    assert "Traceback" not in log
