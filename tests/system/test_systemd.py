"""gq under a real service manager: systemd as PID 1 of a `systemd-nspawn --boot` container
(the host's /usr read-only, a tmpfs root), driven with `systemctl` through `nsenter`.

The shipped unit files (systemd/gq.service, systemd/gq.socket) are bind-mounted into the
container's /etc/systemd/system unchanged, gq is installed in a venv bound at /opt/gq (the
ExecStart path), its config is /etc/gq/gq.toml, and the HTTP target (tests/support/target.py) runs
inside the container, whose network is private: every client runs inside it too.

Needs root. systemd-container is installed (pinned to the installed systemd) when
systemd-nspawn is missing. When a container cannot run here, the tests are skipped with the
reason, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import to_toml, unavailable, wait_for
from support.packages import PackageError, find, install, provide

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests" / "support"   # the scripts the container runs: target.py, earlier_journal.py
UNITS = ROOT / "systemd"
VENV_CACHE = Path("/var/tmp/gq-test-venvs")
VENV_IN_CONTAINER = "/opt/gq"  # ExecStart=/opt/gq/bin/gq in the shipped unit
TESTS_IN_CONTAINER = "/opt/gq-tests"
API = "http://127.0.0.1:8765"  # api.listen in the container, and gq.socket's ListenStream
STATE_DIR = "/var/lib/private/gq"  # StateDirectory=gq with DynamicUser=yes
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
             "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "SYSTEMD_LESS": ""}
DRAIN = 2.5  # shutdown.drain_timeout in the container's config


def no_systemd(reason: str):
    """A machine that cannot run the container."""
    unavailable(f"no real systemd to test with here: {reason}")


def run(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


# -- the host side: packages, venv


@pytest.fixture(scope="session")
def nspawn() -> str:
    """systemd-nspawn, installed from systemd-container if missing (same version as systemd)."""
    if os.geteuid() != 0:
        no_systemd("the tests need root")
    for tool in ("nsenter", "dpkg-query"):
        if not shutil.which(tool):
            no_systemd(f"{tool} is not installed")
    path = find("systemd-nspawn")
    if path:
        return path
    version = run("dpkg-query", "-W", "-f=${Version}", "systemd")
    if version.returncode != 0 or not version.stdout.strip():
        no_systemd("systemd is not installed, so systemd-container cannot be pinned to it")
    # Pinned, else apt upgrades systemd itself; unpinned only if that version is gone.
    try:
        [path] = provide("systemd-nspawn", packages=[f"systemd-container={version.stdout.strip()}"])
    except PackageError as pinned:
        try:
            [path] = provide("systemd-nspawn", packages=["systemd-container"])
        except PackageError as unpinned:
            no_systemd(f"{pinned}; unpinned: {unpinned}")
    return path


def venv_key() -> str:
    """A hash of what the venv is built from: gq's sources, pyproject.toml, the host Python."""
    h = hashlib.sha256(os.path.realpath("/usr/bin/python3").encode())
    for path in sorted((ROOT / "gq").rglob("*.py")) + [ROOT / "pyproject.toml"]:
        h.update(b"\0" + str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:20]


