"""The client commands: `gq submit` and `gq status` against a running daemon."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import requests

from gq.errors import GqError
from gq.transport import USER_AGENT

BATCH = 100           # jobs per request
BUSY_PATIENCE = 60.0  # seconds to keep retrying a daemon that answers 429/503


class Client:
    def __init__(self, api: str, token: str = "", timeout: float = 30.0):
        self.api = api.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["User-Agent"] = USER_AGENT
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, self.api + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise GqError(f"cannot reach the daemon at {self.api}: {e}") from None

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


def _json_of(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_of(response: requests.Response) -> str:
    return _json_of(response).get("error") or response.reason or ""
