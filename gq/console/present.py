"""How the console shows numbers and moments: in human units, and as data the browser turns
into its own time zone (a `<time>` element's datetime is UTC; console.js rewrites its text)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from gq.observe.activity import Minute

FILTERS = ("state", "id", "host", "key", "since", "until", "tz")   # the jobs page's filter fields
PAYLOAD_SHOWN = 65536   # characters of a payload a job's page shows; the rest is cut


def duration(seconds: float | None) -> str:
    """1.2 ms, 340 ms, 4.5 s, 3 min 20 s, 2 h 5 min, 3 d 4 h."""
    if seconds is None:
        return "–"
    s = abs(seconds)
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if s >= size:
            whole, rest = divmod(int(s), size)
            part = rest // sub_size
            return f"{whole} {unit} {part} {sub}" if part else f"{whole} {unit}"
    return f"{s:.0f} s"


def size(count: float | None) -> str:
    """Bytes in B, KiB, MiB, GiB."""
    if count is None:
        return "–"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def moment(at: float | None, now: float | None = None) -> Markup:
    """A `<time>`: its datetime in UTC, its text UTC until the browser shows its own zone;
    the title says how long ago (or how soon)."""
    if not at:
        return Markup("–")
    stamp = datetime.fromtimestamp(at, UTC)
    delta = (now or time.time()) - at
    relative = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"), relative,
        stamp.strftime("%Y-%m-%d %H:%M:%S UTC"))


def filtered(query: dict[str, str], **more: str) -> dict[str, str]:
    """The filter fields `query` gives (not its page), and `more`: a link to the same jobs."""
    return {**{name: query[name] for name in FILTERS if query.get(name)}, **more}


def payload(request: dict[str, Any]) -> tuple[str | None, bool]:
    """A job's payload as its page shows it (JSON indented), and whether it was cut."""
    if "json" in request:
        text = json.dumps(request["json"], indent=2, ensure_ascii=False)
    elif "body" in request:
        text = request["body"]
    else:
        return None, False
    return text[:PAYLOAD_SHOWN], len(text) > PAYLOAD_SHOWN


CHART_WIDTH, CHART_HEIGHT, BAR = 600, 120, 10   # the chart's drawing, in SVG units


def chart(minutes: list[Minute]) -> Markup:
    """Deliveries (above the axis) and failures (below it) per minute, as an SVG drawn here:
    no script and no library reach the browser for it."""
    top = max([m.delivered for m in minutes] + [m.failed for m in minutes] + [1])
    half = CHART_HEIGHT / 2
    bars = []
    for i, m in enumerate(minutes):
        x = i * BAR
        label = escape(f"{datetime.fromtimestamp(m.start, UTC):%H:%M} UTC: "
                       f"{m.delivered} delivered, {m.failed} failed")
        up = half * m.delivered / top
        down = half * m.failed / top
        bars.append(f'<g><title>{label}</title>'
                    f'<rect class="ok" x="{x + 1}" y="{half - up:.1f}" width="{BAR - 2}" height="{up:.1f}"/>'
                    f'<rect class="bad" x="{x + 1}" y="{half:.1f}" width="{BAR - 2}" height="{down:.1f}"/>'
                    f'<rect class="hit" x="{x}" y="0" width="{BAR}" height="{CHART_HEIGHT}"/></g>')
    total_ok = sum(m.delivered for m in minutes)
    total_bad = sum(m.failed for m in minutes)
    summary = escape(f"Last hour: {total_ok} delivered, {total_bad} failed; busiest minute {top}")
    return Markup(
        f'<svg class="chart" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="{summary}" '
        f'preserveAspectRatio="none"><line class="axis" x1="0" y1="{half}" x2="{CHART_WIDTH}" y2="{half}"/>'
        + "".join(bars) + "</svg>")
