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
