"""The client commands against a running daemon: `gq submit`, `gq status`, and `gq jobs`
through its API."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO
from urllib.parse import quote, urlencode

import requests

from gq.broker import Conflict, Filter, Replayed, State
from gq.errors import GqError
from gq.transport import USER_AGENT

BATCH = 100           # jobs per request
BUSY_PATIENCE = 60.0  # seconds to keep retrying a daemon that answers 429/503
PAGE = 1000           # jobs per page of GET /v1/jobs, at most (the API's bound)
REPLAY_IDS = 10000    # ids per POST /v1/jobs/replay, at most (the API's bound)


class Client:
    def __init__(self, api: str, token: str = "", timeout: float = 30.0, whose: str = ""):
        """`whose`: what the daemon at `api` is, said when it cannot be reached."""
        self.api = api.rstrip("/")
        self.timeout = timeout
        self.whose = whose
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["User-Agent"] = USER_AGENT
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, self.api + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise GqError(f"cannot reach the daemon at {self.api}{self.whose}: {e}") from None

    def status(self) -> dict[str, Any]:
        response = self.request("GET", "/v1/status")
        if response.status_code != 200:
            raise GqError(f"status: {response.status_code} {_error_of(response)}")
        return response.json()

    def submit(self, source: str, objects: list[tuple[int, Any]], out: TextIO) -> int:
        """Send (line, job) pairs in batches, printing accepted ids; returns how many were rejected."""
        rejected = 0
        for start in range(0, len(objects), BATCH):
            batch = objects[start:start + BATCH]
            while batch:
                response = self._post(batch)
                if response.status_code in (200, 202):
                    out.write("".join(f"{i}\n" for i in response.json()["ids"]))
                    break
                body = _json_of(response)
                index = body.get("index")
                if response.status_code == 400 and isinstance(index, int) and 0 <= index < len(batch):
                    # One bad job: report it and send the rest of its batch again.
                    line, _ = batch.pop(index)
                    error = body.get("error", "").split(": ", 1)[-1]
                    print(f"gq: {source}:{line}: {body.get('field', 'job')}: {error}", file=sys.stderr)
                    rejected += 1
                    continue
                lines = f"{batch[0][0]}-{batch[-1][0]}"
                print(f"gq: {source}:{lines}: rejected: {response.status_code} {_error_of(response)}",
                      file=sys.stderr)
                if response.status_code == 401:
                    raise GqError(f"unauthorized: {_error_of(response)}")
                rejected += len(batch)
                break
        return rejected

    def _post(self, batch: list[tuple[int, Any]]) -> requests.Response:
        """POST one batch, waiting out 429/503 (honouring Retry-After) up to BUSY_PATIENCE."""
        deadline = time.monotonic() + BUSY_PATIENCE
        data = json.dumps([obj for _, obj in batch]).encode()
        while True:
            response = self.request("POST", "/v1/jobs", data=data,
                                    headers={"Content-Type": "application/json"})
            if response.status_code not in (429, 503) or time.monotonic() >= deadline:
                return response
            retry_after = response.headers.get("Retry-After", "1")
            time.sleep(min(float(retry_after) if retry_after.isdigit() else 1.0, 5.0))

    # -- gq jobs (JobsAdmin): GET, DELETE /v1/jobs/{id}, GET /v1/jobs, POST /v1/jobs/replay

    def job(self, job_id: str) -> dict[str, Any] | None:
        response = self.request("GET", _job_path(job_id))
        if response.status_code == 404:
            return None
        return _answer(response, "look up a job")

    def jobs(self, where: Filter, limit: int | None) -> Iterator[dict[str, Any]]:
        query: dict[str, Any] = where.fields()
        left = limit
        while left is None or left > 0:
            query["limit"] = PAGE if left is None else min(left, PAGE)
            # A space as %20, not '+': gq reads a '+' in a query as itself (an ordering key may hold either)
            page = _answer(self.request("GET", "/v1/jobs", params=urlencode(query, quote_via=quote)), "list jobs")
            yield from page["jobs"]
            if left is not None:
                left -= len(page["jobs"])
            if page["next"] is None:
                return
            query["cursor"] = page["next"]

    def cancel(self, job_id: str) -> bool:
        response = self.request("DELETE", _job_path(job_id))
        if response.status_code == 404:
            return False
        state = _json_of(response).get("state")
        if response.status_code == 409 and state in {s.value for s in State}:
            raise Conflict(job_id, State(state))
        _answer(response, "cancel a job")
        return True

    def replay(self, ids: list[str]) -> Replayed:
        done = Replayed()
        for start in range(0, len(ids), REPLAY_IDS):
            part, _ = self._replay({"ids": ids[start:start + REPLAY_IDS]})
            done.ids.extend(part.ids)
            done.skipped.extend(part.skipped)
        return done

    def replay_matching(self, where: Filter) -> Iterator[Replayed]:
        request: dict[str, Any] = where.fields()
        while True:
            page, after = self._replay(request)
            yield page
            if after is None:
                return
            request["cursor"] = after

    def _replay(self, request: dict[str, Any]) -> tuple[Replayed, str | None]:
        """What one POST /v1/jobs/replay did, and its `next`."""
        body = _answer(self.request("POST", "/v1/jobs/replay", json=request), "replay jobs")
        # A daemon of an earlier version names the ids it skipped, without a reason.
        skipped = [(s["id"], s["reason"]) if isinstance(s, dict) else (s, "skipped (the daemon gives no reason)")
                   for s in body["skipped"]]
        return Replayed(body["ids"], skipped), body["next"]

    def close(self) -> None:
        self.session.close()


def _job_path(job_id: str) -> str:
    return "/v1/jobs/" + quote(job_id, safe="")


def _answer(response: requests.Response, what: str) -> Any:
    """A 200's JSON body; any other answer as a GqError saying that the daemon could not `what`."""
    if response.status_code == 200:
        try:
            return response.json()
        except ValueError:
            raise GqError(f"cannot {what}: the daemon answered 200 with no JSON") from None
    if response.status_code == 501:
        raise GqError(f"cannot {what} on this daemon: {_error_of(response)}")
    if response.status_code == 401:
        raise GqError(f"cannot {what}: unauthorized: {_error_of(response)} (give the token with --token)")
    raise GqError(f"cannot {what}: {response.status_code} {_error_of(response)}")


def _json_of(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_of(response: requests.Response) -> str:
    return _json_of(response).get("error") or response.reason or ""
