"""Reading policy files safely, with errors that point at file, line, column and field.

Loading is total: every file content ends in a policy or in located ``FILE:LINE:COL`` problems,
within bounded time and memory. Each bound has a reason:

- only regular files, opened without blocking (a FIFO or a device would block or never end), of
  at most :data:`MAX_POLICY_BYTES` (a policy is a few kilobytes; the YAML parser is pure Python);
- the document is built from PyYAML's event stream by :func:`_compose`, iteratively, refusing
  before any recursion: nesting over :data:`MAX_DEPTH` levels, over :data:`MAX_EVENTS` events
  (libyaml parses 100 000 in about 0.1 s, PyYAML's pure-Python parser in about 2 s),
  anchors and aliases (alias expansion is how YAML bombs work), tags of any kind (``!!python/...``
  constructs objects; a policy needs none), complex keys (``? [a, b]``), more than one document;
- scalars are converted by their resolved type, numbers only when at most
  :data:`MAX_NUMBER_CHARS` long (``int()`` of a 5 000-digit literal raises, of a 4 000-digit
  one takes quadratic time), timestamps kept as text;
- duplicate keys are refused (YAML silently keeps the last).

Schema errors are located in the file through the node tree; an unknown key gets a "did you
mean" from the fields allowed at that place.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from moderator.errors import PolicyError
from moderator.files import FileRefused, read_regular_file
from moderator.policy.schema import Category, Decision, Defaults, Frames, InlineTest, ModelRef, Policy, consistency

MAX_POLICY_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_EVENTS = 100_000
MAX_NUMBER_CHARS = 64
MAX_PROBLEMS = 50  # listed per file; locating each one walks the file's node tree

# libyaml's event parser when PyYAML was built with it (its wheels are): ~20x the pure-Python one.
_EVENT_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


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
    raw = read_policy_bytes(p)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(p, [Problem(None, None, f"policy is not UTF-8 text: {exc}")]) from exc
    node = _compose(p, text)
    if not isinstance(node, yaml.MappingNode):
        got = "an empty file" if node is None else ("a list" if isinstance(node, yaml.SequenceNode) else "a single value")
        mark = node.start_mark if node is not None else None
        raise PolicyFileError(
            p, [Problem(mark.line + 1 if mark else 1, mark.column + 1 if mark else 1, f"a policy is a mapping with name and categories, got {got}")]
        )
    data = _construct(p, node)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        # Cross-field problems come from `consistency` on the raw mapping, each at its value: the
        # schema's own check runs only when every field is valid and stops at the first.
        errors = [e for e in exc.errors() if not (e["type"] == "value_error" and not e["loc"])]
        cross = consistency(data)
        total = len(errors) + len(cross)
        problems = [_locate(node, dict(err)) for err in errors[:MAX_PROBLEMS]] + [_at(node, loc, m) for loc, m in cross[:MAX_PROBLEMS]]
        problems.sort(key=lambda pr: (pr.line or 0, pr.column or 0, pr.message))
        if total > MAX_PROBLEMS:
            problems = problems[:MAX_PROBLEMS] + [Problem(None, None, f"... and {total - MAX_PROBLEMS} more problems")]
        raise PolicyFileError(p, problems) from exc
    return LoadedPolicy(policy, p, hashlib.sha256(raw).hexdigest()[:16])


def read_policy_bytes(path: Path) -> bytes:
    """The bytes of a regular file of at most :data:`MAX_POLICY_BYTES`, never blocking.

    Raises:
        PolicyFileError: not readable, not a regular file, or too large.
    """
    try:
        return read_regular_file(path, MAX_POLICY_BYTES, "policy")
    except FileRefused as exc:
        raise PolicyFileError(path, [Problem(None, None, str(exc))]) from exc


def _compose(path: Path, text: str) -> yaml.Node | None:
    """The document's node tree, built from the event stream without recursion."""
    resolver = yaml.resolver.Resolver()
    root: yaml.Node | None = None
    stack: list[yaml.Node] = []
    pending_key: dict[int, yaml.Node | None] = {}
    documents = 0

    def refuse(event: Any, message: str) -> PolicyFileError:
        m = event.start_mark
        return PolicyFileError(path, [Problem(m.line + 1, m.column + 1, message)])

    try:
        for count, event in enumerate(yaml.parse(text, Loader=_EVENT_LOADER)):
            if count > MAX_EVENTS:
                raise refuse(event, f"the policy has over {MAX_EVENTS} YAML events; a policy is far smaller")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise refuse(event, "one YAML document per policy file (found a second one)")
                continue
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise refuse(event, "anchors and aliases are not allowed in policies (alias expansion can explode)")
            if (tag := getattr(event, "tag", None)) is not None:
                raise refuse(event, f"YAML tags are not allowed in policies (found {tag!r})")
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                done = stack.pop()
                done.end_mark = event.end_mark
                pending_key.pop(id(done), None)
                continue
            if isinstance(event, yaml.ScalarEvent):
                tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
                node: yaml.Node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)  # type: ignore[arg-type]  # libyaml's Mark
            elif isinstance(event, yaml.SequenceStartEvent):
                node = yaml.SequenceNode(_SEQ, [], event.start_mark, None, flow_style=event.flow_style)  # type: ignore[arg-type]
            elif isinstance(event, yaml.MappingStartEvent):
                node = yaml.MappingNode(_MAP, [], event.start_mark, None, flow_style=event.flow_style)  # type: ignore[arg-type]
            else:
                continue  # stream and document boundaries
            if not stack:
                root = node
            else:
                parent = stack[-1]
                if isinstance(parent, yaml.SequenceNode):
                    parent.value.append(node)
                elif pending_key.get(id(parent)) is None:
                    if not isinstance(node, yaml.ScalarNode):
                        raise refuse(event, "complex mapping keys (a list or mapping used as a key) are not allowed")
                    pending_key[id(parent)] = node
                else:
                    parent.value.append((pending_key[id(parent)], node))
                    pending_key[id(parent)] = None
            if isinstance(node, yaml.CollectionNode):
                stack.append(node)
                if len(stack) > MAX_DEPTH:
                    raise refuse(event, f"nested more than {MAX_DEPTH} levels deep; a policy needs a few")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        ctx = exc.context_mark
        context = f" ({exc.context} at line {ctx.line + 1}, column {ctx.column + 1})" if exc.context and ctx else ""
        raise PolicyFileError(
            path, [Problem(mark.line + 1 if mark else None, mark.column + 1 if mark else None, f"invalid YAML: {exc.problem}{context}")]
        ) from exc
    except yaml.YAMLError as exc:
        raise PolicyFileError(path, [Problem(None, None, f"invalid YAML: {exc}")]) from exc
    if root is not None:
        dupes = list(itertools.islice(_duplicate_keys(root), MAX_PROBLEMS))
        if dupes:
            raise PolicyFileError(path, dupes)
    return root


