"""Who is asking (gq/intake/access.py) and what the audit records (gq/core/audit.py), in process."""

from __future__ import annotations

import logging

import pytest

from gq.broker.memory_parts import AuditRows
from gq.config import ApiConfig
from gq.core.audit import IDS_KEPT, Audit, dlq_done
from gq.intake import access

FULL, READ = "full-token", "read-token"
CONFIGURED = ApiConfig(token=FULL, read_token=READ)


def environ(authorization: str | None = None, **more: str) -> dict[str, str]:
    return {**({"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}), **more}


@pytest.mark.parametrize(("authorization", "role"), [
    (f"Bearer {FULL}", "token"), (f"bearer  {FULL} ", "token"), (f"Bearer {READ}", "read_token"),
    ("Bearer wrong", None), (f"Basic {FULL}", None), (None, None), ("Bearer ", None)])
def test_the_role_of_a_request_comes_from_its_bearer_token(authorization, role):
    assert access.role(environ(authorization), CONFIGURED) == role


def test_without_a_token_everyone_is_anonymous_and_a_read_token_alone_gives_nothing():
    assert access.role(environ(), ApiConfig()) == "anonymous"
    assert access.role(environ("Bearer anything"), ApiConfig()) == "anonymous"
    assert access.role_of("", ApiConfig(token=FULL)) is None
    assert access.role_of("", ApiConfig(token=FULL, read_token="")) is None


def test_only_the_read_token_may_not_change_anything():
    assert [access.may_change(r) for r in ("token", "read_token", "anonymous")] == [True, False, True]


def test_a_request_says_it_comes_from_the_cli_with_its_header():
    assert access.via(environ(HTTP_X_GQ_CLIENT="cli")) == "cli"
    assert access.via(environ(HTTP_X_GQ_CLIENT="console")) == "api"
    assert access.via(environ()) == "api"


def test_a_row_names_the_first_ids_only_and_counts_them_all(caplog):
    rows, counted = AuditRows(keep=3), []
    audit = Audit(rows, counted.append)
    with caplog.at_level(logging.INFO, "gq.audit"):
        shown = audit.record("replay", by="token", via="api", ids=[f"j{n}" for n in range(250)], count=250)
    assert len(shown["ids"]) == IDS_KEPT and shown["count"] == 250 and counted == ["replay"]
    assert "and 150 more; by token via api" in caplog.text
    assert rows.actions(5) == [(shown, (shown["at"], 1))]
    for _ in range(4):
        dlq_done(audit, "purge", None, ["x"])
    assert [row["filter"] for row, _ in rows.actions(5)] == [{"state": "dead"}] * 3  # bounded: 3 kept
    dlq_done(audit, "purge", ["y"], [])  # nothing done: nothing kept
    assert len(counted) == 5


def test_an_unknown_action_is_a_mistake_found_at_once():
    with pytest.raises(ValueError):
        Audit(AuditRows()).record("delete", by="token", via="api", count=1)
    with pytest.raises(ValueError):
        Audit(AuditRows()).record("cancel", by="root", via="api", count=1)


def test_a_row_the_broker_cannot_keep_is_logged_and_the_action_stands(caplog):
    class Away(AuditRows):
        def keep_action(self, row):
            raise OSError("disk gone")

    with caplog.at_level(logging.INFO, "gq.audit"):
        Audit(Away()).record("cancel", by="local", via="cli", ids=["a"], count=1)
    assert "cannot keep the cancel above in the broker: disk gone" in caplog.text
