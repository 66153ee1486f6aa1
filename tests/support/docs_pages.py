"""The Markdown of gq's docs, read as GitHub reads it: headings and their anchors, relative
links, and the fenced examples that tests run (tests/unit/test_docs.py, tests/process/test_docs_examples.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from support import ROOT

NOT_RUN = "<!-- not run -->"   # the line before a fence: its block is not run by the docs' tests
RUN_LANGUAGES = ("sh", "toml")  # the blocks that are run; console, ini, python, plain never are
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).+?\1")


def pages() -> list[Path]:
    """Every page whose links are checked: the README, docs/*.md, bench/README.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]


class Block(NamedTuple):
    page: Path
    line: int          # of the opening fence, from 1
    language: str
    text: str
    run: bool          # not marked NOT_RUN on the line before


def _split(page: Path) -> tuple[list[str], list[Block]]:
    """The page's lines outside fenced blocks (blanked inside them), and its fenced blocks."""
    lines = page.read_text().split("\n")
    prose, blocks, i = [], [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        start, fence = i, m[1]
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            i += 1
        marked = start > 0 and lines[start - 1].strip() == NOT_RUN
        blocks.append(Block(page, start + 1, m[2], "\n".join(lines[start + 1:i]) + "\n", not marked))
        prose += [""] * (i + 1 - start)
        i += 1
    return prose, blocks


def blocks(page: Path) -> list[Block]:
    return _split(page)[1]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, lower case, every character
    but letters, digits, `_`, `-` and spaces dropped, spaces made `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated one gets -1, -2… as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in _split(page)[0]:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m[1])
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image outside code."""
    found = []
    for number, line in enumerate(_split(page)[0], 1):
        line = CODE_SPAN.sub(lambda m: "x" * len(m[0]) if "](" in m[0] else m[0], line)
        found += [(number, m[1]) for m in LINK.finditer(line)]
    return found


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)
