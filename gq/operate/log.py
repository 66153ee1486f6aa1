"""Logging: text lines for terminals and journald, JSON lines for log shippers."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from gq.core import redaction

TEXT = "%(levelname)s %(name)s: %(message)s"

# sd-daemon(3) priorities, read by journald from the start of each line it is handed.
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class JournaldFormatter(logging.Formatter):
    """Text lines without a timestamp (journald stamps each line itself), each one, a
    traceback's too, led by its record's priority, so that `journalctl -p err` finds it."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def _priority(levelno: int) -> int:
    """The priority of the highest standard level at or below `levelno`."""
    return next((p for level, p in PRIORITIES.items() if levelno >= level), 7)


def to_journald(stream: object) -> bool:
    """Whether `stream` is the one systemd connected to journald: JOURNAL_STREAM names
    its device and inode. A service that sends stderr elsewhere keeps plain lines."""
    named = os.environ.get("JOURNAL_STREAM", "")
    fileno = getattr(stream, "fileno", None)
    if not named or fileno is None:
        return False
    try:
        info = os.fstat(fileno())
    except (OSError, ValueError):
        return False
    return named == f"{info.st_dev}:{info.st_ino}"


class RedactingHandler(logging.StreamHandler):
    """Each line, a traceback's too, scrubbed of the configured secrets once formatted
    (gq/core/redaction.py): whatever a message quotes, no secret leaves in a log line."""

    def format(self, record: logging.LogRecord) -> str:
        return redaction.KNOWN.scrub(super().format(record))


def setup(level: str = "info", fmt: str = "text") -> None:
    """Route gq's logs to stderr in `fmt`; safe to call again (a reload changes the level)."""
    handler = RedactingHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif to_journald(sys.stderr):
        handler.setFormatter(JournaldFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s " + TEXT))
    root = logging.getLogger("gq")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # urllib3 warns about targets' malformed answers, quoting URLs (secrets in query strings
    # included) with tracebacks; gq reports each attempt's error itself.
    urllib3 = logging.getLogger("urllib3")
    urllib3.handlers[:] = [logging.NullHandler()]
    urllib3.propagate = False
