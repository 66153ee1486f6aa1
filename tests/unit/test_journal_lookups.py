"""Look-ups in the journal file, in process: a job is shown as the file holds it."""

from __future__ import annotations

import json
import threading
import time

import gevent

from gq.broker import Filter, State
from gq.broker.journal_access import JournalAccess
from gq.broker.journal_file import JournalFile
from gq.broker.journal_lookups import READ_BYTES
from gq.core.job import parse


def test_a_looked_up_job_shows_its_request_as_parsing_it_would(tmp_path):
    journal = JournalFile(str(tmp_path / "journal.sqlite3"))
    job = parse({"id": "a", "method": "put", "url": "http://user:pw@127.0.0.1:9/hook",
                 "headers": {"Authorization": "Bearer s", "X-Tenant": "t1"}, "json": {"n": 1},
                 "timeout": 3, "max_attempts": 2, "delay": 60, "ordering_key": "k"}, now=1000.0)
    journal.write([([job], 0)], 10, 1000.0, [], (), (), ())
    got = journal.get("a")
    assert got is not None
    found = list(journal.find(Filter(), 10))
    assert [e.job.id for e, _ in found] == ["a"]
    for entry in (got, found[0][0]):
        assert entry.state is State.SCHEDULED
        assert entry.job.shown() == job.shown()
        assert (entry.job.timeout, entry.job.max_attempts, entry.job.run_at, entry.job.ordering_key) == (
            3.0, 2, job.run_at, "k")
        assert entry.status()["request"]["headers"] == {"Authorization": "<redacted>", "X-Tenant": "t1"}
    journal.close()


def test_a_row_that_is_no_longer_a_job_is_looked_up_as_it_is(tmp_path):
    journal = JournalFile(str(tmp_path / "journal.sqlite3"))
    spec = {"id": "bad", "url": "ftp://x/", "headers": {"Cookie": "c", "X-Odd": 7}, "run_at": "soon", "timeout": True}
    journal.db.execute("INSERT INTO jobs (id, spec, state, due, accepted_at) VALUES ('bad', ?, 'dead', 0, 5)",
                       (json.dumps(spec),))
    journal.db.execute("INSERT INTO jobs (id, spec, state, due, accepted_at) VALUES ('worse', '[1]', 'dead', 0, 4)")
    bad, worse = (journal.get(i) for i in ("bad", "worse"))
    assert bad is not None and worse is not None
    assert bad.status()["request"] == {"method": "", "url": "ftp://x/", "headers": {"Cookie": "<redacted>", "X-Odd": 7}}
    assert (bad.job.run_at, bad.job.timeout) == (None, None)
    assert worse.status()["request"] == {"method": "", "url": "", "headers": {}}
    assert [e.job.id for e, _ in journal.find(Filter(state=State.DEAD), 10)] == ["bad", "worse"]
    journal.close()


