"""The docs' examples that can run offline do run: every ```toml block is a config that
`gq check-config -c` accepts, every ```sh block exits 0 (docs/development.md, "The docs and
their tests"; a block marked <!-- not run --> is left out). Process tier: each runs gq."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, run_gq
from support.docs_pages import RUN_LANGUAGES, Block, blocks, pages

# The README and docs/; bench/README.md's commands are benchmarks of minutes, run by hand.
EXAMPLES = [b for page in pages() if page.parent != ROOT / "bench" for b in blocks(page)
            if b.run and b.language in RUN_LANGUAGES]


def _id(block: Block) -> str:
    return f"{block.page.relative_to(ROOT)}:{block.line}"


def test_the_docs_have_examples_to_run():
    assert {b.language for b in EXAMPLES} == set(RUN_LANGUAGES)


@pytest.mark.parametrize("block", [b for b in EXAMPLES if b.language == "toml"], ids=_id)
def test_toml_examples_are_valid_configs(block, tmp_path):
    (tmp_path / "gq.toml").write_text(block.text)
    checked = run_gq("check-config", "-c", str(tmp_path / "gq.toml"), cwd=tmp_path)
    assert (checked.returncode, checked.stderr) == (0, ""), block.text


@pytest.mark.parametrize("block", [b for b in EXAMPLES if b.language == "sh"], ids=_id)
def test_shell_examples_run(block, tmp_path):
    # As the docs say: the venv's bin first on PATH, in a directory of one's own.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("GQ_CONFIG", None)
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, f"{_id(block)}:\n{block.text}\n{ran.stdout}{ran.stderr}"
