"""The errors gq reports to users, and its exit codes."""

EXIT_OK = 0
EXIT_FAILURE = 1   # a fatal runtime error; for batch/submit: some jobs not delivered/accepted
EXIT_USAGE = 2     # a config, usage or input error: retrying will not help


class GqError(Exception):
    """An error meant for the user: printed as one `gq: ...` line, no traceback."""

    exit_code = EXIT_FAILURE


class UsageError(GqError):
    exit_code = EXIT_USAGE


class ConfigError(GqError):
    """One or more problems in a config file, each as `FILE: section.key: reason`."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    def lines(self) -> list[str]:
        return [f"config error: {p}" for p in self.problems]


class Stopped(GqError):
    """A stop (SIGTERM, SIGINT) asked for before gq started: there is nothing to drain."""


class QueueFull(GqError):
    """No room for a request's jobs within the enqueue timeout: the intake answers 429."""


class Draining(GqError):
    """gq is draining and takes no new jobs: the intake answers 503."""


class BacklogFull(GqError):
    """The embedded broker holds journal.max_backlog unfinished jobs: the intake answers 429."""


class StorageUnavailable(GqError):
    """The journal cannot store jobs now (disk below journal.min_free_mb, a failed write, its
    file deleted): the intake answers 503."""


class BrokerUnavailable(GqError):
    """The broker cannot be reached for now (Redis down); the intake answers 503."""


class Unreachable(GqError):
    """gq.Client: the daemon cannot be reached (nothing listens, the name does not resolve,
    no answer in time). One line: `cannot reach the daemon at http://127.0.0.1:8765:
    connection refused`."""

    def __init__(self, api: str, cause: str, note: str = ""):
        self.api, self.cause = api, cause
        super().__init__(f"cannot reach the daemon at {api}{note}: {cause}")


class Refused(GqError):
    """gq.Client: the daemon answered a request with a refusal (4xx, 5xx): its `status`,
    and the `error` and `field` of its `{"error", "field"}` answer (`field` None when it
    names none). `index`: the job at fault in a list that was submitted, when it says;
    `retry_after`: the seconds its Retry-After asked for (429, 503), else None; `answer`:
    the whole JSON answer (a 409 names the job's `state`).

    >>> try:
    ...     client.submit({"url": "ftp://example.com/"})
    ... except gq.Refused as e:
    ...     print(e.status, e.field)
    400 url
    """

    def __init__(self, status: int, error: str, field: str | None = None, index: int | None = None,
                 retry_after: float | None = None, answer: dict | None = None):
        self.status, self.error, self.field, self.index, self.retry_after = status, error, field, index, retry_after
        self.answer = answer or {}
        super().__init__(f"{status} {error}")


class JobError(GqError):
    """A job that cannot be accepted; `field` names what is wrong (`url`, `headers.X`)."""

    exit_code = EXIT_USAGE

    def __init__(self, field: str, reason: str, index: int | None = None):
        self.field = field
        self.reason = reason
        self.index = index
        super().__init__(f"{field}: {reason}")

    def at(self, index: int) -> "JobError":
        return JobError(self.field, self.reason, index)
