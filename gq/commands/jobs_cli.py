"""`gq jobs`: list, show, cancel and replay the jobs of the journal the config names (daemon
running or not) or, with --api, of a running daemon; and how they are shown.

Where the jobs are is a JobsAdmin (gq.broker): journal.JournalAdmin on the file, or
gq.client.Client through the API. This module only reads the command line and prints.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import islice
from typing import Any, TextIO

from gq import config as config_
from gq.broker import REPLAYABLE, Conflict, Filter, JobsAdmin, Replayed, State
from gq.core import hosts
from gq.core.job import timestamp
from gq.core.outcome import UNKNOWN
from gq.errors import EXIT_FAILURE, EXIT_OK, GqError, UsageError

MISSING_HINT = "is gq running elsewhere? give -c FILE"  # when the config's journal is not there
LIMIT = 100             # jobs `gq jobs list` shows by default
WIDTHS_FROM = 1000      # rows that set the columns' widths; later rows keep them
LAST_WIDTH = 40         # characters of a last error a list shows (`show` has all of it)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LOCAL_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
COLUMNS = ("ID", "STATE", "ATTEMPTS", "LAST", "ACCEPTED", "HOST", "URL")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # a target's answer could move a terminal's cursor

# The jobs of a daemon through its API, from the command line; and why the daemon at the
# config's api.listen is asked (said if its port is 0), and what it is (said if unreachable).
Connect = Callable[[argparse.Namespace, str, str], JobsAdmin]
WHERE = ("Where the jobs are: the daemon at --api, else at $GQ_API; else the journal file of the config "
         "(-c, else $GQ_CONFIG, else built-in defaults) when it exists, read directly (a change goes "
         "through the daemon that holds it, if one does); else the daemon at the config's api.listen, "
         "as gq status finds it. The token: --token, else $GQ_TOKEN, else the config's api.token.")


def moment(text: str) -> float:
    """A --since/--until value: Unix seconds, RFC 3339, or a local YYYY-MM-DD[ HH:MM[:SS]]
    (a T for the space too), as Unix seconds."""
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        try:
            return timestamp(number)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    for layout in LOCAL_FORMATS:
        try:
            return datetime.strptime(text, layout).timestamp()  # naive: local time
        except ValueError:
            continue
    try:
        return timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: not Unix seconds, RFC 3339 or a local YYYY-MM-DD[ HH:MM[:SS]]") from None


def add_commands(jobs: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser],
                 options: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """The `gq jobs` actions; `options` adds -c, --api and --token to each."""
    actions = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION", parser_class=parser_class)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        return options(actions.add_parser(name, help=text, description=text, epilog=WHERE))

    def window(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", metavar="H", help="jobs to this host (name or address) only")
        when = "Unix seconds, RFC 3339, or local YYYY-MM-DD[ HH:MM[:SS]]"
        p.add_argument("--since", type=moment, metavar="T", help=f"accepted at or after T ({when})")
        p.add_argument("--until", type=moment, metavar="T", help=f"accepted before T ({when})")
        p.add_argument("--key", metavar="K", help="jobs of this ordering key only")
        p.add_argument("--id-prefix", metavar="P", help="jobs whose id begins with P only")

    listing = action("list", "jobs, newest first, one line each")
    listing.add_argument("--state", choices=[s.value for s in State], help="jobs in this state only")
    window(listing)
    listing.add_argument("--limit", type=int, default=LIMIT, metavar="N",
                         help=f"show N jobs at most (default {LIMIT}; 0: all)")
    listing.add_argument("--json", action="store_true",
                         help="one JSON object per line, as a page of GET /v1/jobs shows it (long headers cut)")
    show = action("show", "every field of one job, its attempts included")
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true", help="the job as GET /v1/jobs/{id} shows it")
    action("cancel", "cancel queued, scheduled or retrying jobs: never attempted again").add_argument(
        "ids", nargs="+", metavar="ID")
    replay = action("replay", "run finished jobs (dead or succeeded) again, attempts reset: by id, or by filter")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--state", choices=[s.value for s in REPLAYABLE],
                        help="every job in this state that matches --host, --since, --until, --key and --id-prefix")
    window(replay)


def run(args: argparse.Namespace, connect: Connect, env_api: str) -> int:
    """`gq jobs ACTION`; `connect` builds the client of a daemon's API, `env_api` names the
    variable that gives its address."""
    _check(args)
    admin, source = _admin(args, connect, env_api)
    try:
        return ACTIONS[args.jobs_command](admin, args)
    except sqlite3.Error as e:  # the file damaged, locked for long, or not a journal
        raise GqError(f"journal: {source}: {e}") from None
    finally:
        admin.close()


def _admin(args: argparse.Namespace, connect: Connect, env_api: str) -> tuple[JobsAdmin, str]:
    """Where the jobs are (WHERE): the API of --api (or $GQ_API); else the config's journal
    file, when it exists; else the daemon at the config's api.listen. And its name, for errors."""
    if args.api or os.environ.get(env_api):
        return connect(args, "", ""), args.api or os.environ[env_api]
    config = config_.load(args.config)
    path = config.journal.path
    if config.broker.kind == "redis":
        why = "the Redis broker keeps the jobs"
    elif not path:
        why = "journal.path is empty: the jobs were kept in memory only"
    elif not os.path.exists(path):
        why = f"the journal {path} does not exist"
    else:
        from gq.broker.journal import JournalAdmin

        holder = f" (it holds {path}; the address is api.listen's, give another with --api)"
        return JournalAdmin(path, config.target.hidden_headers(),
                            lambda: connect(args, f"{path} is in use by a running gq", holder),
                            f"gq jobs {args.jobs_command}"), path
    # No journal file to read: the daemon of the config, found as `gq status` finds it.
    return connect(args, f"usage error: jobs: {why}",
                   f" (api.listen's, as {why}; give another address with --api or ${env_api})"), "the daemon"


