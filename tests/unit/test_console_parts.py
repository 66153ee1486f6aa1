"""The console's parts that need no daemon: sessions and their cookies, the activity ring,
and how numbers and moments are shown."""

from __future__ import annotations

import pytest

from gq.config import ApiConfig
from gq.console import present, sessions
from gq.console.sessions import Sessions
from gq.console.views import _local_moment
from gq.core.outcome import AttemptResult, Outcome, Verdict
from gq.intake.access import ANONYMOUS
from gq.intake.access import READ_TOKEN as VIEWER
from gq.intake.access import TOKEN as OPERATOR
from gq.intake.api_io import Refusal
from gq.observe.activity import MINUTES, Activity
from support import Clock

TOKENS = ApiConfig(token="operator-token", read_token="viewer-token")


def cookie_header(value: str) -> str:
    return f"{sessions.COOKIE}={value}"


def test_a_token_signs_in_as_its_role_and_a_wrong_one_as_nobody():
    kept = Sessions(TOKENS, 60)
    assert (kept.role_of("operator-token"), kept.role_of(" viewer-token\n"), kept.role_of("guess")) == (
        OPERATOR, VIEWER, None)
    assert not kept.open and Sessions(ApiConfig(), 60).open


def test_a_session_is_read_back_from_its_cookie_with_its_role_and_csrf_token():
    kept = Sessions(TOKENS, 60)
    session, value = kept.new(VIEWER)
    back = kept.of(cookie_header(value))
    assert back == session and back.role == VIEWER and not back.may_act and len(back.csrf) >= 40
    other, _ = kept.new(OPERATOR)
    assert other.csrf != session.csrf and other.may_act


@pytest.mark.parametrize("tamper", [
    lambda v: v.replace(".", ".x", 1),                 # the signature changed
    lambda v: "A" + v[1:],                             # the payload changed
    lambda v: v.split(".")[0],                         # no signature
    lambda v: "",
])
def test_a_cookie_that_is_not_ours_is_no_session(tamper):
    kept = Sessions(TOKENS, 60)
    _, value = kept.new(OPERATOR)
    assert kept.of(cookie_header(tamper(value))) is None
    assert kept.of("garbage;;==") is None and kept.of("") is None


def test_a_session_ends_when_it_expires_when_a_token_changes_and_when_signed_out():
    clock = Clock()
    kept = Sessions(TOKENS, 60, clock)
    _, value = kept.new(OPERATOR)
    clock.now += 59
    assert kept.of(cookie_header(value)) is not None
    clock.now += 1
    assert kept.of(cookie_header(value)) is None
    kept = Sessions(TOKENS, 60)
    session, value = kept.new(OPERATOR)
    kept.configure(ApiConfig(token="operator-token", read_token="new-viewer-token"), 60)
    assert kept.of(cookie_header(value)) is None
    kept = Sessions(TOKENS, 60)
    session, value = kept.new(OPERATOR)
    kept.sign_out(session)
    assert kept.of(cookie_header(value)) is None


def test_signed_out_sessions_are_remembered_up_to_a_bound(monkeypatch):
    monkeypatch.setattr(sessions, "MAX_SIGNED_OUT", 5)
    kept = Sessions(TOKENS, 60)
    for _ in range(20):
        kept.sign_out(kept.new(OPERATOR)[0])
    assert len(kept._signed_out) == 5


def test_an_open_consoles_sessions_are_anonymous_and_end_when_a_token_is_set():
    kept = Sessions(ApiConfig(), 60)
    _, value = kept.new(ANONYMOUS)
    assert kept.of(cookie_header(value)).may_act
    kept.configure(TOKENS, 60)
    assert kept.of(cookie_header(value)) is None


def test_the_cookie_is_http_only_strict_and_for_the_console_only():
    header = Sessions(TOKENS, 60).cookie("v", 60, secure=True)
    assert header == "gq_session=v; Path=/ui/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"


def test_activity_counts_the_last_hour_by_minute_and_forgets_older_minutes():
    clock = Clock()
    clock.now = 1_000_000 * 60.0
    activity = Activity(clock)
    ok, failed = Outcome(Verdict.SUCCESS), Outcome(Verdict.RETRY)
    result = AttemptResult(0.0, 0.1)
    for outcome in (ok, ok, failed, Outcome(Verdict.FAIL)):
        activity.attempted(None, result, outcome)  # type: ignore[arg-type]
    clock.now += 60 * 30
    activity.attempted(None, result, ok)  # type: ignore[arg-type]
    minutes = activity.last_hour()
    assert len(minutes) == MINUTES and minutes[-1].start == clock.now
    assert (minutes[-31].delivered, minutes[-31].failed, minutes[-1].delivered) == (2, 2, 1)
    clock.now += 60 * 45  # the first minute is more than an hour old now; its slot is used again
    activity.attempted(None, result, failed)  # type: ignore[arg-type]
    assert sum(m.delivered for m in activity.last_hour()) == 1
    assert sum(m.failed for m in activity.last_hour()) == 1


@pytest.mark.parametrize("seconds, shown", [
    (None, "–"), (0.0012, "1.2 ms"), (0.34, "340 ms"), (4.5, "4.5 s"), (200, "3 min 20 s"),
    (7500, "2 h 5 min"), (3 * 86400 + 4 * 3600, "3 d 4 h"), (3600, "1 h"),
])
def test_durations_in_human_units(seconds, shown):
    assert present.duration(seconds) == shown


@pytest.mark.parametrize("count, shown", [(None, "–"), (512, "512 B"), (2048, "2.0 KiB"),
                                          (5 * 1024 ** 2, "5.0 MiB"), (3 * 1024 ** 4, "3072.0 GiB")])
def test_sizes_in_human_units(count, shown):
    assert present.size(count) == shown


def test_a_moment_is_utc_data_for_the_browser_with_how_long_ago_as_its_title():
    shown = present.moment(1_800_000_000.25, now=1_800_000_060.25)
    assert shown == ('<time datetime="2027-01-15T08:00:00.250Z" title="1 min ago">'
                     '2027-01-15 08:00:00 UTC</time>')
    assert present.moment(None) == "–"


def test_a_local_datetime_field_takes_the_browsers_offset():
    assert _local_moment("2026-12-06T05:00", "60") == "2026-12-06T05:00:00+01:00"
    assert _local_moment("2026-12-06T05:00:30", "-330") == "2026-12-06T05:00:30-05:30"
    assert _local_moment("2026-12-06T05:00", None) == "2026-12-06T05:00:00+00:00"
    for given in ("2026-12-06T05:00:00Z", "2026-12-06T05:00:00+02:00", "1800000000"):
        assert _local_moment(given, "60") == given
    with pytest.raises(Refusal):
        _local_moment("2026-12-06T05:00", "east")


def test_the_chart_draws_each_minute_and_says_the_totals():
    clock = Clock()
    activity = Activity(clock)
    activity.attempted(None, AttemptResult(0.0, 0.1), Outcome(Verdict.SUCCESS))  # type: ignore[arg-type]
    svg = present.chart(activity.last_hour())
    assert svg.count('class="ok"') == MINUTES and "Last hour: 1 delivered, 0 failed" in svg
