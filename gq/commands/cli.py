"""Commands → exit codes. Errors for users are one `gq: ...` line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from gq import __version__
from gq import config as config_
from gq.commands import jobs_cli
from gq.core import redaction
from gq.core.job import Unreadable, read_jobs
from gq.core.lifecycle import said
from gq.errors import EXIT_FAILURE, EXIT_OK, ConfigError, GqError, Refused, UsageError
from gq.intake import access

if TYPE_CHECKING:
    from gq.broker import DeadLetterAdmin, JobsAdmin
    from gq.client import Client

ENV_API = "GQ_API"      # as gq.client reads them
ENV_TOKEN = "GQ_TOKEN"
SUBMIT_BATCH = 100      # jobs per request of `gq submit`
BUSY_PATIENCE = 60.0    # seconds the CLI keeps retrying a daemon that answers 429/503
COMPLETION_SHELLS = ("bash", "zsh", "tcsh")  # the shells shtab writes a completion script for


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's default prints usage and a traceback-free line
        raise UsageError(f"usage error: {message} (see {self.prog} --help)")  # prog: "gq dlq list"


FILE_METAVARS = ("FILE", "JOBS", "PATH")  # arguments that name a file: completed with file names


def _completion(shell: str) -> str:
    """The completion script; shtab is imported here only, the one command that needs it."""
    import shtab

    parser = _parser()
    for command in (parser, *_subparsers(parser)):
        for action in command._actions:
            if action.metavar in FILE_METAVARS:
                action.complete = shtab.FILE  # type: ignore[attr-defined]  # read by shtab.complete
    return shtab.complete(parser, shell)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below `parser`, at any depth."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases name one parser twice
                found += [child, *_subparsers(child)]
    return found


def _parser() -> Parser:
    parser = Parser(prog="gq", description="gq: an HTTP job daemon on gevent.")
    parser.add_argument("--version", action="version", version=f"gq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-c", "--config", metavar="FILE",
                       help=f"TOML config file (default: ${config_.ENV_CONFIG}, else built-in defaults)")
        return p

    with_config(commands.add_parser("run", help="run the daemon in the foreground"))
    with_config(commands.add_parser("check-config", help="validate and print the effective config")).add_argument(
        "--comments", action="store_true", help="say what each key means (config.example.toml is this)")
    batch = with_config(commands.add_parser("batch", help="deliver every job of a JSON-lines file, then exit"))
    batch.add_argument("jobs", metavar="JOBS", help="JSON-lines file of jobs, - for stdin")
    batch.add_argument("-p", "--processes", type=int, default=1, metavar="N",
                       help="split the jobs over N processes (one core each), each with its own journal")
    batch.add_argument("--journal", metavar="PATH",
                       help="journal file of this batch instead of the config's journal.path "
                            "(\"\" = memory only), so that it can run beside a daemon on that one")
    batch.add_argument("--part", help=argparse.SUPPRESS)  # "I/N": set by -p on each part file (its journal)

    def with_api(p: argparse.ArgumentParser, default: str = "the config's api.listen") -> argparse.ArgumentParser:
        p.add_argument("--api", metavar="URL", help="the daemon's address: http://HOST:PORT, https://HOST:PORT "
                       f"or HOST:PORT (default: ${ENV_API}, else {default})")
        p.add_argument("--token", metavar="T", help=f"bearer token (default: ${ENV_TOKEN}, else api.token)")
        return p

    for name, text in (("submit", "send jobs to a running daemon"),
                       ("status", "show a running daemon's queue and pool")):
        client = with_api(with_config(commands.add_parser(name, help=text)))
        if name == "submit":
            client.add_argument("jobs", metavar="JOBS", help="JSON-lines file of jobs, - for stdin")
        else:
            client.add_argument("--json", action="store_true", help="print the status as JSON")
    dlq = commands.add_parser("dlq", help="list, replay or purge dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION",
                                      parser_class=Parser)
    with_config(dlq_commands.add_parser("list", help="list dead letters")).add_argument(
        "--json", action="store_true", help="one JSON object per line, with each attempt")
    for action, text in (("replay", "run dead letters again, attempts reset"),
                         ("purge", "delete dead letters")):
        p = with_config(dlq_commands.add_parser(action, help=text))
        p.add_argument("ids", nargs="*", metavar="ID", help="dead letters' job ids")
        p.add_argument("--all", action="store_true", help="every dead letter")
        if action == "purge":
            p.add_argument("-y", "--yes", action="store_true",
                           help="purge --all without asking (needed when not on a terminal)")
    jobs = commands.add_parser("jobs", help="list, show, cancel or replay jobs", description=jobs_cli.WHERE)
    jobs_cli.add_commands(jobs, Parser, lambda p: with_api(
        with_config(p), "the config's journal file when it exists, else the daemon at its api.listen"))
    echo = commands.add_parser(
        "echo", help="a receiver that prints every request it gets: for trying gq and debugging a route",
        description="Print each request received (method, path, headers, body; JSON pretty-printed, a "
                    "long body cut) and answer CODE after SECONDS. SIGINT/SIGTERM stop it.")
    echo.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:9000",
                      help="address to listen on (default 127.0.0.1:9000; port 0: any free port, printed)")
    echo.add_argument("--status", type=int, default=200, metavar="CODE",
                      help="the status every request is answered with (default 200)")
    echo.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                      help="seconds to wait before answering (default 0)")
    with_config(commands.add_parser(
        "verify", help="check the journal file: SQLite's integrity, and that its ledger adds up",
        description="Check the config's journal file, whether a daemon runs on it or not: SQLite's integrity "
                    "check, and that every job accepted is counted once, by state or forgotten. Exit 0 when "
                    "both hold, 1 otherwise."))
    commands.add_parser("completion", help="print the shell completion script of gq").add_argument(
        "shell", choices=COMPLETION_SHELLS, help="the shell it is for")
    return parser


def _read_source(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


def _read_objects(path: str) -> list[tuple[int, Any]]:
    """The jobs of a file: JSON lines, a JSON array, or one JSON object (gq.core.job.read_jobs)."""
    source = "stdin" if path == "-" else path
    try:
        return read_jobs(_read_source(path))
    except Unreadable as e:
        raise UsageError(f"{source}: {e}") from None


def _client(args: argparse.Namespace, why: str = "", note: str = "") -> Client:
    """The client of the daemon at --api, else $GQ_API, else the config's api.listen; its
    token: --token, else $GQ_TOKEN, else the config's api.token. `why`: why api.listen's
    daemon is asked (said when its port is 0); `note`: what it is (said if unreachable)."""
    from gq.client import Client  # imports requests: only for the client commands

    api, token = args.api or os.environ.get(ENV_API), args.token or os.environ.get(ENV_TOKEN)
    if api:
        note = ""  # the address given is the one to reach, whatever the config says
    if not api or token is None:
        config = config_.load(args.config)
        if not api:
            host, port = config_.split_listen(config.api.listen)
            if port == 0:
                held = f"{why}, and " if why else ""
                raise UsageError(f"{held}api.listen has port 0: give the daemon's address with --api")
            api = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        token = config.api.token if token is None else token
    redaction.KNOWN.add([token or ""])
    client = Client(api, token or "", timeout=BUSY_PATIENCE, note=note)
    client.session.headers[access.CLIENT_HEADER] = "cli"  # the daemon's audit says `via: cli`
    return client


def _remote(args: argparse.Namespace, why: str = "", note: str = "") -> JobsAdmin:
    """`gq jobs` through the daemon _client finds."""
    from gq.commands.remote_admin import RemoteAdmin

    return RemoteAdmin(_client(args, why, note))


def _submit(args: argparse.Namespace) -> int:
    """Send the file's jobs SUBMIT_BATCH at a time, printing the ids accepted; a job
    refused is named by its line and the rest of its batch sent again. 1 if any was refused."""
    from gq.commands.remote_admin import TOKEN_HINT

    source = "stdin" if args.jobs == "-" else args.jobs
    objects = _read_objects(args.jobs)
    client = _client(args)
    rejected = 0
    for start in range(0, len(objects), SUBMIT_BATCH):
        batch = objects[start:start + SUBMIT_BATCH]
        while batch:
            try:
                ids = client.submit([job for _, job in batch])
            except Refused as e:
                if e.status == 400 and e.index is not None and 0 <= e.index < len(batch):
                    line, _ = batch.pop(e.index)
                    print(f"gq: {source}:{line}: {e.field or 'job'}: {e.error.split(': ', 1)[-1]}", file=sys.stderr)
                    rejected += 1
                    continue
                lines = f"{source}:{batch[0][0]}-{batch[-1][0]}"
                if e.status == 401:
                    raise GqError(f"{lines}: rejected: unauthorized: {e.error} {TOKEN_HINT}") from None
                print(f"gq: {lines}: rejected: {e}", file=sys.stderr)
                rejected += len(batch)
                break
            sys.stdout.write("".join(f"{i}\n" for i in ids))
            break
    return EXIT_FAILURE if rejected else EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from gq.commands.remote_admin import explained

    try:
        status = _client(args).status()
    except Refused as e:
        raise explained(e, "read the status") from None
    if args.json:
        print(json.dumps(status))
    else:
        _print_status(status)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from gq.operate import log

    if args.command == "check-config":
        config = config_.load(args.config)
        for warning in config.warnings:
            print(f"gq: warning: {warning}", file=sys.stderr)
        sys.stdout.write(config_.to_toml(config, comments=args.comments))
        return EXIT_OK
    if args.command == "run":
        config = config_.load(args.config)
        log.setup(config.log.level, config.log.format)
        from gq.operate.daemon import run
        return run(config)
    if args.command == "batch":
        return _batch(args)
    if args.command == "submit":
        return _submit(args)
    if args.command == "status":
        return _status(args)
    if args.command == "dlq":
        return _dlq(args)
    if args.command == "jobs":
        return jobs_cli.run(args, _remote, ENV_API)
    if args.command == "verify":
        return _verify(args)
    if args.command == "echo":
        from gq.commands import echo
        return echo.run(args.listen, args.status, args.delay)
    if args.command == "completion":
        sys.stdout.write(_completion(args.shell))
        return EXIT_OK
    raise UsageError(f"usage error: unknown command {args.command}")


def _verify(args: argparse.Namespace) -> int:
    config = config_.load(args.config)
    if config.broker.kind == "redis":
        raise UsageError("verify: broker.kind is \"redis\": gq verify checks a journal file; the fleet's "
                         "ledger is in GET /v1/status")
    if not config.journal.path:
        raise UsageError("verify: journal.path is empty: nothing is kept on disk to verify")
    from gq.broker.journal_file import JournalMissing
    from gq.broker.journal_verify import verify
    try:
        problems, ledger = verify(config.journal.path)
    except JournalMissing as e:
        raise JournalMissing(f"{e}; {jobs_cli.MISSING_HINT}") from None
    for problem in problems:
        print(f"gq: verify: {config.journal.path}: {problem}", file=sys.stderr)
    if problems:
        return EXIT_FAILURE
    print(f"{config.journal.path}: integrity ok; the ledger adds up: {ledger}")
    return EXIT_OK


def _dead_letters(config: config_.Config, command: str) -> DeadLetterAdmin:
    """The dead letters of the broker the config names; `command`: the dlq command, as
    named to a daemon that waits for the journal meanwhile."""
    if config.broker.kind == "redis":
        from gq.broker.redis_streams import DeadLetters
        return DeadLetters.open(config.broker)
    if not config.journal.path:
        raise UsageError("dlq: journal.path is empty: dead letters were kept in memory only")
    from gq.broker.journal import JournalAdmin
    from gq.broker.journal_file import JournalMissing
    try:
        return JournalAdmin(config.journal.path, command=command)
    except JournalMissing as e:
        raise JournalMissing(f"{e}; {jobs_cli.MISSING_HINT}") from None


def _dlq(args: argparse.Namespace) -> int:

    config = config_.load(args.config)
    if args.dlq_command != "list" and bool(args.ids) == args.all:
        raise UsageError(f"usage error: dlq {args.dlq_command}: give job ids or --all (not both)")
    purge_all = args.dlq_command == "purge" and args.all and not args.yes
    if purge_all and not sys.stdin.isatty():
        raise UsageError("usage error: dlq purge --all: give --yes to purge every dead letter "
                         "(no terminal to ask for confirmation)")
    admin = _dead_letters(config, f"gq dlq {args.dlq_command}")
    hidden = config.target.hidden_headers()
    try:
        if args.dlq_command == "list":
            return _dlq_list(admin, hidden, args.json)
        if purge_all and not _confirmed(f"purge all {sum(1 for _ in admin.dead_letters())} dead letters "
                                        "for good? [y/N] "):
            print("gq: dlq purge: not confirmed: nothing purged", file=sys.stderr)
            return EXIT_FAILURE
        done = admin.run(args.dlq_command, None if args.all else args.ids)
    finally:
        admin.close()
    for job_id in done:
        print(job_id)
    missing = [i for i in dict.fromkeys(args.ids) if i not in set(done)]
    for job_id in missing:
        print(f"gq: dlq {args.dlq_command}: {jobs_cli.printable(job_id)}: no such dead letter", file=sys.stderr)
    return EXIT_FAILURE if missing else EXIT_OK


DLQ_COLUMNS = ("ID", "ATTEMPTS", "LAST", "REASON", "URL")
DLQ_GIVE_WAY = ((4, 12), (3, 16), (2, 8), (0, 12), (4, 3))  # the URL first, then the reason


def _dlq_list(admin: DeadLetterAdmin, hidden: frozenset[str], as_json: bool) -> int:
    """The dead letters, oldest first: a table as `gq jobs list` prints one, or JSON lines;
    `no dead letters` on stderr when there are none."""
    from gq.broker import describe

    letters = iter(admin.dead_letters())
    first = next(letters, None)
    if first is None:
        if not as_json:
            print("no dead letters", file=sys.stderr)
        return EXIT_OK
    shown = (describe(entry, hidden) for entry in itertools.chain([first], letters))
    if as_json:
        for letter in shown:
            print(json.dumps(letter, ensure_ascii=False))
        return EXIT_OK
    printable = jobs_cli.printable
    rows = ((printable(d["id"]), str(d["attempts"]), printable(d["last_status"] or d["last_error"]),
             printable(d["reason"]), printable(d["url"])) for d in shown)
    jobs_cli.columns(DLQ_COLUMNS, rows, sys.stdout, jobs_cli.terminal_width(sys.stdout), DLQ_GIVE_WAY)
    return EXIT_OK


def _confirmed(question: str) -> bool:
    """Whether the person at the terminal answers yes to `question` (asked on stderr)."""
    print(f"gq: dlq {question}", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if not answer:
        print(file=sys.stderr)
    return answer.strip().lower() in ("y", "yes")


def _batch(args: argparse.Namespace) -> int:
    from gq.broker.journal_file import JournalInUse
    from gq.commands import batch
    from gq.operate import log

    config = config_.load(args.config)
    if args.processes < 1:
        raise UsageError("usage error: --processes must be 1 or more")
    if args.journal is not None:
        if config.broker.kind == "redis":
            raise UsageError("usage error: batch: --journal: the config's broker.kind is redis, which keeps the jobs")
        config = dataclasses.replace(config, journal=dataclasses.replace(config.journal, path=args.journal))
    part = batch.parse_part(args.part) if args.part else (0, 1)
    with batch.JobFile.open(args.jobs, config) as jobs:
        log.setup(config.log.level, config.log.format)
        try:
            if args.processes > 1:
                summary = batch.run_processes(args.config, jobs, args.processes, args.journal)
            else:
                progress = sys.stderr if sys.stderr.isatty() and not args.part else None
                summary = batch.run_batch(batch.part_config(config, *part), jobs, progress=progress)
        except JournalInUse as e:
            raise JournalInUse(f"{e} (give this batch a journal of its own with --journal PATH)") from None
    print(json.dumps(summary))
    return EXIT_OK if summary["succeeded"] == summary["total"] else EXIT_FAILURE


def _print_status(status: dict[str, Any]) -> None:
    jobs, finished = status["jobs"], status["finished"]
    lines = [("draining", "yes" if status["draining"] else "no"),
             ("queue", f"{status['queue_depth']}/{status['queue_maxsize']} in memory, waiting for a worker"),
             ("workers", f"{status['pool_busy']}/{status['pool_size']} busy"),
             ("jobs kept now", ", ".join(f"{n} {state}" for state, n in jobs.items())),
             ("finished since this daemon started", ", ".join(f"{n} {what}" for what, n in finished.items())),
             ("ledger", said(status["ledger"]) if status.get("ledger") else "cannot be read now")]
    width = max(len(name) for name, _ in lines) + 1
    for name, value in lines:
        print(f"{name + ':':<{width}} {value}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return _run(args)
    except ConfigError as e:
        for line in e.lines():
            print(f"gq: {redaction.KNOWN.scrub(line)}", file=sys.stderr)
        return e.exit_code
    except GqError as e:
        print(f"gq: {redaction.KNOWN.scrub(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except BrokenPipeError:
        return EXIT_FAILURE