def test_a_page_of_large_jobs_is_read_a_few_at_a_time_each_once_in_order(tmp_path):
    journal = JournalFile(str(tmp_path / "journal.sqlite3"))
    large = [parse({"id": f"h{n}", "url": "http://127.0.0.1:9/", "headers": {"X-Large": "v" * (READ_BYTES // 3)}})
             for n in range(10)]
    journal.write([(large, 0)], 100, 1000.0, [], (), (), ())
    positions = journal.positions(Filter(), 100)
    first, start = journal.rows(positions, 0, READ_BYTES)
    assert [e.job.id for e, _ in first] == ["h9", "h8", "h7"] and start == 3  # those fill a read
    journal.db.execute("DELETE FROM jobs WHERE id = 'h6'")  # gone between two reads: passed over
    assert [e.job.id for e, _ in journal.find(Filter(), 100)] == [f"h{n}" for n in (9, 8, 7, 5, 4, 3, 2, 1, 0)]
    journal.close()


def test_a_look_up_leaves_the_jobs_bodies_in_the_file(tmp_path):
    journal = JournalFile(str(tmp_path / "journal.sqlite3"))
    bodies = [parse({"id": f"b{n}", "url": "http://127.0.0.1:9/", "body": "b" * READ_BYTES,
                     "headers": {"X-N": str(n)}}) for n in range(10)]
    journal.write([(bodies, 0)], 100, 1000.0, [], (), (), ())
    read, start = journal.rows(journal.positions(Filter(), 100), 0, READ_BYTES)
    assert len(read) == start == 10  # one read: their bodies are not read
    assert [e.job.headers for e, _ in read] == [{"X-N": str(n)} for n in range(9, -1, -1)]
    journal.close()


def test_the_journal_is_closed_only_once_no_thread_uses_it(tmp_path):
    # A greenlet killed while its call runs in the threadpool (the dispatcher's feeder, at a
    # stop) leaves the thread on the connection: closing under it crashed gq.
    access = JournalAccess(str(tmp_path / "journal.sqlite3"))
    started, finished = threading.Event(), []

    def slow(journal: JournalFile) -> None:
        started.set()
        time.sleep(0.5)
        finished.append(journal.db.execute("SELECT count(*) FROM jobs").fetchone()[0])

    caller = gevent.spawn(access.write, slow)
    while not started.is_set():
        gevent.sleep(0.01)
    caller.kill()
    access.close()
    assert finished == [0]


def _plans(journal: JournalFile, where: Filter) -> list[str]:
    """The query plans of the statements a page of `where` runs."""
    statements: list[str] = []
    journal.db.set_trace_callback(statements.append)
    try:
        journal.positions(where, 100)
    finally:
        journal.db.set_trace_callback(None)
    plans = []
    for sql in statements:  # traced with its values in place
        plans += [row[3] for row in journal.db.execute(f"EXPLAIN QUERY PLAN {sql}")]
    return plans


def test_an_ordering_key_is_found_through_an_index_and_an_id_prefix_through_the_ids(tmp_path):
    journal = JournalFile(str(tmp_path / "journal.sqlite3"))
    jobs = [parse({"id": f"{kind}-{n}", "url": "http://127.0.0.1:9/", "ordering_key": f"k{n % 3}"})
            for kind in ("order", "mail") for n in range(30)]
    journal.write([(jobs, 0)], 100, 1000.0, [], (), (), ())
    by_key = _plans(journal, Filter(key="k1"))
    assert by_key and all("INDEX jobs_ordering (ordering_key=? AND state=?)" in p for p in by_key), by_key
    assert not any("TEMP B-TREE" in p for p in by_key), by_key  # read in order: nothing sorted
    by_prefix = _plans(journal, Filter(prefix="mail-1", state=State.QUEUED))
    assert any("USING INDEX sqlite_autoindex_jobs_1 (id>? AND id<?)" in p for p in by_prefix), by_prefix
    assert not any(p.startswith("SCAN") for p in by_key + by_prefix)
    assert [e.job.id for e, _ in journal.find(Filter(prefix="mail-1"), 100)] == [
        f"mail-{n}" for n in range(19, 9, -1)] + ["mail-1"]
    journal.close()


def test_a_row_of_an_earlier_gq_shows_the_outcomes_its_attempts_tell(tmp_path):
    journal = JournalFile(str(tmp_path / "journal.sqlite3"))
    history = [[1.0, 0.1, 503, None, ""], [2.0, 0.1, None, "died: gq stopped during attempt 2", ""],
               [3.0, 0.1, 200, None, "ok"], [4.0, 0.1, 200, None, "", "retry"]]
    journal.db.execute("INSERT INTO jobs (id, spec, state, due, accepted_at, history) VALUES "
                       "('old', '{\"url\": \"http://x/\", \"body\": \"b\"}', 'succeeded', 0, 5, ?)",
                       (json.dumps(history),))
    entry = journal.get("old")
    assert entry is not None
    assert [a["outcome"] for a in entry.status()["history"]] == [None, "unknown", "success", "retry"]
    assert entry.status()["request"]["body"] == "b"
    journal.close()
