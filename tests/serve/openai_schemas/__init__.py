"""OpenAI's official response schemas (vendored, see README.md) as validators for the serving tests."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

HERE = Path(__file__).parent


def _load(name: str) -> dict:
    return json.loads((HERE / f"{name}.json").read_text())


def _stream_errata(schema: dict, finish_reason_nullable: bool) -> dict:
    """Two things the spec (2.3.0) says in words but not in its schema, applied to streamed chunks only.

    - `usage` "contains a null value except for the last chunk": nullable.
    - Completions: "both the streamed and non-streamed response objects share the same shape", yet chunks
      before the last have no finish reason yet: `finish_reason` is null there (as OpenAI sends it).
    """
    schema = copy.deepcopy(schema)
    usage = schema["properties"]["usage"]
    schema["properties"]["usage"] = {"anyOf": [usage, {"type": "null"}]}
    if finish_reason_nullable:
        reason = schema["properties"]["choices"]["items"]["properties"]["finish_reason"]
        reason["type"], reason["enum"] = [reason["type"], "null"], [*reason["enum"], None]
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for one response schema; `CreateCompletionStreamResponse` is a completion chunk."""
    if name == "CreateCompletionStreamResponse":
        schema = _stream_errata(_load("CreateCompletionResponse"), finish_reason_nullable=True)
    elif name == "CreateChatCompletionStreamResponse":
        schema = _stream_errata(_load(name), finish_reason_nullable=False)
    else:
        schema = _load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(name: str, body) -> list[str]:
    """Every way `body` breaks the schema, each as 'path: message' (empty when it conforms)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
            for e in sorted(validator(name).iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))]


def assert_conforms(name: str, body) -> None:
    errors = schema_errors(name, body)
    assert not errors, f"{name} violated:\n  " + "\n  ".join(errors) + f"\nbody: {json.dumps(body)[:2000]}"
