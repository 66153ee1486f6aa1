"""gq as the benchmark runs it: config files, job files, `gq batch`'s command line, and a
`gq run` daemon pinned to a core."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import psutil

from harness import PY, BenchError
from harness.context import Context
from harness.proc import MEASURED_CORE, Cores, Proc, cpu_seconds_of, request
from harness.shared import to_toml

GQ = ["-m", "gq"]                                       # how gq is started: `python -m gq ...`


def journal_path(ctx: Context, name: str) -> Path:
    return ctx.workdir / f"{name}.journal" / "journal.sqlite3"


def write_config(ctx: Context, name: str, *, pool: int, maxsize: int, url: str, journal: bool,
                 timeout: float = 30.0, listen: str | None = None, broker: dict | None = None,
                 seed: Path | None = None, move_seed: bool = False,
                 extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """A config file for run `name`; with a `seed` journal, its journal starts as a copy of it
    (`move_seed`: as the file itself, moved). `extra`: more keys, by section."""
    if seed is not None:
        journal_path(ctx, name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.move if move_seed else shutil.copyfile)(seed, journal_path(ctx, name))
    sections: dict[str, dict[str, Any]] = {
        "queue": {"maxsize": maxsize},
        "pool": {"size": pool},
        "target": {"url": url, "timeout": timeout},
        "retry": {"max_attempts": 1},    # a failure must show as a failure, not as a retry's delay
        "journal": {"path": str(journal_path(ctx, name)) if journal else ""},
        "log": {"level": "info"},
    }
    if listen:
        sections["api"] = {"listen": listen}
    if broker:
        sections["broker"] = broker
    for section, keys in (extra or {}).items():
        sections[section] = {**sections.get(section, {}), **keys}
    path = ctx.workdir / f"{name}.toml"
    path.write_text(to_toml(sections))
    return path


def job_body(seq: int) -> dict:
    """What every benchmark job carries (bench/baseline.py sends the same)."""
    return {"seq": seq, "event": "bench", "source": "gq-bench"}


def jobs(prefix: str, first: int, count: int, url: str | None = None) -> list[dict]:
    """gq jobs with ids `prefix<n>`; no url: the config's target.url."""
    return [{"id": f"{prefix}{n}", **({"url": url} if url else {}), "json": job_body(n)}
            for n in range(first, first + count)]


def write_jobs(ctx: Context, name: str, count: int) -> Path:
    path = ctx.workdir / f"{name}.jsonl"
    with open(path, "w") as f:
        for job in jobs(f"{name}-", 0, count):
            f.write(json.dumps(job, separators=(",", ":")) + "\n")
    return path


def batch_argv(ctx: Context, label: str, jobs_count: int, pool: int, url: str, journal: bool,
               processes: int = 1, launcher: list[str] = GQ, seed: Path | None = None) -> list[str]:
    """`gq batch` (after the interpreter) on a config and a jobs file of its own."""
    name = ctx.name(label + "-input")
    config = write_config(ctx, name, pool=pool, maxsize=max(1000, 2 * pool), url=url, journal=journal, seed=seed)
    return launcher + ["batch", *(["-p", str(processes)] if processes > 1 else []),
                       "-c", str(config), str(write_jobs(ctx, name, jobs_count))]


class Daemon:
    """`gq run` on the measured core (or on both), API on a free loopback port.

    Not the tests' Daemon (tests/support/): that one starts gq itself, unpinned and reaped
    by Popen, fails through pytest.fail and stops with SIGKILL, where a run here needs the
    daemon on its core from its first instruction, its own rusage (peak RSS), and a stop by
    SIGINT or SIGTERM whose exit code is checked."""

    def __init__(self, ctx: Context, label: str, cores: Cores = MEASURED_CORE, start_timeout: float = 30.0,
                 **config: Any):
        name = ctx.name(label)
        path = write_config(ctx, name, listen="127.0.0.1:0", **config)
        self.journal = journal_path(ctx, name) if config["journal"] else None
        self.proc = Proc(name, [PY, *GQ, "run", "-c", str(path)], ctx, cores)
        host, port = self.proc.wait_line(r"listening on http://(\S+?):(\d+)\b", start_timeout).groups()
        self.api = f"http://{host}:{port}"
        self.ps = psutil.Process(self.proc.pid)

    def status(self) -> dict:
        status, body = request("GET", f"{self.api}/v1/status")
        if status != 200:
            raise BenchError(f"daemon: /v1/status answered {status}")
        return body

    def submit(self, batch: list[dict]) -> None:
        status, body = request("POST", f"{self.api}/v1/jobs", batch)
        if status != 202:
            raise BenchError(f"daemon: POST /v1/jobs of {len(batch)} answered {status}: {body}")

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.ps)

    def succeeded(self) -> int:
        """Jobs it delivered, from its /metrics: gq_jobs_finished_total{outcome="succeeded"}."""
        status, text = request("GET", f"{self.api}/metrics")
        match = re.search(r'^gq_jobs_finished_total\{outcome="succeeded"\} (\S+)$', str(text), re.M)
        if status != 200 or not match:
            raise BenchError(f"daemon: /metrics answered {status} without gq_jobs_finished_total")
        return int(float(match.group(1)))

    def log_has(self, pattern: str) -> str | None:
        match = re.search(pattern, self.proc.err.read_text(errors="replace"))
        return match.group(0) if match else None

    def journal_rows(self) -> int | None:
        """Jobs in its journal file (read once it has exited)."""
        if self.journal is None or not self.journal.exists():
            return None
        db = sqlite3.connect(self.journal)
        try:
            return db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        finally:
            db.close()
