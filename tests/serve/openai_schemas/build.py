"""Rebuild the vendored JSON Schemas from openapi_extract.yaml: `python tests/serve/openai_schemas/build.py`.

OpenAPI 3.0 schemas are not JSON Schema: `nullable: true` becomes a `"null"` type (or a null branch), refs to
`#/components/schemas/X` become `#/$defs/X`, and each response schema gets only the definitions it reaches,
so every file stands alone under Draft 2020-12.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

HERE = Path(__file__).parent
ROOTS = ["CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "CreateCompletionResponse",
         "ListModelsResponse", "Model", "ErrorResponse"]
DRAFT = "https://json-schema.org/draft/2020-12/schema"
PREFIX = "#/components/schemas/"


def to_json_schema(node):
    """One OpenAPI 3.0 schema node as JSON Schema 2020-12."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if "$ref" in out:
        out["$ref"] = "#/$defs/" + out["$ref"].removeprefix(PREFIX)
    if node.get("nullable") is not True:
        return out
    if "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    # A nullable $ref or oneOf: null is one more branch (siblings of $ref are allowed in 2020-12).
    return {"anyOf": [out, {"type": "null"}]}


def refs(node) -> set[str]:
    if isinstance(node, list):
        return set().union(*map(refs, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"].removeprefix(PREFIX)} if isinstance(node.get("$ref"), str) else set()
    return found.union(*map(refs, node.values()))


def bundle(schemas: dict, root: str) -> dict:
    needed, todo = set(), [root]
    while todo:
        name = todo.pop()
        for r in refs(schemas[name]) - needed:
            needed.add(r)
            todo.append(r)
    needed.discard(root)
    out = {"$schema": DRAFT, "$id": f"{root}.json", "title": root, **to_json_schema(schemas[root])}
    if needed:
        out["$defs"] = {name: to_json_schema(schemas[name]) for name in sorted(needed)}
    return out


def main() -> None:
    schemas = yaml.safe_load((HERE / "openapi_extract.yaml").read_text())["components"]["schemas"]
    for root in ROOTS:
        (HERE / f"{root}.json").write_text(json.dumps(bundle(schemas, root), indent=1) + "\n")


if __name__ == "__main__":
    main()
