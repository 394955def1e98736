"""Reading policy files safely, with errors that point at file, line, column and field.

- ``yaml.safe_load`` only; anchors and aliases are refused (alias expansion is how YAML bombs
  work), so are duplicate keys (YAML silently keeps the last) and files over 1 MiB.
- Schema errors are located in the file through the YAML node tree; an unknown key gets a
  "did you mean" from the fields allowed at that place.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from moderator.errors import PolicyError
from moderator.policy.schema import Category, Decision, Defaults, InlineTest, ModelRef, Policy

MAX_POLICY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Problem:
    line: int | None
    column: int | None
    message: str

    def format(self, path: Path) -> str:
        where = f"{path}:{self.line}:{self.column}" if self.line is not None else str(path)
        return f"{where}: {self.message}"


class PolicyFileError(PolicyError):
    """A policy file with one or more located problems."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.format(path) for p in problems))


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: Path
    digest: str  # first 16 hex digits of the file's SHA-256: the version verdicts carry


def load_policy(path: str | Path) -> LoadedPolicy:
    """Read, parse and validate a policy file.

    Raises:
        PolicyFileError: listing every problem found, each with its location.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyFileError(p, [Problem(None, None, f"cannot read policy: {exc.strerror or exc}")]) from exc
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyFileError(p, [Problem(None, None, f"policy is {len(raw)} bytes, over the {MAX_POLICY_BYTES}-byte limit")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(p, [Problem(None, None, f"policy is not UTF-8 text: {exc}")]) from exc
    node = _compose(p, text)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise PolicyFileError(p, [Problem(1, 1, f"a policy is a mapping with name and categories, got {type(data).__name__}")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError(p, [_locate(node, err) for err in exc.errors()]) from exc
    return LoadedPolicy(policy, p, hashlib.sha256(raw).hexdigest()[:16])


def _compose(path: Path, text: str) -> yaml.Node | None:
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                m = event.start_mark
                raise PolicyFileError(path, [Problem(m.line + 1, m.column + 1, "anchors and aliases are not allowed in policies (alias expansion can explode)")])
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        ctx = exc.context_mark
        context = f" ({exc.context} at line {ctx.line + 1}, column {ctx.column + 1})" if exc.context and ctx else ""
        raise PolicyFileError(path, [Problem(mark.line + 1 if mark else None, mark.column + 1 if mark else None,
                                             f"invalid YAML: {exc.problem}{context}")]) from exc
    except yaml.YAMLError as exc:
        raise PolicyFileError(path, [Problem(None, None, f"invalid YAML: {exc}")]) from exc
    dupes = list(_duplicate_keys(node))
    if dupes:
        raise PolicyFileError(path, dupes)
    return node


def _duplicate_keys(node):
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key, value in node.value:
            k = getattr(key, "value", None)
            if k in seen:
                m = key.start_mark
                yield Problem(m.line + 1, m.column + 1, f"duplicate key {k!r} (first at line {seen[k].start_mark.line + 1})")
            seen[k] = key
            yield from _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item)


# Which model validates the mapping at each place, to suggest field names.
_CHILDREN: dict[type[BaseModel], dict[str, type[BaseModel]]] = {
    Policy: {"categories": Category, "defaults": Defaults, "decision": Decision, "tests": InlineTest, "model": ModelRef},
}


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Policy
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        model = _CHILDREN.get(model, {}).get(part)
    return model


def _locate(root, err: dict) -> Problem:
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x in ("function-after", "function-before")))
    message = err["msg"].removeprefix("Value error, ")
    field = ".".join(str(x) for x in loc)
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = f"unknown key {loc[-1]!r}" + (f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}")
    elif not loc:
        found = re.match(r"(categories|tests)\.(\d+)", message)
        if found:
            loc = (found.group(1), int(found.group(2)))
    node, key_node = _walk(root, loc)
    mark = (key_node if err["type"] == "extra_forbidden" and key_node is not None else node).start_mark if node is not None else None
    prefix = f"{field}: " if field else ""
    return Problem(mark.line + 1 if mark else None, mark.column + 1 if mark else None, prefix + message)


def _walk(node, loc: tuple):
    """The deepest node along ``loc`` (and the key node of the last mapping step)."""
    key_node = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    key_node, node = k, v
                    break
            else:
                return node, key_node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node, key_node
    return node, key_node
