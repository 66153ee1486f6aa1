"""gq: an HTTP job daemon on gevent: bounded queue, fixed pool, durable journal.

`from gq import Client, Refused, Unreachable`: the client of a running daemon (gq.client).
Importing gq imports neither gevent nor requests: `gq run` patches first (gq/__main__.py),
and gq.Client imports requests only when it is first named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gq.errors import GqError, Refused, Unreachable

__version__ = "0.1.0"
USER_AGENT = f"gq/{__version__}"  # what gq sends: its deliveries, and gq.Client's requests
__all__ = ["Client", "GqError", "Refused", "Unreachable", "__version__"]

if TYPE_CHECKING:
    from gq.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from gq.client import Client
        return Client
    raise AttributeError(f"module 'gq' has no attribute {name!r}")
