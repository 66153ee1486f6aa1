"""What a target may send back: the limits on an answer's framing, and a reader that yields.

Under gevent a greenlet runs until it waits. A target that never stops sending
(an endless run of `100 Continue` responses, of headers or of trailer lines)
keeps data always ready, so the greenlet reading it would never wait: no other
greenlet, no timer (the attempt's own timeout included) and no health check
would run again. `BoundedResponse` is http.client's response with its reader
wrapped: every part of the framing has a size limit, interim responses are
counted, and the reader yields to the hub every few calls, so the attempt's
timeout fires even while data keeps coming. A broken limit fails the attempt
with `protocol: ...`.
"""

from __future__ import annotations

import http.client
import io
from typing import TYPE_CHECKING, Any

import gevent

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAX_INTERIM = 10             # 1xx responses before the real one
MAX_STATUS_LINE = 8192       # bytes
MAX_HEADER_BLOCK = 65536     # bytes of header lines of one response (http.client: 100 lines at most)
MAX_CHUNK_LINES = 65536      # bytes of chunk-size lines of a chunked body
MAX_TRAILERS = 16384         # bytes of trailer lines after a chunked body
YIELD_EVERY = 32             # reads between two yields to the hub


class ProtocolViolation(http.client.HTTPException):
    """The target's answer broke one of the limits above (urllib3 then drops the connection)."""


class BoundedReader:
    """The buffered socket reader of one response, holding the part of the framing being
    read (`limit`) to its size, and yielding to the hub every YIELD_EVERY reads."""

    def __init__(self, fp: io.BufferedReader):
        self._fp = fp
        self._reads = 0
        self.limit("status line", MAX_STATUS_LINE)

    def limit(self, part: str, size: int) -> None:
        """From now on, the lines read are `part`, of at most `size` bytes in all."""
        self._part, self._size, self._left = part, size, size

    def readline(self, limit: int = -1) -> bytes:
        self._tick()
        cap = self._left + 1 if limit is None or limit < 0 else min(limit, self._left + 1)
        line = self._fp.readline(cap)
        self._left -= len(line)
        if self._left < 0:
            raise ProtocolViolation(f"{self._part} over {self._size} bytes")
        return line

    def read(self, size: int | None = -1) -> bytes:
        self._tick()
        return self._fp.read(size)

    def read1(self, size: int = -1) -> bytes:
        self._tick()
        return self._fp.read1(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._tick()
        return self._fp.readinto(buffer)

    def peek(self, size: int = 0) -> bytes:
        self._tick()
        return self._fp.peek(size)

    def _tick(self) -> None:
        self._reads += 1
        if self._reads % YIELD_EVERY == 0:
            gevent.sleep(0)  # data that is always ready must not keep the hub from running

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


# Two of the hooks below are private steps of CPython's HTTPResponse (3.11 and later alike),
# which typeshed leaves out. Were one renamed, its override would silently stop running and
# its limit with it: a Python without them is refused here, at import, instead.
_HOOKS = ("_read_status", "_read_and_discard_trailer")
if missing := [name for name in _HOOKS if not callable(getattr(http.client.HTTPResponse, name, None))]:
    raise ImportError(f"http.client.HTTPResponse has no {', '.join(missing)}: gq cannot bound a target's answers")


class _HTTPResponse(http.client.HTTPResponse):
    """http.client's response, with its private framing steps typed as CPython defines them."""

    if TYPE_CHECKING:
        def _read_status(self) -> tuple[str, int, str]: ...
        def _read_and_discard_trailer(self) -> None: ...


class BoundedResponse(_HTTPResponse):
    """http.client's response, read through a BoundedReader. It hooks the three steps of
    http.client's reading that frame an answer (status line, body start, trailers)."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any):
        super().__init__(sock, *args, **kwargs)
        # Not a BufferedReader: http.client only calls methods of `fp` that BoundedReader has or passes on.
        self.fp = self._reader = BoundedReader(self.fp)  # type: ignore[assignment]
        self._interim = 0

    def _read_status(self) -> tuple[str, int, str]:
        self._reader.limit("status line", MAX_STATUS_LINE)
        version, status, reason = super()._read_status()
        if status == http.client.CONTINUE:  # begin() skips it and reads another
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise ProtocolViolation(f"more than {MAX_INTERIM} interim (1xx) responses")
        self._reader.limit("header block", MAX_HEADER_BLOCK)
        return version, status, reason

    def begin(self) -> None:
        super().begin()
        self._reader.limit("chunk-size lines", MAX_CHUNK_LINES)

    def _read_and_discard_trailer(self) -> None:
        self._reader.limit("trailers", MAX_TRAILERS)
        super()._read_and_discard_trailer()