def _check(args: argparse.Namespace) -> None:
    """Usage errors, found before any file or daemon is asked."""
    action = f"jobs {args.jobs_command}"
    if getattr(args, "host", None) is not None and not args.host.strip():
        raise UsageError(f"usage error: {action}: --host: give a host name or address")
    for option, value in (("--key", getattr(args, "key", None)), ("--id-prefix", getattr(args, "id_prefix", None))):
        if value is not None and not value:
            raise UsageError(f"usage error: {action}: {option}: give a non-empty text")
    if action == "jobs list" and args.limit < 0:
        raise UsageError("usage error: jobs list: --limit: give a number of jobs, 0 for all")
    if action == "jobs replay":
        filtered = any(v is not None for v in (args.host, args.since, args.until, args.key, args.id_prefix))
        if args.ids and (args.state or filtered):
            raise UsageError("usage error: jobs replay: give job ids or a filter (--state ...), not both")
        if not args.ids and not args.state:
            raise UsageError("usage error: jobs replay: give job ids, or --state dead|succeeded "
                             "(with --host, --since, --until, --key, --id-prefix)")


def _where(args: argparse.Namespace, state: str | None) -> Filter:
    host = hosts.canonical(args.host.strip()) if args.host is not None else None
    return Filter(State(state) if state else None, host, args.since, args.until, key=args.key, prefix=args.id_prefix)


# -- the actions

def _list(admin: JobsAdmin, args: argparse.Namespace) -> int:
    # One more than the limit is asked for: it tells that more match, and is not shown.
    found = iter(admin.jobs(_where(args, args.state), args.limit + 1 if args.limit else None))
    shown = islice(found, args.limit) if args.limit else found
    if args.json:
        for job in shown:
            print(json.dumps(job, ensure_ascii=False))
    else:
        table(shown, sys.stdout, terminal_width(sys.stdout))
    if args.limit and next(found, None) is not None:
        sys.stdout.flush()
        print(f"… more jobs match than the {args.limit} shown: --limit N shows N (0: all)", file=sys.stderr)
    return EXIT_OK


