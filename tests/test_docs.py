"""The shipped docs say what the code does."""

from __future__ import annotations

import tomllib

from gq import config
from support import ROOT


def test_config_example_lists_every_key_with_its_default():
    with open(ROOT / "config.example.toml", "rb") as f:
        example = config.from_dict(tomllib.load(f), "config.example.toml")
    assert example == config.Config()
    text = (ROOT / "config.example.toml").read_text()
    # Regenerate with: gq check-config --comments (below the file's first comment lines).
    assert text.endswith(config.to_toml(config.Config(), comments=True))


def test_readme_quick_start_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in readme.splitlines() if "pytest" in line and "pip install" in line)
    assert test_command.strip() in ci