def _construct(path: Path, node: yaml.Node) -> Any:
    """Python data from a composed node tree (depth at most MAX_DEPTH, so recursion is bounded)."""
    if isinstance(node, yaml.MappingNode):
        return {_construct(path, k): _construct(path, v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_construct(path, item) for item in node.value]
    value = node.value
    if node.tag in (_INT, _FLOAT):
        if len(value) > MAX_NUMBER_CHARS:
            m = node.start_mark
            raise PolicyFileError(path, [Problem(m.line + 1, m.column + 1, f"a number of {len(value)} characters; at most {MAX_NUMBER_CHARS} are accepted")])
        constructor = yaml.constructor.SafeConstructor()
        assert isinstance(node, yaml.ScalarNode)
        return constructor.construct_yaml_int(node) if node.tag == _INT else constructor.construct_yaml_float(node)
    if node.tag == _BOOL:
        return yaml.constructor.SafeConstructor.bool_values[value.lower()]
    if node.tag == _NULL:
        return None
    return value  # str, and timestamps kept as written


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
    Policy: {"categories": Category, "defaults": Defaults, "decision": Decision, "tests": InlineTest, "model": ModelRef, "frames": Frames},
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


def _at(root, loc: tuple, message: str) -> Problem:
    node, _ = _walk(root, loc)
    mark = node.start_mark if node is not None else None
    return Problem(mark.line + 1 if mark else None, mark.column + 1 if mark else None, f"{'.'.join(map(str, loc))}: {message}")


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
