"""A page of GET /v1/jobs is bounded in bytes, not only in jobs: jobs as large as a large
api.max_body_bytes allows are listed a page at a time, each once, in answers of at most
PAGE_BYTES, while the daemon's memory stays flat; `gq jobs list` on the file too."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from urllib.parse import urlencode

import psutil

from support import Daemon, closed_port, fetch, gq_command, wait_for

MB = 2**20
JOURNAL = {"path": "data/journal.sqlite3"}
PAGE_BYTES = MB            # docs/jobs.md's bound on a page's answer
JOBS = 300
HEADERS = {f"X-Large-{n:02}": "v" * 25_000 for n in range(36)}  # some 0.9 MB of headers a job
PER_REQUEST = 15           # jobs a request: few, large requests
WALKS = 4                  # page walks at once
GROWTH = 64 * MB           # RSS the walks may add at most (a page of 1,000 such jobs once added 530 MB)
CLI_RSS = 128 * MB         # RSS of `gq jobs` on the file, at most (it once read a page of jobs whole)


def submit(daemon: Daemon, **fields) -> list[str]:
    """JOBS jobs of HEADERS, with `fields`, in few requests; their ids, oldest first."""
    url = f"http://127.0.0.1:{closed_port()}/hook"  # nothing listens
    ids = [f"large-{n:03}" for n in range(JOBS)]
    for start in range(0, JOBS, PER_REQUEST):
        response = daemon.post([{"id": i, "url": url, "headers": HEADERS, **fields}
                                for i in ids[start:start + PER_REQUEST]])
        assert response.status_code == 202, response.text
    return ids


def command_peak(daemon: Daemon, *args: str) -> tuple[list[str], int]:
    """`gq ARGS -c` the daemon's config, in its directory: its lines of output, and its peak RSS."""
    command = subprocess.Popen(gq_command(*args, "-c", str(daemon.config_path)), cwd=daemon.workdir,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with Peak(command.pid) as peak:
        out, err = command.communicate(timeout=60)
    assert (command.returncode, err) == (0, "")
    return out.splitlines(), peak.rss


def walk(daemon: Daemon, sizes: list[int], shown: list[dict]) -> list[str]:
    """The ids of every job, following `next` page after page (limit=1000); each answer's size
    is added to `sizes`, the request of each page's first job to `shown`."""
    ids: list[str] = []
    cursor = None
    while True:
        response = fetch(daemon, "/v1/jobs?" + urlencode({"limit": 1000, **({"cursor": cursor} if cursor else {})}),
                         timeout=60)
        assert response.status_code == 200, response.text[:300]
        sizes.append(len(response.content))
        page = response.json()
        assert page["jobs"], "a page moves on by one job at least"
        ids += [job["id"] for job in page["jobs"]]
        shown.append(page["jobs"][0]["request"])
        cursor = page["next"]
        if cursor is None:
            return ids


class Peak:
    """The largest RSS of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int):
        self.process, self.rss = psutil.Process(pid), 0
        self._done = threading.Event()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                self.rss = max(self.rss, self.process.memory_info().rss)
            except psutil.NoSuchProcess:  # a command that has exited
                return
            self._done.wait(0.01)

    def __enter__(self) -> Peak:
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def walks(daemon: Daemon, count: int, shown: list[dict]) -> tuple[list[list[str]], list[int], int]:
    """`count` page walks at once: the ids each listed, every answer's size, peak RSS."""
    found: list[list[str]] = [[] for _ in range(count)]
    sizes: list[int] = []
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            found[n] = walk(daemon, sizes, shown)
        except BaseException as e:  # reported by the test's thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    with Peak(daemon.pid) as peak:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return found, sizes, peak.rss


def test_pages_of_huge_jobs_stay_within_their_byte_budget_and_memory_stays_flat(start_daemon):
    """And `gq jobs list --json` on the journal's file reads them a few at a time."""
    daemon = start_daemon(journal=JOURNAL, api={"max_body_bytes": 16 * MB})
    ids = submit(daemon, delay=3600)  # never attempted: kept whole
    wait_for(lambda: daemon.status()["jobs"]["scheduled"] == JOBS, what="every job scheduled")
    process = psutil.Process(daemon.pid)
    before = process.memory_info().rss

    shown: list[dict] = []
    (one,), one_sizes, one_peak = walks(daemon, 1, shown)
    after_one = process.memory_info().rss
    found, sizes, peak = walks(daemon, WALKS, shown)
    after = process.memory_info().rss
    print(f"\nRSS {before / MB:.0f} MB before; one walk: peak {one_peak / MB:.0f} MB, then {after_one / MB:.0f} MB, "
          f"{len(one_sizes)} page(s), largest {max(one_sizes) / MB:.2f} MB; {WALKS} walks at once: peak "
          f"{peak / MB:.0f} MB, then {after / MB:.0f} MB, largest page {max(sizes) / MB:.2f} MB")

    newest_first = ids[::-1]
    for listed in (one, *found):
        assert listed == newest_first
    assert max(one_sizes + sizes) <= PAGE_BYTES
    assert len(one_sizes) > 1  # short of its limit of 1,000, a page said where the next one starts
    assert one_peak - before < GROWTH
    assert peak - before < GROWTH

    # A list shows a job's headers cut; the job, by its id, shows the whole request.
    for request in shown:
        assert request["truncated"] is True
        assert 0 < len(request["headers"]) < len(HEADERS)
        assert all(v == "v" * 256 + "…" for v in request["headers"].values()), request

    whole = fetch(daemon, f"/v1/jobs/{ids[0]}").json()["request"]
    assert whole["headers"] == HEADERS and "truncated" not in whole

    out, cli = command_peak(daemon, "jobs", "list", "--json", "--limit", "0")
    print(f"gq jobs list --json on the file: peak RSS {cli / MB:.0f} MB, {sum(map(len, out)) / MB:.2f} MB printed")
    lines = [json.loads(line) for line in out]
    assert [job["id"] for job in lines] == newest_first
    assert all(job["request"]["truncated"] for job in lines)
    assert cli < CLI_RSS


def test_a_replay_by_filter_on_the_file_reads_the_ids_of_huge_jobs_only(start_daemon):
    daemon = start_daemon(journal=JOURNAL, api={"max_body_bytes": 16 * MB}, retry={"max_attempts": 1})
    ids = submit(daemon)
    wait_for(lambda: daemon.status()["jobs"]["dead"] == JOBS, what="every job dead")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0

    replayed, cli = command_peak(daemon, "jobs", "replay", "--state", "dead")
    print(f"\ngq jobs replay --state dead on the file: peak RSS {cli / MB:.0f} MB")
    assert sorted(replayed) == ids
    assert cli < CLI_RSS
