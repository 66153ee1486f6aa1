"""What a hostile client writes, for the tests that fuzz gq's HTTP API (intake, the
operators' endpoints, the OpenAPI document's claims): nasty texts, JSON values, numbers past
what gq holds, and cursors of gq's form holding what gq never writes."""

from __future__ import annotations

import base64
import json

from hypothesis import strategies as st

NASTY = ["", " ", "\t", " lead", "\tlead", "trail ", "\xa0nbsp", "\x85nel", "a\u2028b", "\ufeff", "é",
         "\U0001F600", "\ud800", "a\udfffb", "\x00", "\x7f", "%00", "%", "\\", '"', "{", "<redacted>",
         "1e999", "NaN", "x" * 300]

texts = st.one_of(st.text(max_size=20), st.sampled_from(NASTY),
                  st.text(st.characters(categories=["Cs", "Cc", "Zs", "Cf"]), max_size=4))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12)

NUMBERS = ["1e999", "-1e999", "1e-999", "NaN", "Infinity", "-Infinity", "-0", "1E400", "0.1",
           "123456789012345678901234567890", "1" * 4300, "1" * 4301, "9" * 20000, "1e308", "2e308",
           "4.9e-324", "1.00000000000000000001", "-0.0", "1E+99999999999999999999"]


def crafted(text: str) -> str:
    """A cursor of the form gq writes (base64url of JSON, no padding), holding `text`."""
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


CRAFTED_CURSORS = {
    "400 digits": "[1.0, " + "9" * 400 + "]",
    "past 64 bits": "[1.0, 18446744073709551616]",
    "below 64 bits": "[1.0, -9223372036854775809]",
    "a float of 400 digits": "[" + "9" * 400 + ", 1]",
    "1e400": "[1e400, 1]",
    "NaN": "[NaN, 1]",
    "booleans": "[true, false]",
    "a fraction for a position": "[1.0, 1.5]",
    "nested 2,000 deep": "[" * 2000 + "]" * 2000,
}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# Numbers as a client may write them: past a float, past SQLite's 64 bits, not numbers at all.
HOSTILE_NUMBERS = [n for n in NUMBERS if len(n) <= 500] + [
    "18446744073709551616", "9223372036854775808", "9223372036854775807", "-9223372036854775809",
    "9" * 400, "1" + "0" * 400 + ".0", "true", "null", '"1"', "1.5", "-1", "[]", "{}"]
numbers = st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.floats(allow_nan=False, allow_infinity=False).map(repr),
                    st.one_of(st.integers(min_value=2**63 - 2), st.integers(max_value=-2**63 + 1)).map(str))
cursor_texts = st.one_of(  # half of them [a number, a number], as gq's hold, out of its bounds
    st.tuples(numbers, numbers).map(lambda p: f"[{p[0]}, {p[1]}]"),
    st.one_of(st.integers(1, 1000), st.sampled_from([511, 512, 513, 1000])).map(nested) | json_values.map(json.dumps))
# Cursors gq did not give: its form (base64 of JSON) holding anything, half of them; plain text.
crafted_cursors = cursor_texts.map(crafted)
