"""The policy file format (YAML) and its validation.

Minimal first version: a policy names itself (and optionally the model it was written for) and
lists categories, each with prompts and review/block cosine thresholds. See docs/policies.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moderator.errors import PolicyError

MAX_POLICY_BYTES = 1024 * 1024


class Category(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Used as a metric label: lower-case, digits, underscores.")
    description: str = ""
    prompts: tuple[str, ...] = Field(min_length=1, description="Prompt ensemble: averaged, then re-normalised.")
    review: float = Field(ge=-1.0, le=1.0, description="Cosine score at or above which the category asks for review.")
    block: float = Field(ge=-1.0, le=1.0, description="Cosine score at or above which the category blocks.")

    @field_validator("prompts")
    @classmethod
    def _non_blank(cls, prompts: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p.strip() for p in prompts):
            raise ValueError("prompts must not be blank")
        return prompts

    @model_validator(mode="after")
    def _ordered(self) -> Category:
        if self.review > self.block:
            raise ValueError(f"review threshold {self.review} is above block threshold {self.block}")
        return self


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    model: str | None = Field(None, description="Name of the model the thresholds were chosen for.")
    categories: tuple[Category, ...] = Field(min_length=1)
    version: str = Field("", description="Content hash of the file; filled in by load_policy.")

    @model_validator(mode="after")
    def _unique(self) -> Policy:
        names = [c.name for c in self.categories]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate category names: {', '.join(dupes)}")
        return self


def load_policy(path: str | Path) -> Policy:
    """Read, parse (``yaml.safe_load``) and validate a policy file.

    Raises:
        PolicyError: unreadable, too large, not YAML (with line and column), or invalid (with
            the field path of each problem).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{p}: cannot read policy: {exc.strerror or exc}") from exc
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{p}: policy is {len(raw)} bytes, over the {MAX_POLICY_BYTES}-byte limit")
    try:
        data = yaml.safe_load(raw)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        ctx = exc.context_mark
        context = f" ({exc.context} at line {ctx.line + 1}, column {ctx.column + 1})" if exc.context and ctx else ""
        raise PolicyError(f"{where}: invalid YAML: {exc.problem}{context}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{p}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{p}: a policy is a mapping with name and categories, got {type(data).__name__}")
    data["version"] = hashlib.sha256(raw).hexdigest()[:16]
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{p}: invalid policy: {problems}") from exc
