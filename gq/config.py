"""The configuration: one frozen value, validated whole when it is loaded.

Every key is declared once (gq/core/settings.py), with its default, its check and
its help text: in the part that reads it where that part lies below the config
([target] and [pool]: gq/delivery/sections.py; [destinations]: gq/dispatch/destinations.py;
[broker] and [journal]: gq/broker/sections.py), and below for the sections of the parts
above it (the intake, the console, the daemon). Loading, `gq check-config`,
`config.example.toml`, the reference and a reload all come from those declarations.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from gq.broker.sections import BrokerConfig, JournalConfig
from gq.core import credentials, redaction, toml_text
from gq.core.settings import (
    URL,
    WHOLE,
    Invalid,
    Table,
    boolean,
    choice,
    did_you_mean,
    integer,
    quoted,
    seconds,
    setting,
    text,
)
from gq.delivery.sections import PoolConfig, TargetConfig
from gq.dispatch.destinations import DestinationsConfig
from gq.errors import ConfigError

ENV_CONFIG = "GQ_CONFIG"


def split_listen(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); raises Invalid."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise Invalid(f'must be "HOST:PORT" with a port 0-65535, got {quoted(value)}')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def listen_address(value: Any) -> str:
    split_listen(text(value))
    return value


def optional_listen_address(value: Any) -> str:
    return listen_address(value) if text(value) else ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown(key: dataclasses.Field, value: Any) -> Any:
    """`value` of `key` as gq shows it anywhere (check-config, a reload's log, errors):
    the one rule of gq/core/redaction.py applied to what the key declares secret."""
    if key.metadata["secret"] == WHOLE and value:
        return Table((k, redaction.REDACTED) for k, _ in value) if isinstance(value, Table) else redaction.REDACTED
    if key.metadata["secret"] == URL:
        return redaction.url(value)
    return value


def secrets_of(key: dataclasses.Field, value: Any) -> list[str]:
    """The secrets `shown` hides in `value` (as loaded, or as written in the file), as
    literals: the log and the errors about the key are scrubbed of them."""
    if key.metadata["secret"] == WHOLE:
        return _leaves(value)
    if key.metadata["secret"] == URL and isinstance(value, str):
        return redaction.url_secrets(value)
    return []


def _leaves(value: Any) -> list[str]:
    """Every scalar in `value` as text, and `value` itself as a check's error would quote it."""
    if isinstance(value, dict | Table):
        return [leaf for _, item in (value.items() if isinstance(value, dict) else value) for leaf in _leaves(item)]
    if isinstance(value, tuple | list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [str(value), quoted(value)] if value not in ("", None) else []


@dataclass(frozen=True)
class QueueConfig:
    maxsize: int = setting(1000, integer(1), "jobs held in memory, waiting for a worker")
    enqueue_timeout: float = setting(
        1.0, seconds(), "seconds an intake request waits for room before it is refused with 429")


@dataclass(frozen=True)
class ApiConfig:
    listen: str = setting("127.0.0.1:8765", listen_address,
                          "intake API, health and /metrics; port 0 = any free port (logged)", live=False)
    token: str = setting("", text, "bearer token for /v1/*; empty = no auth (loopback listen only)",
                         secret=WHOLE)
    token_file: str = setting("", text, "file holding the token; relative: to $CREDENTIALS_DIRECTORY if set")
    read_token: str = setting("", text, "bearer token of viewers: they read /v1/* and the console, and change "
                              "nothing (403); needs api.token", secret=WHOLE)
    read_token_file: str = setting("", text, "file holding the read token; relative: to $CREDENTIALS_DIRECTORY if set")
    max_body_bytes: int = setting(1048576, integer(1), "largest request body accepted, in bytes")
    max_jobs_per_request: int = setting(1000, integer(1), "jobs in one POST /v1/jobs, at most")
    max_connections: int = setting(1000, integer(1), "intake connections served at once; more wait to be accepted")
    client_timeout: float = setting(10.0, seconds(0, above=True),
                                    "seconds a client has to send a request's head, and its body")
    health_listen: str = setting("", optional_listen_address, "HOST:PORT of a listener of their own for "
                                 "/healthz, /readyz and /metrics, beside api.listen; \"\" = none", live=False)


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = setting(5, integer(1), "attempts in all, the first included")
    backoff_base: float = setting(0.5, seconds(), "seconds before the 2nd attempt; doubles, full jitter")
    backoff_max: float = setting(60.0, seconds(), "cap; a target's Retry-After is honoured up to it")


@dataclass(frozen=True)
class ShutdownConfig:
    drain_timeout: float = setting(30.0, seconds(), "after SIGTERM: seconds to finish queued and in-flight jobs")


@dataclass(frozen=True)
class LogConfig:
    level: str = setting("info", choice("debug", "info", "warning", "error"), "least severe level logged")
    format: str = setting("text", choice("text", "json"),
                          '"json": one JSON object per line; text under systemd: journald priorities, no timestamp')


@dataclass(frozen=True)
class MemoryConfig:
    max_rss_mb: int = setting(0, integer(0), "drain and exit (for systemd to restart gq) past this RSS; 0 = off")


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = setting(True, boolean, "the operators' console under /ui/ on api.listen")
    session_lifetime: float = setting(28800.0, seconds(0, above=True),
                                      "seconds a console sign-in lasts (with api.token)")
    refresh: float = setting(5.0, seconds(0), "seconds between a page's own refreshes; 0 = never")


@dataclass(frozen=True)
class Config:
    queue: QueueConfig = QueueConfig()
    pool: PoolConfig = PoolConfig()
    api: ApiConfig = ApiConfig()
    target: TargetConfig = TargetConfig()
    retry: RetryConfig = RetryConfig()
    journal: JournalConfig = JournalConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    broker: BrokerConfig = BrokerConfig()
    log: LogConfig = LogConfig()
    memory: MemoryConfig = MemoryConfig()
    destinations: DestinationsConfig = DestinationsConfig()
    console: ConsoleConfig = ConsoleConfig()
    source: str = field(default="", compare=False)  # the file it came from; "" = built-in defaults
    warnings: tuple[str, ...] = field(default=(), compare=False)  # worth logging, not refusing


# Config's sections by name, in the file's order: its fields whose default is a section.
SECTIONS: dict[str, type] = {f.name: type(f.default) for f in dataclasses.fields(Config)
                             if dataclasses.is_dataclass(f.default)}


def keys(section: str) -> list[str]:
    return [f.name for f in dataclasses.fields(SECTIONS[section])]


def key_field(section: str, key: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)


def shown_key(config: Config, section: str, key: str) -> str:
    """`section.key`'s value in `config`, as TOML, through `shown`."""
    return toml_text.value(shown(key_field(section, key), getattr(getattr(config, section), key)))


def secrets(config: Config) -> list[str]:
    """Every secret `config` holds, as literals."""
    return [secret for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
            for secret in secrets_of(f, getattr(getattr(config, name), f.name))]


def from_dict(data: dict[str, Any], source: str = "") -> Config:
    """Build a Config from parsed TOML; raises ConfigError listing every problem."""
    where = source or "<defaults>"
    problems: list[str] = []
    for name, value in data.items():
        if name not in SECTIONS:
            problems.append(f"{name}: unknown section{did_you_mean(name, list(SECTIONS))}")
        elif not isinstance(value, dict):
            problems.append(f"{name}: must be a table ([{name}]), got {quoted(value)}")
    sections = {name: _section(name, cls, data.get(name), problems) for name, cls in SECTIONS.items()}
    warnings: list[str] = []
    _read_files(sections, problems, warnings)
    config = Config(**sections, source=source, warnings=tuple(f"{where}: {w}" for w in warnings))
    redaction.KNOWN.add(secrets(config))  # before anything can log them
    problems += cross_checks(config)
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems])
    return config


