"""Rule 5, the ledger: `GET /v1/status` → "ledger" adds up (accepted is the sum of queued,
scheduled, running, retrying, succeeded, dead, cancelled and forgotten) on every daemon, it
counts every job this campaign had accepted, and `gq verify -c CONFIG` exits 0 on the journal.

LEDGER_CHECKS: on (`--no-ledger` to bench/campaign.py leaves them out, to look at the other
rules alone)."""

from __future__ import annotations

from pathlib import Path

import requests

from support import run_gq
from support.campaign.checker import Violation

LEDGER_CHECKS = True
STATES = ("queued", "scheduled", "running", "retrying", "succeeded", "dead", "cancelled", "forgotten")


def check_ledger(apis: list[str], accepted: int, journal_config: Path | None) -> list[Violation]:
    """`accepted`: the jobs of this campaign gq had accepted, on a journal or Redis prefix of
    its own (so the ledger's `accepted` is exactly that)."""
    violations = []
    for api in apis:
        status = requests.get(f"{api}/v1/status", timeout=10).json()
        ledger = status.get("ledger")
        if not isinstance(ledger, dict) or any(k not in ledger for k in ("accepted", *STATES)):
            violations.append(Violation("ledger", "-", f"{api}/v1/status has no whole ledger: {ledger!r}"))
            continue
        total = sum(ledger[k] for k in STATES)
        if ledger["accepted"] != total:
            violations.append(Violation("ledger", "-", f"{api}: accepted {ledger['accepted']} != {total}, the sum "
                                                       f"of the rest: {ledger}"))
        if ledger["accepted"] != accepted:
            violations.append(Violation("ledger", "-", f"{api}: accepted {ledger['accepted']}, yet {accepted} jobs "
                                                       f"were answered 202: {ledger}"))
    if journal_config is not None:
        verified = run_gq("verify", "-c", str(journal_config), cwd=journal_config.parent)
        if verified.returncode != 0:
            violations.append(Violation("verify", "-", f"gq verify exited {verified.returncode}: "
                                                       f"{(verified.stdout + verified.stderr).strip()[-500:]}"))
    return violations
