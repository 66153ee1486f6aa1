"""The shipped docs say what the code does: the generated references are current, every
relative link and anchor resolves, every page is reachable and installed
(docs/development.md, "The docs and their tests")."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gq import config
from gq.commands import reference
from support import ROOT
from support.docs_pages import anchors, is_relative, links, pages


def test_config_example_lists_every_key_with_its_default():
    with open(ROOT / "config.example.toml", "rb") as f:
        example = config.from_dict(tomllib.load(f), "config.example.toml")
    assert example == config.Config()
    text = (ROOT / "config.example.toml").read_text()
    # Regenerate with: gq check-config --comments (below the file's first comment lines).
    assert text.endswith(config.to_toml(config.Config(), comments=True))


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in readme.splitlines() if "pytest" in line and "pip install" in line)
    assert test_command.strip() in ci


@pytest.mark.parametrize(("name", "generate"), [("config-reference.md", reference.config_reference),
                                                 ("api-reference.md", reference.api_reference)])
def test_generated_references_are_current(name, generate):
    # Regenerate with: python -m gq.commands.reference config|api > docs/NAME (the file's first line says which).
    assert (ROOT / "docs" / name).read_text() == generate()


def test_the_config_reference_names_every_key():
    text = reference.config_reference()
    for section in config.SECTIONS:
        assert f"## [{section}]\n" in text
        for key in config.keys(section):
            assert f"| `{key}` |" in text, f"{section}.{key}"


def test_the_api_reference_names_every_operation():
    text = reference.api_reference()
    for path, item in reference.openapi()["paths"].items():
        for method in item.keys() - {"parameters"}:
            assert f"### `{method.upper()} {path}`" in text


def _where(page: Path, line: int) -> str:
    return f"{page.relative_to(ROOT)}:{line}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for line, target in links(page):
        if not is_relative(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{_where(page, line)}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{_where(page, line)}: {target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
        elif dest.is_relative_to(ROOT / ".git") or not dest.is_relative_to(ROOT):
            broken.append(f"{_where(page, line)}: {target}: outside the repository")
    assert broken == []


def _linked_from(page: Path) -> set[Path]:
    return {(page.parent / target.partition("#")[0]).resolve()
            for _, target in links(page) if is_relative(target) and target.partition("#")[0]}


def test_every_docs_page_is_linked_from_the_readme():
    linked = _linked_from(ROOT / "README.md")
    assert [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked] == []


def test_every_docs_page_and_image_is_installed_beside_the_readme():
    with open(ROOT / "pyproject.toml", "rb") as f:
        data_files = tomllib.load(f)["tool"]["setuptools"]["data-files"]
    # Where the README's links expect them: share/doc/gq/README.md, share/doc/gq/docs/…
    assert sorted(data_files["share/doc/gq/docs"]) == sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
    assert sorted(data_files["share/doc/gq/docs/images"]) == sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "images").iterdir())
    assert "README.md" in data_files["share/doc/gq"]


def test_the_link_checker_reads_links_and_anchors_as_github_does(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title: `a.b` — c\n\n## Private networks: `target.deny_private = true`\n\n## Again\n\n"
                    "## Again\n\nSee [x](other.md#y) and ![img](i.png \"t\"), not `[z](code.md)`.\n\n"
                    "```sh\n[w](fenced.md)\n## not a heading\n```\n")
    assert anchors(page) == {"title-ab--c", "private-networks-targetdeny_private--true", "again", "again-1"}
    assert [t for _, t in links(page)] == ["other.md#y", "i.png"]
