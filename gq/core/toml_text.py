"""TOML as gq writes it (`gq check-config`, config.example.toml): a config's values, which
are strings, numbers, booleans, tuples and Tables (gq.core.settings), each as one TOML value."""

from __future__ import annotations

import json
from typing import Any

from gq.core.settings import Table

ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as is."""
    return '"' + "".join(
        ESCAPES.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
        for c in text) + '"'


def value(given: Any) -> str:
    """`given` as one TOML value (a Table inline)."""
    if isinstance(given, Table):
        return "{ " + ", ".join(f"{string(k)} = {value(v)}" for k, v in given) + " }" \
            if given else "{}"
    if isinstance(given, tuple):
        return "[" + ", ".join(value(v) for v in given) + "]"
    if isinstance(given, str):
        return string(given)
    if isinstance(given, float):
        return repr(given)
    return json.dumps(given)  # int, bool: JSON's spelling is TOML's
