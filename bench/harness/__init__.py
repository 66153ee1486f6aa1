"""What every scenario of the benchmark stands on: processes pinned to a core with their
CPU accounted (proc), the target (target), gq's configs, job files and daemon (gq), the
context and the record of a run (context), measuring a delivery process and its ratios to
the baseline (measure), the report's table (report), and the helpers shared with the
tests (shared). The scenarios themselves are in bench/scenarios/."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
PY = sys.executable


class BenchError(Exception):
    """A run could not be carried out (a process did not start, answer or stop)."""


class Skipped(BenchError):
    """A scenario this machine cannot run (a program it needs is missing): not a failure."""


class TimedOut(BenchError):
    """A condition waited for did not come true in time."""
