"""Config loading, driven by the TOML files in tests/support/config_cases/.

- `NAME.toml` with a sibling `NAME.expected` is invalid: `.expected` holds the
  problems `gq.config.load` reports, one a line, in order.
- `valid_NAME.toml` loads: every key it sets is taken as given (ints accepted
  as seconds), every other key keeps its default.

Cases are loaded from inside the folder by their bare file name, so messages
read `NAME.toml: section.key: reason`, the file shown as it was given.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gq.broker.redis_urls import SentinelURL, sentinel_parts
from gq.config import (
    ENV_CONFIG,
    SECTIONS,
    Config,
    from_dict,
    load,
    to_toml,
)
from gq.core import redaction
from gq.errors import ConfigError

CASES = Path(__file__).parent.parent / "support" / "config_cases"
INVALID = sorted(p.stem for p in CASES.glob("*.toml") if not p.name.startswith("valid_"))
VALID = sorted(p.name for p in CASES.glob("valid_*.toml"))
DECLARED = {(section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}

# The defaults CONTRACT.md documents, key by key.
CONTRACT_DEFAULTS = {
    "queue": {"maxsize": 1000, "enqueue_timeout": 1.0},
    "pool": {"size": 100},
    "api": {"listen": "127.0.0.1:8765", "token": "", "max_body_bytes": 1048576},
    "target": {"url": "", "timeout": 10.0, "allowed_hosts": ()},
    "retry": {"max_attempts": 5, "backoff_base": 0.5, "backoff_max": 60.0},
    "journal": {"path": "gq-data/journal.sqlite3"},
    "shutdown": {"drain_timeout": 30.0},
    "broker": {"kind": "embedded", "url": "redis://127.0.0.1:6379/0"},
    "log": {"level": "info", "format": "text"},
}


@pytest.fixture
def in_cases(monkeypatch):
    """Run from inside the cases folder, with no $GQ_CONFIG from the environment."""
    monkeypatch.chdir(CASES)
    monkeypatch.delenv(ENV_CONFIG, raising=False)


def problems_of(path: str | None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value.problems


def values_of(config: Config) -> dict[tuple[str, str], object]:
    return {(s, k): getattr(getattr(config, s), k) for s, k in DECLARED}


def keys_in(data: dict) -> set[tuple[str, str]]:
    return {(section, key) for section, table in data.items() for key in table}


# -- invalid files


def test_cases_folder_is_consistent():
    expected_files = {p.stem for p in CASES.glob("*.expected")}
    assert len(INVALID) >= 20 and len(VALID) >= 3
    assert expected_files == set(INVALID), "each invalid case needs NAME.expected, and only those"


@pytest.mark.parametrize("name", INVALID)
def test_invalid_case_reports_its_expected_problems(in_cases, name):
    expected = (CASES / f"{name}.expected").read_text().splitlines()
    assert problems_of(f"{name}.toml") == expected


@pytest.mark.parametrize("path", ["bad_pool_size.toml", "./bad_pool_size.toml",
                                  str(CASES / "bad_pool_size.toml")])
def test_problems_name_the_file_as_given(in_cases, path):
    assert problems_of(path) == [f'{path}: pool.size: must be an integer >= 1, got "ten"']


@pytest.mark.parametrize("path, code", [
    ("missing.toml", errno.ENOENT),
    ("no_such_dir/gq.toml", errno.ENOENT),
    (".", errno.EISDIR),
])
def test_unreadable_file_is_one_cannot_read_problem(in_cases, path, code):
    assert problems_of(path) == [f"{path}: cannot read: {os.strerror(code)}"]


def test_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[log]\nlevel = "d\xe9bug"\n'.encode("latin-1"))
    problems = problems_of(str(path))
    assert len(problems) == 1 and problems[0].startswith(f"{path}: ")


# -- valid files and defaults


@pytest.mark.parametrize("name", VALID)
def test_valid_case_takes_given_values_and_defaults_for_the_rest(in_cases, name):
    given_keys = tomllib.loads((CASES / name).read_text())
    config = load(name)
    assert config.source == name
    defaults = values_of(Config())
    for (section, key), value in values_of(config).items():
        wanted = given_keys.get(section, {}).get(key, defaults[section, key])
        wanted = tuple(wanted) if isinstance(wanted, list) else wanted
        assert type(value) is type(defaults[section, key]), f"{section}.{key} keeps its type"
        if isinstance(wanted, dict):
            value = value.as_dict()
        assert value == wanted, f"{section}.{key}"


def test_full_case_sets_every_key_away_from_its_default():
    data = tomllib.loads((CASES / "valid_full.toml").read_text())
    given = DECLARED - {("api", "token_file"), ("api", "read_token_file")}  # a file excludes its token
    assert keys_in(data) == given
    defaults = values_of(Config())
    assert [k for k in given if data[k[0]][k[1]] == defaults[k]] == []


def test_documented_keys_have_the_contracts_defaults():
    defaults = values_of(Config())
    documented = {(s, k): v for s, table in CONTRACT_DEFAULTS.items() for k, v in table.items()}
    assert {key: defaults.get(key) for key in documented} == documented


@pytest.mark.parametrize("env", [None, ""])
def test_no_file_and_no_env_gives_the_defaults(in_cases, monkeypatch, env):
    if env is not None:
        monkeypatch.setenv(ENV_CONFIG, env)
    config = load(None)
    assert config == Config() and config.source == ""


def test_env_names_the_file_when_no_path_is_given(in_cases, monkeypatch):
    monkeypatch.setenv(ENV_CONFIG, "valid_full.toml")
    config = load(None)
    assert config.source == "valid_full.toml" and config.pool.size == 8
    monkeypatch.setenv(ENV_CONFIG, "bad_pool_size.toml")
    assert problems_of(None) == ['bad_pool_size.toml: pool.size: must be an integer >= 1, got "ten"']


def test_explicit_path_wins_over_env(in_cases, monkeypatch):
    monkeypatch.setenv(ENV_CONFIG, "missing.toml")
    assert load("valid_full.toml").pool.size == 8


# -- to_toml


@pytest.mark.parametrize("comments", [False, True])
@pytest.mark.parametrize("name", [None, *VALID])
def test_to_toml_writes_every_key_and_loads_back_equal(in_cases, name, comments):
    config = load(name)
    data = tomllib.loads(to_toml(config, comments=comments, secrets=True))
    assert keys_in(data) == DECLARED
    assert from_dict(data) == config


seconds = st.one_of(st.integers(0, 10**9),
                    st.floats(0, 1e9, allow_nan=False, allow_infinity=False))


host_patterns = st.sampled_from(["example.com", "API.Example.com", "*.example.com", "10.0.0.7",
                                 "::1", "10.0.0.0/8", "fd00::/8"]) | st.from_regex(
    r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True)


@st.composite
def config_dicts(draw) -> dict:
    """Any valid config, every key set."""
    base, cap = sorted([draw(seconds), draw(seconds)])
    counts = st.integers(1, 2**63 - 1)
    return {
        "queue": {"maxsize": draw(counts), "enqueue_timeout": draw(seconds)},
        "pool": {"size": draw(counts)},
        "api": {"listen": draw(st.sampled_from(["127.0.0.1:0", "localhost:65535", "[::1]:8765"])),
                "token": draw(st.text()), "max_body_bytes": draw(counts)},
        "target": {"url": draw(st.sampled_from(["", "http://example.com/hook", "https://[::1]:8443/"])),
                   "timeout": draw(st.floats(0, 86400, exclude_min=True)),
                   "allowed_hosts": draw(st.lists(host_patterns, max_size=3))},
        "retry": {"max_attempts": draw(counts), "backoff_base": base, "backoff_max": cap},
        "journal": {"path": draw(st.text())},
        "shutdown": {"drain_timeout": draw(seconds)},
        "broker": {"kind": draw(st.sampled_from(["embedded", "redis"])),
                   "url": draw(st.sampled_from(["", "redis://127.0.0.1:6379/0", "rediss://:pw@[::1]:6380/2",
                                                "unix:///run/redis.sock",
                                                "redis+sentinel://10.0.0.1:26379,[::1]:26380/gq/1",
                                                "redis+sentinel://gq:p%40ss@[::1]:26380/gq?sentinel_password=s"]))},
        "log": {"level": draw(st.sampled_from(["debug", "info", "warning", "error"])),
                "format": draw(st.sampled_from(["text", "json"]))},
        "memory": {"max_rss_mb": draw(st.integers(0, 2**63 - 1))},
    }


@settings(deadline=None)
@given(config_dicts())
@example({"api": {"token": "key-\U0001F511"}})   # outside the BMP
@example({"journal": {"path": "data\x7f"}})       # DEL, which TOML strings must escape
def test_any_valid_config_round_trips_through_to_toml(data):
    config = from_dict(data)
    assert from_dict(tomllib.loads(to_toml(config, secrets=True))) == config


def test_to_toml_hides_secrets_unless_asked():
    config = from_dict({"api": {"token": "tok-123"}, "target": {
        "signing_secrets": {"*.example.com": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}})
    shown = to_toml(config)
    assert "tok-123" not in shown and "MfKQ9r8" not in shown
    assert tomllib.loads(shown)["target"]["signing_secrets"] == {"*.example.com": "<redacted>"}
    assert "tok-123" in to_toml(config, secrets=True)


def test_a_sentinel_url_gives_its_credentials_decoded_and_shows_none():
    url = "redis+sentinel://gq:p%40ss%2F1@127.0.0.1:26379,[::1]:26380/svc/2?sentinel_password=s%3Apw"
    assert sentinel_parts(url) == SentinelURL([("127.0.0.1", 26379), ("::1", 26380)], "svc", 2, "gq", "p@ss/1",
                                              None, "s:pw")
    assert sentinel_parts("redis+sentinel://:pw@h:1/svc").password == "pw"
    assert redaction.url(url) == \
        "redis+sentinel://<redacted>@127.0.0.1:26379,[::1]:26380/svc/2?sentinel_password=<redacted>"
    assert redaction.url("redis://:pw@127.0.0.1:6379/0") == "redis://<redacted>@127.0.0.1:6379/0"
