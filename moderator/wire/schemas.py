"""JSON Schemas of the wire formats and the policy file, generated from the pydantic models
(paths relative to docs/)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from moderator.policy.schema import Policy
from moderator.wire.input import Envelope
from moderator.wire.verdict import Verdict

SCHEMAS: dict[str, type[BaseModel]] = {"schemas/verdict.schema.json": Verdict, "schemas/input-envelope.schema.json": Envelope, "policy.schema.json": Policy}


def schema_documents() -> dict[str, str]:
    out = {}
    for name, model in SCHEMAS.items():
        doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema(mode="serialization")}
        out[name] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return out


def write_schemas(out: Path) -> list[Path]:
    paths = []
    for name, text in schema_documents().items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
        paths.append(out / name)
    return paths