def _show(admin: JobsAdmin, args: argparse.Namespace) -> int:
    job = admin.job(args.id)
    if job is None:
        print(f"gq: jobs show: {args.id}: no such job", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(job, ensure_ascii=False))
    else:
        sys.stdout.write("".join(f"{line}\n" for line in details(job)))
    return EXIT_OK


def _cancel(admin: JobsAdmin, args: argparse.Namespace) -> int:
    failed = 0
    for job_id in dict.fromkeys(args.ids):
        try:
            if admin.cancel(job_id):
                print(job_id, flush=True)
                continue
            why = "no such job"
        except Conflict as e:
            why = f"{e.state.value} (only a queued, scheduled or retrying job can be cancelled)"
        print(f"gq: jobs cancel: {job_id}: {why}", file=sys.stderr)
        failed += 1
    return EXIT_FAILURE if failed else EXIT_OK


def _replay(admin: JobsAdmin, args: argparse.Namespace) -> int:
    if not args.ids:  # what a filter found and could not replay is said, yet named no id: exit 0
        for page in admin.replay_matching(_where(args, args.state)):
            _replayed(page)
        return EXIT_OK
    done = admin.replay(list(dict.fromkeys(args.ids)))
    _replayed(done)
    return EXIT_FAILURE if done.skipped else EXIT_OK


def _replayed(done: Replayed) -> None:
    """The ids replayed on stdout; a `gq: jobs replay: ID: why` line for each one skipped."""
    print("".join(f"{job_id}\n" for job_id in done.ids), end="", flush=True)
    for job_id, why in done.skipped:
        print(f"gq: jobs replay: {printable(job_id)}: {printable(why)}", file=sys.stderr)


ACTIONS: dict[str, Callable[[JobsAdmin, argparse.Namespace], int]] = {
    "list": _list, "show": _show, "cancel": _cancel, "replay": _replay}


# -- how jobs are shown

def local(seconds: float | None) -> str:
    """Unix seconds as local time, YYYY-MM-DD HH:MM:SS; "-" for none."""
    return "-" if seconds is None else time.strftime(TIME_FORMAT, time.localtime(seconds))


def printable(value: Any) -> str:
    """A value as text a terminal shows as it is: control characters escaped; "-" for None."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _cut(text: str, width: int, from_the_left: bool = False) -> str:
    if len(text) <= width:
        return text
    return text[len(text) - width:] if from_the_left else text[:width - 1] + "…"


def terminal_width(out: TextIO) -> int | None:
    """The columns a table may take: $COLUMNS, else the terminal's width when `out` is one;
    None (no limit) when it goes to a file or a pipe."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(out.fileno()).columns if out.isatty() else None
    except (OSError, ValueError, AttributeError):
        return None


def row(job: dict[str, Any]) -> tuple[str, ...]:
    """A job's line of a list: COLUMNS."""
    url = job["request"]["url"]
    last = job["last_status"] if job["last_status"] is not None else job["last_error"]
    return (printable(job["id"]), job["state"], str(job["attempts"]), _cut(printable(last), LAST_WIDTH),
            local(job["accepted_at"]), printable(hosts.destination(url)), printable(url))


def table(jobs: Iterable[dict[str, Any]], out: TextIO, width: int | None = None) -> None:
    """A header and a line per job (COLUMNS); see `columns`."""
    columns(COLUMNS, (row(job) for job in jobs), out, width, JOBS_GIVE_WAY)


# How the columns of a table give way, in turn, when it is wider than the terminal: each
# (column, narrowest) — the URL first, the last error, the year of the time accepted, the
# host, the id (it can be found again with --id-prefix), and the URL again, to its header.
JOBS_GIVE_WAY = ((6, 12), (3, 8), (4, 14), (5, 8), (0, 12), (6, 3))
FROM_THE_LEFT = ("ACCEPTED",)  # cut at their start, not their end: a time keeps its hour