def _section(name: str, cls: type, given: Any, problems: list[str]) -> Any:
    """Section `name` from its table `given` (defaults when it is not one); each problem of a
    key added to `problems` as `section.key: reason`, its secrets scrubbed."""
    if not isinstance(given, dict):
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in given.items():
        if key not in fields:
            problems.append(f"{name}.{key}: unknown key{did_you_mean(key, list(fields), name + '.')}")
            continue
        try:
            values[key] = fields[key].metadata["check"](value)
        except Invalid as e:
            problems.append(f"{name}.{key}: {redaction.scrub(str(e), secrets_of(fields[key], value))}")
    return cls(**values)


def _read_files(sections: dict[str, Any], problems: list[str], warnings: list[str]) -> None:
    """The tokens and the client certificate the config names by file, read into `sections`."""
    for key in ("token", "read_token"):
        if getattr(sections["api"], f"{key}_file"):
            try:
                if getattr(sections["api"], key):
                    raise Invalid(f"give api.{key} or api.{key}_file, not both")
                token = credentials.token(getattr(sections["api"], f"{key}_file"), f"api.{key}_file", warnings)
            except Invalid as e:
                problems.append(f"api.{key}_file: {e}")
            else:
                sections["api"] = dataclasses.replace(sections["api"], **{key: token})
    target = sections["target"]
    if target.client_key and not target.client_cert:
        problems.append("target.client_key: needs target.client_cert")
    elif target.client_cert:
        try:
            cert, key = credentials.client_certificate(target.client_cert, target.client_key)
        except Invalid as e:
            problems.append(f"target.{e}")
        else:
            sections["target"] = dataclasses.replace(target, client_cert=cert, client_key=key)


def cross_checks(config: Config) -> list[str]:
    """Rules between keys (a public listen needs a token...): problems, without the file name."""
    problems = []
    host, _ = split_listen(config.api.listen)
    if not config.api.token and not is_loopback(host):
        problems.append(f"api.token: required when api.listen is not a loopback address "
                        f"(listen is {quoted(config.api.listen)})")
    if config.api.read_token and not config.api.token:
        problems.append("api.read_token: needs api.token (without it everyone may act)")
    if config.api.read_token and config.api.read_token == config.api.token:
        problems.append("api.read_token: must differ from api.token")
    if config.destinations.scope == "fleet" and config.broker.kind != "redis":
        problems.append('destinations.scope: "fleet" needs broker.kind = "redis" (the fleet shares its '
                        "limits through Redis)")
    if config.retry.backoff_base > config.retry.backoff_max:
        problems.append(f"retry.backoff_base: must not exceed retry.backoff_max "
                        f"({config.retry.backoff_base:g} > {config.retry.backoff_max:g})")
    return problems


def load(path: str | None) -> Config:
    """Load `path`, else $GQ_CONFIG, else the built-in defaults; raises ConfigError."""
    path = path or os.environ.get(ENV_CONFIG) or None
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror or e}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: invalid TOML: {e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: invalid TOML: not UTF-8 (byte {e.start})"]) from None
    return from_dict(data, source=path)


def to_toml(config: Config, comments: bool = False, secrets: bool = False) -> str:
    """The effective config as TOML, every key present; secrets hidden unless `secrets`;
    with comments, each key's help."""
    out = []
    for name in SECTIONS:
        section = getattr(config, name)
        out.append(f"[{name}]")
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            line = f"{f.name} = {toml_text.value(value if secrets else shown(f, value))}"
            if comments:
                line = f"{line:<40} # {f.metadata['help']}"
            out.append(line)
        out.append("")
    return "\n".join(out)
