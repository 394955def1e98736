"""JSON Schemas of the wire formats, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

from moderator.wire.input import Envelope
from moderator.wire.verdict import Verdict

SCHEMAS = {"verdict.schema.json": Verdict, "input-envelope.schema.json": Envelope}


def schema_documents() -> dict[str, str]:
    out = {}
    for name, model in SCHEMAS.items():
        doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema(mode="serialization")}
        out[name] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return out


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in schema_documents().items():
        (out / name).write_text(text)
        paths.append(out / name)
    return paths