def columns(header: tuple[str, ...], rows: Iterable[tuple[str, ...]], out: TextIO, width: int | None = None,
            give_way: Iterable[tuple[int, int]] = ()) -> None:
    """A header and a line per row, in columns as wide as the first WIDTHS_FROM lines need
    (a longer value later moves the rest of its line over), the last one as it is. With a
    `width` (the terminal's), the columns narrow as `give_way` says until a line fits it,
    and every value is cut (…) to its column."""
    rows = iter(rows)
    first = [header, *islice(rows, WIDTHS_FROM)]
    widths = [max(len(r[i]) for r in first) for i in range(len(header))]
    if width is not None:
        for column, narrowest in give_way:
            over = sum(widths) + 2 * (len(widths) - 1) - width
            if over <= 0:
                break
            widths[column] = max(min(narrowest, widths[column]), len(header[column]), widths[column] - over)
        left = {i for i, name in enumerate(header) if name in FROM_THE_LEFT}
        for line in itertools.chain(first, rows):
            out.write(_line(tuple(_cut(v, w, i in left) if line is not header else v[:w]
                                  for i, (v, w) in enumerate(zip(line, widths))), widths))
        return
    for line in itertools.chain(first, rows):
        out.write(_line(line, widths))


def _line(values: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join([v.ljust(w) for v, w in zip(values[:-1], widths)] + [values[-1]]) + "\n"


def _payload(request: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's payload as `show` prints it: its JSON (compact) or its body, escaped as
    any value is; "not kept" for a succeeded job's that was dropped."""
    if "json" in request:
        return [("json", printable(json.dumps(request["json"], ensure_ascii=False)))]
    if "body" in request:
        return [("body", printable(request["body"]))]
    if "payload" in request:
        return [("payload", printable(request["payload"]))]
    return []


MAYBE_DELIVERED = "may have been delivered"


def maybe_delivered(count: int) -> str:
    """What a job's `unknown_attempts` means, as `show` says it."""
    return f"{count} attempt(s) of unknown outcome (gq stopped during them)"


def details(job: dict[str, Any]) -> list[str]:
    """Every field of a job, one `name: value` line each (times local), its request's
    method, URL, headers and payload; the attempts of unknown outcome, if any, as a line
    that says the job may have been delivered; then its attempts, each with its outcome."""
    fields: list[tuple[str, str]] = []
    history: list[dict[str, Any]] = []
    for name, value in job.items():
        if name == "request":
            fields += [("method", printable(value["method"])), ("url", printable(value["url"]))]
            fields += [("header", f"{printable(k)}: {printable(v)}") for k, v in value["headers"].items()]
            fields += _payload(value)
        elif name == "history":
            history = value
        elif name == "unknown_attempts":
            continue  # said in plain words, below
        elif name.endswith("_at") and isinstance(value, (int, float)):
            fields.append((name, local(value)))
        else:
            fields.append((name, printable(value)))
    width = max(len(name) for name, _ in fields) + 1
    lines = [f"{name + ':':<{width}} {value}" for name, value in fields]
    if job.get("unknown_attempts"):
        lines.append(f"{MAYBE_DELIVERED}: {maybe_delivered(job['unknown_attempts'])}")
    lines.append(f"{'history:':<{width}} {len(history)} attempt(s) kept" if history else f"{'history:':<{width}} -")
    for attempt in history:
        outcome = [f"status {attempt['status']}"] if attempt["status"] is not None else []
        outcome += [printable(attempt["error"])] if attempt["error"] else []
        verdict = printable(attempt.get("outcome"))
        if attempt.get("outcome") == UNKNOWN:
            verdict += f" ({MAYBE_DELIVERED})"
        lines.append(f"  {local(attempt['started'])}  {attempt['duration']:.3f}s  {verdict}  "
                     f"{'; '.join(outcome) or '-'}")
        if attempt.get("response"):
            lines.append(f"    response: {printable(attempt['response'])}")
    return lines
