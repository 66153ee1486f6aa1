"""The reference pages of docs/, made from what the code declares: the config keys (gq/config.py)
and the HTTP API (gq/intake/openapi.json). tests/unit/test_docs.py checks that the files equal this output.

    python -m gq.commands.reference config > docs/config-reference.md
    python -m gq.commands.reference api > docs/api-reference.md
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from importlib import resources
from typing import Any

from gq import config

COMMANDS = {"config": "docs/config-reference.md", "api": "docs/api-reference.md"}


def _header(what: str, source: str) -> str:
    return (f"<!-- Generated from {source}: do not edit. Regenerate with "
            f"`python -m gq.commands.reference {what} > {COMMANDS[what]}`; "
            "tests/unit/test_docs.py checks it is current. -->\n")


def _cell(text: str) -> str:
    """`text` fit for one cell of a Markdown table: one line, its pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    """`text` as inline code, however many backticks it holds."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def config_reference() -> str:
    """docs/config-reference.md: a table per section of every key, its default as TOML, its help,
    and whether a reload (SIGHUP) applies it or it needs a restart."""
    out = [_header("config", "gq/config.py"), "# Configuration reference", "",
           "Every key of gq's TOML config file, by section, with its default, what it means, and whether",
           "a reload (`SIGHUP`) applies it to the running gq or it keeps its value until a restart. Every key",
           "is optional; unknown keys and wrong types are errors. The same list, as a file to start from, is",
           "[`config.example.toml`](../config.example.toml) (`gq check-config --comments`); what the keys",
           "do together is in [Configuration](configuration.md).", ""]
    defaults = config.Config()
    for name in config.SECTIONS:
        out += [f"## [{name}]", "", "| key | default | meaning | on reload |", "|---|---|---|---|"]
        for f in dataclasses.fields(config.SECTIONS[name]):
            default = config.shown_key(defaults, name, f.name)
            applies = "applies" if f.metadata["live"] else "needs a restart"
            out.append(f"| {_code(f.name)} | {_cell(_code(default))} | {_cell(f.metadata['help'])} | {applies} |")
        out.append("")
    return "\n".join(out)


def openapi() -> dict:
    """gq's OpenAPI description, as the package ships it (GET /openapi.json serves the same)."""
    return json.loads(resources.files("gq.intake").joinpath("openapi.json").read_text(encoding="utf-8"))


def _anchor(name: str) -> str:
    return f"[{name}](#{name.lower()})"


def _type(schema: dict) -> str:
    """A schema's type in a few words, with links to the named schemas it uses."""
    if "$ref" in schema:
        return _anchor(schema["$ref"].rsplit("/", 1)[1])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(dict.fromkeys(_type(s) for s in schema[key]))
    if "enum" in schema:
        return " \\| ".join(_code(json.dumps(v)) for v in schema["enum"])
    kind = schema.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    words = []
    for k in kinds:
        if k == "array":
            words.append(f"array of {_type(schema.get('items', {}))}")
        elif k == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
            words.append(f"object of {_type(schema['additionalProperties'])}")
        else:
            words.append(k)
    return " or ".join(words)


def _lookup(spec: dict, ref: str) -> dict:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _deref(spec: dict, item: dict) -> dict:
    while "$ref" in item:
        item = _lookup(spec, item["$ref"])
    return item


def _operation(spec: dict, path: str, method: str, op: dict, shared: list[dict]) -> list[str]:
    out = [f"### {_code(f'{method.upper()} {path}')}", "", f"**{op['summary']}.**" + (
        " " + op["description"] if op.get("description") else ""), ""]
    needs_token = any(op.get("security", spec.get("security", [])))
    out.append("Token: " + ("`Authorization: Bearer …` when `api.token` is set." if needs_token else "never needed."))
    out.append("")
    parameters = [_deref(spec, p) for p in shared + op.get("parameters", [])]
    if parameters:
        out += ["| parameter | in | type | meaning |", "|---|---|---|---|"]
        for p in parameters:
            name = _code(p["name"]) + (" (required)" if p.get("required") else "")
            out.append(f"| {name} | {p['in']} | {_cell(_type(p.get('schema', {})))} | "
                       f"{_cell(p.get('description', ''))} |")
        out.append("")
    if "requestBody" in op:
        body = _deref(spec, op["requestBody"])
        kinds = "; ".join(f"{_code(kind)}: {_type(content.get('schema', {}))}"
                          for kind, content in body.get("content", {}).items())
        out += [f"Request body{' (required)' if body.get('required') else ''}: {kinds}. "
                f"{body.get('description', '')}".rstrip(), ""]
    out += ["| status | meaning | body |", "|---|---|---|"]
    for status, answer in op["responses"].items():
        answer = _deref(spec, answer)
        meaning = answer.get("description", "")
        if answer.get("headers"):
            meaning += " Headers: " + ", ".join(_code(h) for h in answer["headers"]) + "."
        shapes = "; ".join(f"{_type(content['schema'])} ({_code(kind)})" if "schema" in content else _code(kind)
                           for kind, content in answer.get("content", {}).items())
        out.append(f"| {status} | {_cell(meaning)} | {_cell(shapes) or '—'} |")
    out.append("")
    return out


def _schema(spec: dict, name: str, schema: dict) -> list[str]:
    out = [f"### {name}", ""]
    if schema.get("description"):
        out += [schema["description"], ""]
    properties = schema.get("properties", {})
    if not properties:
        out += [f"Type: {_type({k: v for k, v in schema.items() if k != 'description'})}.", ""]
        return out
    required = set(schema.get("required", ()))
    out += ["| field | type | meaning |", "|---|---|---|"]
    for field, item in properties.items():
        shown = _code(field) + (" (required)" if field in required else "")
        out.append(f"| {shown} | {_cell(_type(item))} | {_cell(item.get('description', ''))} |")
    out.append("")
    return out


def api_reference(spec: dict | None = None) -> str:
    """docs/api-reference.md: every path and method of the OpenAPI description (summary,
    parameters, request body, responses), then its schemas."""
    spec = openapi() if spec is None else spec
    info = spec["info"]
    out = [_header("api", "gq/intake/openapi.json"), "# API reference", "",
           f"{info['summary']} This page is gq's OpenAPI {spec['openapi']} description "
           "([`gq/intake/openapi.json`](../gq/intake/openapi.json), also served at `GET /openapi.json`) in prose; "
           "the guide to the API is [The HTTP API](api.md).", "", info["description"], "", "## Operations", ""]
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method != "parameters":
                out += _operation(spec, path, method, op, shared)
    out += ["## Schemas", ""]
    for name, schema in spec["components"]["schemas"].items():
        out += _schema(spec, name, schema)
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(f"usage: python -m gq.commands.reference {'|'.join(COMMANDS)}", file=sys.stderr)
        return 2
    sys.stdout.write(config_reference() if argv[0] == "config" else api_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
