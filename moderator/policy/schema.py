"""The policy file format: pydantic models, published as JSON Schema (docs/policy.schema.json).

Reading a file (YAML safety, line numbers in errors) is ``policy.loader``; this module only says
what a valid policy is. docs/policies.md is the reference for every field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scoring = Literal["cosine", "softmax", "sigmoid"]
Aggregate = Literal["max", "mean", "k_of_n"]
Action = Literal["review", "block"]


class _Strict(BaseModel):
    # strict: a threshold written as a string or a boolean (``review: true`` once became 1.0) is an
    # error, not a conversion; integers are still accepted where numbers are expected.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ModelRef(_Strict):
    name: str = Field(min_length=1, description="The model's manifest name.")
    checksum: str | None = Field(None, description="The model's checksum (moderator models info); when set, any other build of the model is refused.")


class Defaults(_Strict):
    """Values a category takes when it does not set them."""

    scoring: Scoring = "cosine"
    temperature: float = Field(0.01, gt=0, le=1, description="softmax scoring: logits are cosine / temperature.")
    review: float | None = Field(None, description="Default review threshold.")
    block: float | None = Field(None, description="Default block threshold.")
    aggregate: Aggregate = Field("max", description="How frame scores make a category's score: max (one frame is enough), mean, or k_of_n.")
    k: int = Field(2, ge=1, description="k_of_n: frames over the threshold needed ...")
    n: int = Field(3, ge=1, description="... among n consecutive scored frames.")


class Decision(_Strict):
    """How category actions combine into the verdict's decision."""

    escalate_reviews: int | None = Field(None, ge=2, description="When at least this many categories ask for review, the decision is block.")


class Frames(_Strict):
    """How animated images are judged (every frame is scored; see docs/policies.md#frames)."""

    on_overflow: Literal["review", "reject", "sample"] = Field(
        "review",
        description="When not all of a message was scored (more distinct frames than media.max_frames, a video that stopped early, "
        "or a frame too long for media.max_crops squares to cover): review (at least review), reject (block), or sample (decide on "
        "what was scored alone).",
    )


class InlineTest(_Strict):
    image: str = Field(min_length=1, description="Image path, relative to the policy file.")
    decision: Literal["allow", "review", "block"] | None = None
    categories: list[str] | None = Field(None, description="Exactly the categories that must fire.")

    @model_validator(mode="after")
    def _expects_something(self) -> InlineTest:
        if self.decision is None and self.categories is None:
            raise ValueError("a test needs an expected decision, categories, or both")
        return self


class Category(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Lower-case letters, digits and underscores; used as a metric label.")
    description: str = ""
    prompts: list[str] = Field(default_factory=list, description="Plain prompts of the ensemble.")
    templates: list[str] = Field(default_factory=list, description="Prompt templates with one {} each, combined with every term.")
    terms: list[str] = Field(default_factory=list, description="Terms put into every template.")
    contrast: list[str] = Field(default_factory=list, description="Benign look-alikes (softmax scoring): probability they take is not the category's.")
    examples: list[str] = Field(default_factory=list, description="Example images (paths relative to the policy file) used as few-shot prototypes.")
    scoring: Scoring | None = Field(None, description="cosine, softmax or sigmoid; default from defaults.scoring.")
    temperature: float | None = Field(None, gt=0, le=1)
    review: float | None = Field(None, description="Score at or above which the category asks for review.")
    block: float | None = Field(None, description="Score at or above which the category blocks (when action is block).")
    action: Action = Field("block", description="The most severe action this category may take.")
    aggregate: Aggregate | None = Field(
        None,
        description="How frame scores make the category's score (default from defaults.aggregate): "
        "max, mean, or k_of_n (k of n consecutive scored frames over the threshold).",
    )
    k: int | None = Field(None, ge=1, description="k_of_n: frames over the threshold needed (default from defaults.k).")
    n: int | None = Field(None, ge=1, description="k_of_n: the window of consecutive scored frames (default from defaults.n).")
    severity: int = Field(0, ge=0, le=100, description="Orders fired categories of equal action in reasons; higher first.")

    @field_validator("prompts", "contrast", "terms")
    @classmethod
    def _no_blank(cls, values: list[str]) -> list[str]:
        if any(not v.strip() for v in values):
            raise ValueError("must not contain blank strings")
        return values

    @field_validator("templates")
    @classmethod
    def _one_slot(cls, templates: list[str]) -> list[str]:
        for t in templates:
            if t.count("{}") != 1:
                raise ValueError(f"template {t!r} must contain exactly one {{}}")
        return templates

    @model_validator(mode="after")
    def _has_prompts(self) -> Category:
        if bool(self.templates) != bool(self.terms):
            raise ValueError("templates and terms go together: each template is filled with every term")
        if not self.prompts and not self.templates:
            raise ValueError("a category needs at least one prompt (prompts, or templates with terms)")
        return self

    def all_prompts(self) -> list[str]:
        """Plain prompts, then every template filled with every term (deduplicated, in order)."""
        out = list(self.prompts) + [t.format(term) for t in self.templates for term in self.terms]
        return list(dict.fromkeys(out))


class Policy(_Strict):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="ModeratorPolicy")

    name: str = Field(min_length=1)
    version: str = Field("", description="Your label for this revision (verdicts also carry the file's content hash).")
    description: str = ""
    model: ModelRef | None = Field(None, description="The model the thresholds were chosen for: a name, or {name, checksum}.")
    defaults: Defaults = Defaults()
    decision: Decision = Decision()
    frames: Frames = Frames()
    categories: list[Category] = Field(min_length=1)
    tests: list[InlineTest] = Field(default_factory=list, description="Run by `moderator policy test`.")

    @field_validator("model", mode="before")
    @classmethod
    def _model_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        problems = consistency(self.model_dump())
        if problems:
            raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems))
        return self