def installed_docs() -> list[str]:
    """The files pyproject.toml's data-files install (the README, the runbook...)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        data_files = tomllib.load(f)["tool"]["setuptools"]["data-files"]
    return [name for names in data_files.values() for name in names]


def build_venv(dest: Path) -> None:
    """/usr/bin/python3 -m venv + pip install of a copy of the repo (non-editable), made to
    live at /opt/gq: the scripts' #! lines name /opt/gq/bin/python."""
    build = dest.with_name(f"{dest.name}.build-{os.getpid()}")
    shutil.rmtree(build, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="gq-src-") as src:
        # A copy: pip builds in the source tree, and the repo must stay as it is.
        shutil.copytree(ROOT / "gq", Path(src) / "gq", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md", "LICENSE", *installed_docs()):
            (Path(src) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, Path(src) / name)
        made = run("/usr/bin/python3", "-m", "venv", str(build))
        if made.returncode != 0 and "ensurepip" in made.stdout + made.stderr:
            try:
                install("python3-venv")
            except PackageError as e:
                pytest.fail(f"/usr/bin/python3 -m venv needs ensurepip: {e}")
            shutil.rmtree(build, ignore_errors=True)
            made = run("/usr/bin/python3", "-m", "venv", str(build))
        if made.returncode != 0:
            pytest.fail(f"/usr/bin/python3 -m venv failed:\n{made.stdout}{made.stderr}")
        pip = run(str(build / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                  src, timeout=900)
        if pip.returncode != 0:
            shutil.rmtree(build, ignore_errors=True)
            pytest.fail(f"pip install of gq into the test venv failed:\n{pip.stdout}{pip.stderr}")
    for script in (build / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if str(build).encode() in data:
                script.write_bytes(data.replace(str(build).encode(), VENV_IN_CONTAINER.encode()))
    check = run(str(build / "bin" / "python"), "-c", "import gq, gevent, requests, prometheus_client, psutil")
    if check.returncode != 0:
        pytest.fail(f"the test venv cannot import gq:\n{check.stderr}")
    for path in [build, *build.rglob("*")]:  # readable by gq's dynamic user
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    build.rename(dest)


@pytest.fixture(scope="session")
def gq_venv() -> Path:
    """A venv holding gq for the container, cached by venv_key() across runs."""
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    VENV_CACHE.chmod(0o755)
    dest = VENV_CACHE / venv_key()
    with open(VENV_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dest / "bin" / "gq").exists():
            shutil.rmtree(dest, ignore_errors=True)
            build_venv(dest)
        os.utime(dest)  # last used now
        # Builds of other sources, unused for an hour, go (a concurrent run may use a recent one).
        for old in VENV_CACHE.iterdir():
            if old != dest and old.name != ".lock" and time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
    return dest


# -- the container


@dataclass
class Response:
    status: int
    text: str

    def json(self):
        return json.loads(self.text)


HTTP_CLIENT = r"""
import json, sys, urllib.error, urllib.request
method, url, body, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
data = body.encode() if body else None
headers = {"Content-Type": "application/json"} if data is not None else {}
try:
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=timeout) as r:
        status, text = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read().decode()
except OSError as e:
    status, text = 0, repr(e)
print(json.dumps({"status": status, "text": text}))
"""

UNIX_HTTP_GET = r"""
import http.client, json, socket, sys
class Connection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(sys.argv[1])
try:
    c = Connection("localhost")
    c.request("GET", sys.argv[2])
    r = c.getresponse()
    status, text = r.status, r.read().decode()
except OSError as e:
    status, text = 0, repr(e)
print(json.dumps({"status": status, "text": text}))
"""

JOURNAL_ROWS = r"""
import glob, json, os, shutil, sqlite3, sys, tempfile
path = sys.argv[1]
with tempfile.TemporaryDirectory() as d:  # a copy: the file belongs to gq's dynamic user
    for f in [path, path + "-wal"]:
        if os.path.exists(f):
            shutil.copy(f, d)
    db = sqlite3.connect(os.path.join(d, os.path.basename(path)))
    print(json.dumps(dict(db.execute("SELECT id, state FROM jobs").fetchall())))
    db.close()
"""


class Container:
    def __init__(self, nspawn: str, venv: Path):
        self.nspawn, self.venv = nspawn, venv
        self.machine = f"gqtest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.work = Path(tempfile.mkdtemp(prefix="gq-nspawn-"))
        self.units = self.work / "units"   # /etc/systemd/system
        self.etc = self.work / "etc-gq"    # /etc/gq
        self.proc: subprocess.Popen | None = None
        self.leader = 0
        self.cgroups: list[Path] = []
        self.target_proc: subprocess.Popen | None = None
        self.target_url = ""

    # -- lifecycle

    def boot(self) -> None:
        for d in (self.work, self.units, self.etc):
            d.mkdir(exist_ok=True)
            d.chmod(0o755)
        # A fixed machine-id: no first boot (no firstboot, no preset-all of the host's units).
        (self.work / "machine-id").write_text(uuid.uuid4().hex + "\n")
        (self.units / "systemd-machine-id-commit.service").symlink_to("/dev/null")
        # No systemd on the host: nspawn gets a parent cgroup of its own (both hierarchies on
        # a hybrid host), removed at the end.
        root = Path("/sys/fs/cgroup")
        if run("stat", "-fc", "%T", str(root)).stdout.strip() == "cgroup2fs":
            self.cgroups = [root / self.machine]
        else:
            self.cgroups = [root / h / self.machine for h in ("systemd", "unified") if (root / h).is_dir()]
        try:
            for c in self.cgroups:
                c.mkdir()
        except OSError as e:
            no_systemd(f"cannot create a cgroup for the container: {e}")
        binds = [
            f"--bind-ro={self.work / 'machine-id'}:/etc/machine-id",
            f"--bind={self.units}:/etc/systemd/system",
            f"--bind-ro={UNITS / 'gq.service'}:/etc/systemd/system/gq.service",
            f"--bind-ro={UNITS / 'gq.socket'}:/etc/systemd/system/gq.socket",
            f"--bind={self.etc}:/etc/gq",
            f"--bind-ro={self.venv}:{VENV_IN_CONTAINER}",
            f"--bind-ro={TESTS}:{TESTS_IN_CONTAINER}",
        ]
        command = [self.nspawn, "--quiet", "--register=no", "--keep-unit", f"--machine={self.machine}",
                   "--directory=/", "--volatile=yes", "--private-network", *binds, "--boot", "--console=pipe"]
        join = " && ".join(f"echo $$ > {c}/cgroup.procs" for c in self.cgroups) or "true"
        self.log_file = open(self.work / "nspawn.log", "w")
        self.proc = subprocess.Popen(["sh", "-c", f'{join} && exec "$@"', "sh", *command],
                                     stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=CLEAN_ENV, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.leader:
            if self.proc.poll() is not None:
                no_systemd(f"systemd-nspawn exited with {self.proc.returncode}: {self.nspawn_log()}")
            if time.monotonic() > deadline:
                no_systemd(f"no systemd in the container after 30s: {self.nspawn_log()}")
            self.leader = self._child_named("systemd")
            time.sleep(0.05)
        state = ""
        deadline = time.monotonic() + 60
        while state not in ("running", "degraded"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                no_systemd(f"systemd in the container did not finish booting ({state!r}): {self.nspawn_log()}")
            state = self.sh("timeout", "30", "systemctl", "is-system-running", "--wait", timeout=40).stdout.strip()
            if state not in ("running", "degraded"):
                time.sleep(0.2)
        self.boot_state = state
        self._start_target()

    def _child_named(self, comm: str) -> int:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            if ppid == self.proc.pid and name == comm:
                return int(stat.parent.name)
        return 0

    def nspawn_log(self) -> str:
        return (self.work / "nspawn.log").read_text()[-3000:]

    def _start_target(self) -> None:
        """tests/support/target.py inside the container (its network is private), on the venv's python."""
        self.target_proc = subprocess.Popen(
            ["nsenter", "-t", str(self.leader), "-a", f"{VENV_IN_CONTAINER}/bin/python",
             f"{TESTS_IN_CONTAINER}/target.py", "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=CLEAN_ENV, text=True)
        ready, _, _ = select.select([self.target_proc.stdout], [], [], 30)
        line = self.target_proc.stdout.readline() if ready else ""
        if not line.startswith("listening "):
            pytest.fail(f"the target did not start in the container: {line!r}")
        self.target_url = f"http://127.0.0.1:{int(line.split()[1])}"

    def teardown(self) -> None:
        if self.target_proc is not None and self.target_proc.poll() is None:
            # nsenter forked the target (a new pid namespace): end the child and let nsenter
            # reap it and exit. Killing nsenter first would leave the target a zombie of the
            # host's PID 1, which systemd-shutdown in the container then waits for.
            for child in self._children(self.target_proc.pid):
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.target_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.target_proc.kill()
                self.target_proc.wait(10)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # nspawn: a clean halt of the container
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if hasattr(self, "log_file"):
            self.log_file.close()
        deadline = time.monotonic() + 10  # the last processes may still be exiting
        while any(c.is_dir() for c in self.cgroups) and time.monotonic() < deadline:
            for cgroup in self.cgroups:
                for d, _, _ in sorted(os.walk(cgroup), key=lambda w: -w[0].count("/")):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
            if any(c.is_dir() for c in self.cgroups):
                time.sleep(0.1)
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.machine}", ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    @staticmethod
    def _children(pid: int) -> list[int]:
        try:
            tasks = Path(f"/proc/{pid}/task").iterdir()
            return [int(c) for t in tasks for c in (t / "children").read_text().split()]
        except OSError:
            return []

    # -- inside the container

    def sh(self, *args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(self.leader), "-a", *args], capture_output=True, text=True,
                              timeout=timeout, env=CLEAN_ENV, input=input)

    def systemctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return self.sh("systemctl", "--no-pager", *args, timeout=timeout)

    def prop(self, name: str, unit: str = "gq.service") -> str:
        return self.systemctl("show", "-P", name, unit).stdout.strip()

    def http(self, method: str, url: str, body=None, timeout: float = 10) -> Response:
        """An HTTP request made inside the container; status 0 when no connection."""
        if url.startswith("/"):
            url = API + url
        data = "" if body is None else json.dumps(body)
        out = self.sh("/usr/bin/python3", "-I", "-c", HTTP_CLIENT, method, url, data, str(timeout),
                      timeout=timeout + 30)
        if out.returncode != 0:
            pytest.fail(f"HTTP client in the container failed: {out.stderr}")
        return Response(**json.loads(out.stdout))

    def cursor(self) -> str:
        """Where the journal ends now: journal(after=...) shows what comes later."""
        out = self.sh("journalctl", "-n", "1", "-o", "json", "--no-pager")
        return json.loads(out.stdout)["__CURSOR"] if out.stdout.strip() else ""

    def journal(self, unit: str = "gq.service", after: str = "") -> str:
        args = ["journalctl", "--no-pager", "-o", "cat", "-u", unit]
        if after:
            args.append(f"--after-cursor={after}")
        return self.sh(*args).stdout

    def wait_journal(self, text: str, after: str = "", unit: str = "gq.service", timeout: float = 15) -> str:
        return wait_for(lambda: (lambda j: j if text in j else None)(self.journal(unit, after)), timeout,
                        what=f"{text!r} in the journal of {unit}")

    def target_keys(self) -> set[str]:
        return {r["key"] for r in self.http("GET", f"{self.target_url}/_received").json()}

    def write_config(self, **sections) -> None:
        config = {
            "api": {"listen": "127.0.0.1:8765"},
            "target": {"url": f"{self.target_url}/hook"},
            "pool": {"size": 2},
            "shutdown": {"drain_timeout": DRAIN},
            "journal": {"path": "journal.sqlite3"},  # relative: in WorkingDirectory=/var/lib/gq
            "retry": {"backoff_base": 0.05, "backoff_max": 0.5},
        }
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        path = self.etc / "gq.toml"
        path.write_text(to_toml(config))
        path.chmod(0o644)

    def drop_in(self, name: str, text: str | None, unit: str = "gq.service") -> None:
        """/etc/systemd/system/UNIT.d/NAME (None: the directory removed), then daemon-reload."""
        d = self.units / f"{unit}.d"
        if text is None:
            shutil.rmtree(d, ignore_errors=True)
        else:
            d.mkdir(exist_ok=True)
            d.chmod(0o755)
            (d / name).write_text(text)
        assert self.systemctl("daemon-reload").returncode == 0

    def reset(self) -> None:
        """Every test starts from here: gq and its socket stopped, no drop-in, an empty state
        directory, the base config, a target with nothing received."""
        self.systemctl("stop", "gq.socket", "gq.service")
        self.systemctl("reset-failed", "gq.socket", "gq.service")
        for unit in ("gq.service", "gq.socket"):
            if (self.units / f"{unit}.d").exists():
                self.drop_in("", None, unit)
        self.sh("sh", "-c", f"rm -rf {STATE_DIR}/* {STATE_DIR}/.[!.]*")
        self.write_config()
        self.http("POST", f"{self.target_url}/_reset")

    def start(self) -> subprocess.CompletedProcess:
        started = self.systemctl("start", "gq.service")
        assert started.returncode == 0, f"{started.stderr}\n{self.journal()}"
        return started


@pytest.fixture(scope="session")
def container(nspawn, gq_venv):
    c = Container(nspawn, gq_venv)
    try:
        c.boot()
        yield c
    finally:
        c.teardown()


@pytest.fixture
def box(container):
    container.reset()
    return container


# -- the unit files, on the host


def test_unit_files_pass_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        no_systemd("systemd-analyze is not installed")
    # ExecStart must name an executable that exists: this interpreter's gq script, else itself.
    gq = Path(sys.executable).parent / "gq"
    gq = gq if os.access(gq, os.X_OK) else Path(sys.executable)
    service = (UNITS / "gq.service").read_text()
    assert "ExecStart=/opt/gq/bin/gq " in service
    (tmp_path / "gq.service").write_text(service.replace("/opt/gq/bin/gq", str(gq)))
    shutil.copy(UNITS / "gq.socket", tmp_path / "gq.socket")
    verified = run("systemd-analyze", "verify", str(tmp_path / "gq.service"), str(tmp_path / "gq.socket"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "gq." not in verified.stdout + verified.stderr, verified.stdout + verified.stderr


# -- under systemd


def test_container_boots(container):
    assert container.boot_state == "running", container.systemctl("--failed").stdout
    # The unit files are the shipped ones, untouched.
    for unit in ("gq.service", "gq.socket"):
        assert container.sh("cat", f"/etc/systemd/system/{unit}").stdout == (UNITS / unit).read_text()
    # Documentation= names the README that pip installed into the venv with gq.
    readme = container.prop("Documentation").split()[0].removeprefix("file://")
    assert readme == f"{VENV_IN_CONTAINER}/share/doc/gq/README.md"
    assert container.sh("test", "-s", readme).returncode == 0, readme


def test_start_blocks_until_ready_and_status_shows_the_figures(box):
    started = box.start()
    assert started.returncode == 0
    # The moment `systemctl start` returns, READY=1 has come: the API answers already.
    assert box.http("GET", "/healthz").status == 200
    assert box.http("GET", "/readyz").status == 200
    assert box.systemctl("is-active", "gq").stdout.strip() == "active"
    assert box.prop("SubState") == "running"
    assert re.match(r"running: queue 0/1000, workers 0/2 busy, 0 retrying, 0 succeeded, 0 dead$",
                    box.prop("StatusText")), box.prop("StatusText")
    status = box.systemctl("status", "gq", "-n", "0").stdout
    assert 'Status: "running: queue 0/1000, workers 0/2 busy' in status, status
    journal = box.wait_journal("ready: listening on http://127.0.0.1:8765")
    recovered = journal.find("journal journal.sqlite3: 0 unfinished job(s) recovered")
    assert 0 <= recovered < journal.find("ready: listening on"), journal
    assert "Traceback" not in journal
    # DynamicUser: gq does not run as root.
    pid = box.prop("MainPID")
    uid = re.search(r"^Uid:\s+(\d+)", box.sh("cat", f"/proc/{pid}/status").stdout, re.M).group(1)
    assert uid != "0"


def test_metrics_under_the_hardened_unit(box):
    box.start()
    metrics = box.http("GET", "/metrics")
    assert metrics.status == 200, f"/metrics answered {metrics.status}; gq's log:\n{box.journal()[-2500:]}"
    assert "gq_jobs_accepted_total" in metrics.text
    # The contract promises the standard process_* collectors too.
    assert "process_resident_memory_bytes" in metrics.text, \
        "no process_* metrics under the shipped unit's hardening"
    assert "process_open_fds" in metrics.text and "gq_connections" in metrics.text


def test_jobs_reach_the_target(box):
    box.start()
    jobs = [{"json": {"n": i}} for i in range(5)] + [{"url": f"{box.target_url}/other?delay=0.2"}]
    answer = box.http("POST", "/v1/jobs", jobs)
    assert answer.status == 202, answer.text
    ids = answer.json()["ids"]
    wait_for(lambda: set(ids) <= box.target_keys(), what="every job at the target")
    for job_id in ids:
        wait_for(lambda: box.http("GET", f"/v1/jobs/{job_id}").json()["state"] == "succeeded",
                 what=f"job {job_id} succeeded")
    received = box.http("GET", f"{box.target_url}/_received").json()
    assert {r["path"] for r in received} == {"/hook", "/other"}
    assert all(r["headers"]["user-agent"].startswith("gq/") for r in received)
    # The journal is in the state directory of the dynamic user.
    assert box.sh("readlink", "/var/lib/gq").stdout.strip() == "private/gq"
    assert box.sh("test", "-s", f"{STATE_DIR}/journal.sqlite3").returncode == 0


def test_log_lines_are_stored_at_their_priority(box):
    # journald reads each line's <N> prefix: `journalctl -p` then finds gq's lines by level.
    box.write_config(log={"level": "debug"})
    mark = box.cursor()
    box.start()
    jobs = [{"id": "fine", "url": f"{box.target_url}/hook"},
            {"id": "gone", "url": f"{box.target_url}/hook?fail=1&fail_status=404"}]
    assert box.http("POST", "/v1/jobs", jobs).status == 202
    box.wait_journal("job gone dead after 1 attempt(s)", after=mark)
    box.wait_journal("job fine succeeded", after=mark)
    (box.etc / "gq.toml").write_text('[pool]\nsize = "ten"\n')
    assert box.systemctl("reload", "gq").returncode == 0
    box.wait_journal("reload: the config is unchanged", after=mark)

    pid = box.prop("MainPID")

    def entries(priority: str) -> list[tuple[int, str]]:
        # This run's lines by its PID: with a filter, --after-cursor also skips the first match.
        out = box.sh("journalctl", "--no-pager", "-o", "json", "-u", "gq.service", "-p", priority,
                     f"_PID={pid}").stdout
        return [(int(e["PRIORITY"]), e["MESSAGE"]) for e in map(json.loads, out.splitlines())]

    errors, infos, every = entries("err"), entries("info"), entries("debug")
    assert {p for p, _ in errors} == {3} and any("reload: config error: " in m for _, m in errors), errors
    assert not any("ready: listening" in m for _, m in errors), errors
    assert (6, next(m for _, m in every if "ready: listening" in m)) in infos
    assert any(p == 4 and "job gone dead" in m for p, m in infos), infos
    assert not any("job fine succeeded" in m for _, m in infos), infos
    assert any(p == 7 and "job fine succeeded" in m for p, m in every), every
    # journald stamps each line: gq adds no timestamp, and no prefix is left in the message.
    assert all(re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) gq", m) for _, m in every), every


def test_reload_applies_pool_size_in_the_same_process(box):
    box.start()
    pid = box.prop("MainPID")
    assert box.http("GET", "/v1/status").json()["pool_size"] == 2
    box.write_config(pool={"size": 5})
    mark = box.cursor()
    reloaded = box.systemctl("reload", "gq")
    assert reloaded.returncode == 0, reloaded.stderr
    # ExecReload is `kill -HUP`, asynchronous on systemd 252: poll for the new size.
    wait_for(lambda: box.http("GET", "/v1/status").json()["pool_size"] == 5, timeout=15,
             what="pool_size 5 after reload")
    assert box.prop("MainPID") == pid
    assert box.prop("NRestarts") == "0"
    assert box.systemctl("is-active", "gq").stdout.strip() == "active"
    box.wait_journal("reload: applied pool.size", after=mark)
    wait_for(lambda: "workers 0/5 busy" in box.prop("StatusText"), timeout=15, what="STATUS= with the new size")


def test_reload_with_a_broken_config_keeps_gq_running(box):
    box.start()
    pid = box.prop("MainPID")
    (box.etc / "gq.toml").write_text('[pool]\nsize = "ten"\n')
    mark = box.cursor()
    assert box.systemctl("reload", "gq").returncode == 0
    journal = box.wait_journal("reload: the config is unchanged", after=mark)
    assert "reload: config error: /etc/gq/gq.toml: pool.size" in journal, journal
    assert box.systemctl("is-active", "gq").stdout.strip() == "active"
    assert box.prop("MainPID") == pid
    assert box.http("GET", "/healthz").status == 200
    assert box.http("GET", "/v1/status").json()["pool_size"] == 2


def test_stop_drains_and_what_is_left_runs_at_the_next_start(box):
    box.start()
    # 6 four-second jobs on 2 workers: the 2 in flight outlast the 2.5 s drain, which starts
    # none of the 4 queued (their timeout, 10 s, would outlast it too).
    answer = box.http("POST", "/v1/jobs", [{"url": f"{box.target_url}/hook?delay=4", "json": {"n": i}}
                                           for i in range(6)])
    assert answer.status == 202, answer.text
    ids = set(answer.json()["ids"])
    wait_for(lambda: box.http("GET", "/v1/status").json()["pool_busy"] == 2, what="2 jobs in flight")
    mark = box.cursor()
    started = time.monotonic()
    stopped = box.systemctl("stop", "gq")
    took = time.monotonic() - started
    assert stopped.returncode == 0, stopped.stderr
    assert took >= DRAIN - 0.5, f"systemctl stop returned after {took:.2f}s: it did not wait for the drain"
    journal = box.wait_journal("left unfinished; they run at the next start", after=mark)
    assert f"SIGTERM: draining for up to {DRAIN:g}s" in journal, journal
    assert box.prop("Result") == "success"
    assert box.prop("ExecMainStatus") == "0"
    assert box.systemctl("is-active", "gq").stdout.strip() == "inactive"

    # The leftovers are in the journal file, in the dynamic user's state directory.
    rows = json.loads(box.sh("/usr/bin/python3", "-I", "-c", JOURNAL_ROWS, f"{STATE_DIR}/journal.sqlite3").stdout)
    assert set(rows) == ids
    left = {i for i, state in rows.items() if state not in ("succeeded", "dead")}
    assert left, rows
    m = re.search(r"with (\d+) queued and (\d+) in flight left unfinished", journal)
    assert m and int(m.group(1)) + int(m.group(2)) == len(left), (journal, rows)

    mark = box.cursor()
    box.start()
    box.wait_journal(f"journal journal.sqlite3: {len(left)} unfinished job(s) recovered", after=mark)
    for job_id in left:
        wait_for(lambda: box.http("GET", f"/v1/jobs/{job_id}").json()["state"] == "succeeded",
                 what=f"leftover job {job_id} succeeded after the restart")
    assert ids <= box.target_keys()


def test_a_start_that_outlasts_timeoutstartsec_goes_on_while_it_makes_progress(box):
    # A journal of the earlier layout is rewritten before gq listens, some 15 s per million
    # jobs: with TimeoutStartSec=1s, systemd would kill that start and start it again, for
    # ever. gq asks for more time each second (EXTEND_TIMEOUT_USEC) while the hub runs.
    box.start()  # the dynamic user's state directory, made by systemd
    assert box.systemctl("stop", "gq").returncode == 0
    path = f"{STATE_DIR}/journal.sqlite3"
    box.sh("sh", "-c", f"rm -f {path}*")
    made = box.sh(f"{VENV_IN_CONTAINER}/bin/python", f"{TESTS_IN_CONTAINER}/earlier_journal.py", path,
                  f"{box.target_url}/hook", str(600_000), timeout=120)
    assert made.returncode == 0, made.stderr
    assert box.sh("chown", f"--reference={STATE_DIR}", path).returncode == 0
    box.drop_in("start.conf", "[Service]\nTimeoutStartSec=1s\n")
    mark = box.cursor()
    box.start()
    took = (int(box.prop("ActiveEnterTimestampMonotonic")) - int(box.prop("ExecMainStartTimestampMonotonic"))) / 1e6
    assert took > 2, f"the start took {took:.2f}s: too short to show TimeoutStartSec extended"
    assert box.prop("NRestarts") == "0" and box.prop("ActiveState") == "active"
    journal = box.journal(after=mark)
    assert "upgrading the file's layout for about 600000 job(s)" in journal, journal
    assert "timed out" not in journal.lower(), journal
    wait_for(lambda: "q0" in box.target_keys(), what="a job of the upgraded file delivered")


def test_an_admin_command_holding_the_journal_delays_the_start_and_never_fails_it(box):
    # `gq jobs replay` (root's, outside the unit) holds the journal's lock while it runs; its
    # output is not read here, so it stops in the middle, as one piped to a pager would. gq
    # exiting at once, as it did, was restarted each second until the start limit, then left
    # down. Now it waits, past TimeoutStartSec=1s (asking for more time), naming the command.
    ids = [f"{n:04d}-".ljust(100, "x") for n in range(2000)]  # their output overfills a pipe
    box.write_config(pool={"size": 20})
    box.start()
    url = f"{box.target_url}/hook?fail=1&fail_status=404"  # dead at the first attempt, delivered at the next
    for start in range(0, len(ids), 500):
        answer = box.http("POST", "/v1/jobs", [{"id": i, "url": url} for i in ids[start:start + 500]])
        assert answer.status == 202, answer.text
    wait_for(lambda: box.http("GET", "/v1/status").json()["jobs"]["dead"] == len(ids), what="every job dead")
    assert box.systemctl("stop", "gq").returncode == 0
    box.drop_in("start.conf", "[Service]\nTimeoutStartSec=1s\n")

    def replayed_so_far() -> int:
        rows = box.sh("/usr/bin/python3", "-I", "-c", JOURNAL_ROWS, f"{STATE_DIR}/journal.sqlite3").stdout
        return list(json.loads(rows).values()).count("queued")

    def received() -> Counter:
        return Counter(r["key"] for r in box.http("GET", f"{box.target_url}/_received").json())

    replay = subprocess.Popen(
        ["nsenter", "-t", str(box.leader), "-a", "sh", "-c",
         f"cd /var/lib/gq && exec {VENV_IN_CONTAINER}/bin/gq jobs replay --state dead -c /etc/gq/gq.toml"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLEAN_ENV)
    try:
        wait_for(replayed_so_far, what="the replay to be under way")  # holding the lock until it ends
        mark = box.cursor()
        assert box.systemctl("start", "--no-block", "gq").returncode == 0
        wait_for(lambda: box.prop("ActiveState") == "activating", what="the start to begin")
        observed_until = time.monotonic() + 3  # three times TimeoutStartSec
        while time.monotonic() < observed_until:
            assert (box.prop("ActiveState"), box.prop("NRestarts")) == ("activating", "0"), box.journal(after=mark)
            time.sleep(0.2)
        status = box.prop("StatusText")
        named = re.fullmatch(r"starting: waiting for (gq jobs replay \(pid (\d+)\)) to let the journal "
                             r"journal\.sqlite3 go", status)
        assert named, status
        assert "jobs\0replay" in box.sh("cat", f"/proc/{named[2]}/cmdline").stdout  # the pid is the command's
        box.wait_journal(f"{named[1]} holds it; gq run starts once it is done", after=mark)
        assert replay.poll() is None, "the command was done before gq waited for it"
        out, err = replay.communicate(timeout=60)
    finally:
        replay.kill()
    assert (replay.returncode, err) == (0, ""), err
    assert sorted(out.split()) == ids
    wait_for(lambda: box.prop("ActiveState") == "active", what="gq to start once the command is done")
    assert box.prop("NRestarts") == "0"
    journal = box.journal(after=mark)
    assert "taken after waiting" in journal and "timed out" not in journal.lower(), journal
    wait_for(lambda: received() == Counter(ids * 2), what="each replayed job delivered once more")


def test_watchdog_restarts_a_hung_gq(box):
    box.drop_in("watchdog.conf", "[Service]\nWatchdogSec=3s\n")
    box.start()
    assert box.prop("WatchdogUSec") == "3s"  # the running service's: WATCHDOG_USEC=3000000
    pid, restarts = box.prop("MainPID"), int(box.prop("NRestarts"))
    # systemd receives the pings: the watchdog timestamp moves.
    first = wait_for(lambda: int(box.prop("WatchdogTimestampMonotonic") or 0), what="a first WATCHDOG=1")
    wait_for(lambda: int(box.prop("WatchdogTimestampMonotonic")) > first, what="a later WATCHDOG=1")
    assert box.prop("MainPID") == pid

    mark = box.cursor()
    killed = box.systemctl("kill", "-s", "SIGSTOP", "--kill-who=main", "gq")
    assert killed.returncode == 0, killed.stderr
    wait_for(lambda: int(box.prop("NRestarts")) > restarts and box.prop("MainPID") not in ("0", pid)
             and box.prop("ActiveState") == "active", timeout=30, what="a restart by the watchdog")
    journal = box.wait_journal("Watchdog timeout", after=mark)
    assert "status=6/ABRT" in journal, journal
    assert box.http("GET", "/healthz").status == 200


def test_socket_activation(box):
    mark = box.cursor()
    assert box.systemctl("start", "gq.socket").returncode == 0
    assert box.systemctl("is-active", "gq.socket").stdout.strip() == "active"
    assert box.systemctl("is-active", "gq.service").stdout.strip() == "inactive"
    # The first connection starts gq, and waits in the backlog until it serves.
    health = box.http("GET", "/healthz", timeout=30)
    assert health.status == 200, health.text
    assert box.systemctl("is-active", "gq.service").stdout.strip() == "active"
    journal = box.wait_journal("serving on the socket systemd passed", after=mark)
    assert "cannot listen" not in journal
    assert box.http("GET", "/readyz").status == 200
    answer = box.http("POST", "/v1/jobs", {"json": {"via": "socket"}})
    assert answer.status == 202, answer.text
    wait_for(lambda: answer.json()["id"] in box.target_keys(), what="the job at the target")


def test_socket_activation_on_a_unix_socket(box):
    # An operator's drop-in: gq.socket on a unix socket instead (e.g. behind a local proxy).
    box.drop_in("unix.conf", "[Socket]\nListenStream=\nListenStream=/run/gq.sock\nSocketMode=0666\n",
                unit="gq.socket")
    mark = box.cursor()
    assert box.systemctl("start", "gq.socket").returncode == 0
    got = box.sh("/usr/bin/python3", "-I", "-c", UNIX_HTTP_GET, "/run/gq.sock", "/healthz")
    health = Response(**json.loads(got.stdout))
    journal = box.journal(after=mark)
    assert "Traceback" not in journal, journal[-3000:]
    assert health.status == 200, f"{health}; gq's log:\n{journal[-3000:]}"
    assert "serving on the socket systemd passed" in journal


def test_socket_activation_does_not_bypass_the_token_rule(box):
    # No api.token: the contract allows only a loopback listen. A gq.socket on all addresses
    # (the container's network is private: only its loopback exists) must not open /v1/*
    # without a token, just as api.listen = "0.0.0.0:8765" is refused.
    box.drop_in("any.conf", "[Socket]\nListenStream=\nListenStream=0.0.0.0:8765\n", unit="gq.socket")
    mark = box.cursor()
    assert box.systemctl("start", "gq.socket").returncode == 0
    status = box.http("GET", "/v1/status")
    assert status.status != 200, (
        f"gq serves /v1/status without a token on a socket bound to 0.0.0.0:\n{box.journal(after=mark)[-2000:]}")
