"""gq/intake/openapi.json, the description of gq's HTTP API, as a document: valid OpenAPI 3.1, kept
in one layout, shipped in the package (that a running daemon keeps it: tests/process/test_openapi.py)."""

from __future__ import annotations

import json
import tomllib
from importlib import resources

from openapi_spec_validator import OpenAPIV31SpecValidator

import gq
from support import ROOT

DOCUMENT = resources.files("gq.intake").joinpath("openapi.json")


def document() -> dict:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def test_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(doc).validate()


def test_document_version_is_gq_version():
    assert document()["info"]["version"] == gq.__version__


def test_document_is_kept_in_one_layout():
    """Written by hand, kept as json.dumps(indent=2) writes it, so diffs stay small and readable."""
    text = DOCUMENT.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_document_is_shipped_in_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "openapi.json" in pyproject["tool"]["setuptools"]["package-data"]["gq.intake"]
    assert DOCUMENT.is_file()


def test_token_guards_v1_only():
    doc = document()
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "security" not in doc  # no default: each operation says
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            expected = [{"bearerAuth": []}] if path.startswith("/v1/") else []
            assert operation.get("security") == expected, f"{method.upper()} {path}"


def test_every_reference_resolves():
    doc = document()

    def refs(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            assert part in node, f"{ref}: no {part!r}"
            node = node[part]