class Resolved(_Strict):
    scoring: Scoring
    temperature: float
    review: float | None
    block: float | None
    aggregate: Aggregate = "max"
    k: int = 1
    n: int = 1


def resolve(c: Category, d: Defaults) -> Resolved:
    """A category's scoring settings with the policy's defaults filled in."""
    return Resolved(
        scoring=c.scoring or d.scoring,
        temperature=c.temperature if c.temperature is not None else d.temperature,
        review=c.review if c.review is not None else d.review,
        block=c.block if c.block is not None else d.block,
        aggregate=c.aggregate or d.aggregate,
        k=c.k if c.k is not None else d.k,
        n=c.n if c.n is not None else d.n,
    )


def consistency(data: dict) -> list[tuple[tuple, str]]:
    """Every cross-field problem of a policy, each at the value that causes it: ``(location,
    message)``, the location a path of keys and indexes (``("categories", 2, "block")``).

    Works on the raw mapping as well as on a validated one, so ``policy lint`` reports these
    beside any type or unknown-key error, not only once everything else is right. Values of the
    wrong type are skipped here (the schema reports them).
    """

    def num(value) -> float | None:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    problems: list[tuple[tuple, str]] = []
    defaults: dict = data["defaults"] if isinstance(data.get("defaults"), dict) else {}
    categories: list = data["categories"] if isinstance(data.get("categories"), list) else []
    seen: dict[str, int] = {}
    for i, c in enumerate(categories):
        if not isinstance(c, dict):
            continue
        name: str = c["name"] if isinstance(c.get("name"), str) else f"#{i}"
        if name in seen:
            problems.append((("categories", i, "name"), f"duplicate category name {name!r} (first at categories.{seen[name]})"))
        else:
            seen[name] = i

        def pick(key: str, fallback=None, c=c, i=i):  # bound now: called only in this iteration
            """The category's value and where it is set (its own key, or the defaults)."""
            if c.get(key) is not None:
                return c[key], ("categories", i, key)
            if defaults.get(key) is not None:
                return defaults[key], ("defaults", key)
            return fallback, ("categories", i)

        scoring, _ = pick("scoring", "cosine")
        low = -1.0 if scoring == "cosine" else 0.0
        values = {}
        for label in ("review", "block"):
            raw, where = pick(label)
            if raw is None:
                problems.append((("categories", i), f"category {name!r}: {label} threshold is required (in the category or in defaults)"))
                continue
            v = num(raw)
            if v is None:
                continue
            values[label] = (v, where)
            if not low <= v <= 1.0:
                problems.append((where, f"category {name!r}: {label} threshold {raw} is out of range [{low:g}, 1] for {scoring} scoring"))
        if "review" in values and "block" in values and values["review"][0] > values["block"][0]:
            problems.append(
                (values["block"][1], f"category {name!r}: review threshold {values['review'][0]:g} is above block threshold {values['block'][0]:g}")
            )
        aggregate, _ = pick("aggregate", "max")
        (k, k_at), (n, _) = pick("k", 2), pick("n", 3)
        if aggregate == "k_of_n" and num(k) is not None and num(n) is not None and k > n:
            problems.append((k_at, f"category {name!r}: k_of_n needs k <= n (k {k}, n {n})"))
        if c.get("examples") and scoring != "cosine":
            problems.append((("categories", i, "examples"), f"category {name!r}: example images are prototypes for cosine scoring; set scoring: cosine"))
        if c.get("contrast") and scoring != "softmax":
            problems.append(
                (("categories", i, "contrast"), f"category {name!r}: contrast prompts need scoring: softmax (they compete with the category's prompts)")
            )
    names = set(seen)
    tests: list = data["tests"] if isinstance(data.get("tests"), list) else []
    for i, t in enumerate(tests):
        wanted = t.get("categories") if isinstance(t, dict) else None
        if isinstance(wanted, list):
            unknown = sorted({x for x in wanted if isinstance(x, str)} - names)
            if unknown:
                problems.append((("tests", i, "categories"), f"unknown categories {unknown}; the policy has {sorted(names)}"))
    return problems
