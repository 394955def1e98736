"""Hash bank files: one bank a file, CSV with a header row, properties in leading comments.

::

    # moderator hash bank
    # kind: deny
    # pdq_threshold: 31
    # category: weapons
    # action: block
    hash_type,hash,category,action,note,added
    pdq,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,,,case 1234,2026-11-30
    sha256,9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08,,review,,2026-11-30

Properties (``# name: value`` lines before the header row; other comments are free text, but a
name that looks like a misspelt property is an error): ``kind`` (required: ``deny`` or
``allow``), ``pdq_threshold`` (Hamming distance at or under which a PDQ hash matches, 0..64,
default 31), ``category`` and ``action`` (defaults for rows that leave them empty; ``action``
``block`` or ``review`` in a deny bank, ``allow`` in an allow bank), ``overrides`` (allow banks:
the most severe classifier decision a *PDQ* match may override, ``review`` by default or
``block``; an exact SHA-256 match overrides any), ``description``.

Columns: ``hash_type`` (``pdq`` or ``sha256``) and ``hash`` (64 hex digits) are required;
``category``, ``action``, ``note`` and ``added`` (ISO 8601 date or time) may be absent or empty.
Lines starting with ``#`` are comments anywhere. Every problem is reported as ``FILE:LINE:``
(up to :data:`MAX_PROBLEMS` a file).

Bounds and why: a file of at most :data:`MAX_BANK_BYTES` (a million PDQ rows with notes is about
100 MB), a field of at most :data:`MAX_FIELD_CHARS` (a note is a sentence; csv's own limit would
be 128 KiB), categories named like policy categories (they are shown in verdicts and dashboards).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from moderator.errors import BankError
from moderator.files import FileRefused, read_regular_file
from moderator.hashing.compute import parse_hex

SUFFIX = ".csv"
MAX_BANK_BYTES = 512 * 1024 * 1024
MAX_FIELD_CHARS = 1000
MAX_PROBLEMS = 50
COLUMNS = ("hash_type", "hash", "category", "action", "note", "added")
REQUIRED = ("hash_type", "hash")
DECIDING = ("category", "action")  # columns that change what a match does
HASH_TYPES = ("sha256", "pdq")
KINDS = ("deny", "allow")
DENY_ACTIONS = ("review", "block")
PROPERTIES = ("kind", "pdq_threshold", "category", "action", "overrides", "description")
OVERRIDES = ("review", "block")
DEFAULT_PDQ_THRESHOLD = 31
MAX_PDQ_THRESHOLD = 64
DEFAULT_CATEGORY = "known_content"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # file stems: bank names, a metric label
CATEGORY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PROPERTY_LINE = re.compile(r"^#\s*([A-Za-z_][A-Za-z0-9_ -]{0,40}?)\s*:\s*(.*?)\s*$")


class BankFileError(BankError):
    """One or more bank files with located problems."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class BankRows:
    """The parsed rows of one bank file, column by column."""

    name: str
    path: Path
    kind: str
    pdq_threshold: int
    description: str
    digest: str  # first 16 hex digits of the file's SHA-256
    default_category: str = DEFAULT_CATEGORY
    default_action: str = "block"
    overrides: str = "review"
    columns: tuple[str, ...] = COLUMNS  # as the header row names them, in its order
    hash_types: list[str] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hashes)


def bank_name(path: Path) -> str | None:
    """The bank's name (the file name without ``.csv``) if the file is a bank file, else None."""
    if path.suffix != SUFFIX or path.name.startswith("."):
        return None
    return path.stem


def read_bank(path: Path) -> BankRows:
    """Parse and validate one bank file.

    Raises:
        BankFileError: every problem found (up to MAX_PROBLEMS), each as ``FILE:LINE: message``.
    """
    problems: list[str] = []

    def problem(line: int | None, message: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        elif len(problems) == MAX_PROBLEMS:
            problems.append(f"{path}: ... and more problems")

    name = path.stem
    if not NAME.match(name):
        raise BankFileError([f"{path}: a bank file is named <bank>.csv, the bank name of lower-case letters, digits, '-' and '_' (at most 63), not {name!r}"])
    try:
        raw = read_regular_file(path, MAX_BANK_BYTES, "bank")
        text = raw.decode("utf-8-sig")
    except FileRefused as exc:
        raise BankFileError([f"{path}: {exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise BankFileError([f"{path}: not UTF-8 text: {exc}"]) from exc
    props: dict[str, tuple[str, int]] = {}
    header: list[str] | None = None
    rows = None
    valid: set[str] = set()
    lines = text.splitlines()
    # Comment lines never reach the CSV reader (a quote in a comment would open a field that
    # swallows the rows after it); they become blank lines, so line numbers stay the file's.
    # Strict: a quote inside a quoted field must be doubled, and a quote left open at the end of
    # the file is an error (not a field that silently ends there, to swallow rows added later).
    reader = csv.reader(("" if raw_line.lstrip().startswith("#") else raw_line for raw_line in lines), strict=True)
    last = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # the reader goes on with the next line
            start, last = last + 1, reader.line_num
            if "end of data" in str(exc):
                problem(start, "a field runs over several lines (an unclosed quote?)" if last > start else "an unclosed quote")
            else:
                problem(last, f"not CSV: {exc}")
            continue
        line = reader.line_num
        start, last = last + 1, line
        if line > start:  # a quoted field ran over a line end: a row is one line
            problem(start, "a field runs over several lines (an unclosed quote?)")
            continue
        if not record or (len(record) == 1 and not record[0].strip()):
            if header is None and lines[line - 1].lstrip().startswith("#"):
                _property(lines[line - 1], line, props, problem)
            continue
        if header is None:
            header = _header(record, line, problem)
            if header is None:
                break
            rows = _start(path, name, raw, props, problem, line)
            if rows is not None:
                rows.columns = tuple(header)
            continue
        if rows is not None:
            _row(record, line, header, rows, problem, valid)
    if header is None and not problems:
        problem(None, "no header row: a bank needs a 'hash_type,hash,...' line after its '# kind:' property")
    if problems:
        raise BankFileError(problems)
    assert rows is not None
    return rows


def _property(text: str, line: int, props: dict, problem) -> None:
    m = _PROPERTY_LINE.match(text.strip())
    if not m:
        return  # free comment
    key = m.group(1).strip().lower().replace(" ", "_").replace("-", "_")
    if key in PROPERTIES:
        if key in props:
            problem(line, f"property {key!r} set twice (first on line {props[key][1]})")
        props[key] = (m.group(2), line)
        return
    close = difflib.get_close_matches(key, PROPERTIES, n=1, cutoff=0.75)
    if close:
        problem(line, f"unknown property {key!r}: did you mean {close[0]!r}?")


def _header(record: list[str], line: int, problem) -> list[str] | None:
    names = [c.strip().lower() for c in record]
    unknown = [n for n in names if n not in COLUMNS]
    missing = [c for c in REQUIRED if c not in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or duplicates:
        parts = []
        if unknown:
            parts.append("unknown columns " + ", ".join(repr(u[:40]) for u in unknown[:5]))
        if missing:
            parts.append("missing " + ", ".join(missing))
        if duplicates:
            parts.append("repeated " + ", ".join(duplicates))
        problem(line, f"the header row must name the columns {', '.join(COLUMNS)} (hash_type and hash required): " + "; ".join(parts))
        return None
    return names


def _start(path: Path, name: str, raw: bytes, props: dict, problem, header_line: int) -> BankRows | None:
    kind, kind_line = props.get("kind", ("", None))
    if kind not in KINDS:
        problem(
            kind_line or header_line, "the bank needs '# kind: deny' or '# kind: allow' before its header row" + (f", not {kind[:40]!r}" if kind_line else "")
        )
    threshold = DEFAULT_PDQ_THRESHOLD
    if "pdq_threshold" in props:
        value, line = props["pdq_threshold"]
        if not value.isdigit() or not 0 <= int(value[:4]) <= MAX_PDQ_THRESHOLD:
            problem(line, f"pdq_threshold is a whole number of bits from 0 to {MAX_PDQ_THRESHOLD}, not {value[:40]!r}")
        else:
            threshold = int(value)
    category, line = props.get("category", (DEFAULT_CATEGORY, None))
    if not CATEGORY.match(category):
        problem(line, f"category must be lower-case letters, digits and underscores (at most 63), not {category[:40]!r}")
    action, line = props.get("action", ("block" if kind == "deny" else "allow", None))
    if not _action_ok(kind, action):
        problem(line, _action_message(kind, action))
    overrides, line = props.get("overrides", ("review", None))
    if line is not None and kind != "allow":
        problem(line, "overrides is a property of allow banks")
    elif overrides not in OVERRIDES:
        problem(line, f"overrides is review or block (the most severe classifier decision a PDQ match may override), not {overrides[:40]!r}")
    description = props.get("description", ("", None))[0][:MAX_FIELD_CHARS]
    return BankRows(name, path, kind, threshold, description, hashlib.sha256(raw).hexdigest()[:16], category, action, overrides)


def _action_ok(kind: str, action: str) -> bool:
    return action in DENY_ACTIONS if kind == "deny" else action == "allow" if kind == "allow" else True


def _action_message(kind: str, action: str) -> str:
    allowed = "block or review" if kind == "deny" else "allow"
    return f"a {kind} bank's action is {allowed}, not {action[:40]!r}"


def _row(record: list[str], line: int, header: list[str], rows: BankRows, problem, valid: set[str]) -> None:
    """Validate one row and add it to ``rows``; ``valid`` remembers category, action and added
    values already checked (a million rows repeat a handful of them)."""
    if len(record) > len(header):
        problem(line, f"{len(record)} fields, the header names {len(header)}")
        return
    if max(map(len, record)) > MAX_FIELD_CHARS:
        problem(line, f"a field is over {MAX_FIELD_CHARS} characters")
        return
    values = dict(zip(header, record))
    hash_type = values.get("hash_type", "").strip().lower()
    if hash_type not in HASH_TYPES:
        problem(line, f"hash_type is sha256 or pdq, not {hash_type[:40]!r}")
        return
    text = values.get("hash", "").strip()
    value = parse_hex(text)
    if value is None:
        problem(line, f"hash is 64 hexadecimal digits (256 bits), not {text[:80]!r}")
        return
    category = values.get("category", "").strip() or rows.default_category
    action = values.get("action", "").strip().lower() or rows.default_action
    added = values.get("added", "").strip()
    if category not in valid and not CATEGORY.match(category):
        problem(line, f"category must be lower-case letters, digits and underscores (at most 63), not {category[:40]!r}")
        return
    if ("action:" + action) not in valid and not _action_ok(rows.kind, action):
        problem(line, _action_message(rows.kind, action))
        return
    if added and ("added:" + added) not in valid and not _is_time(added):
        problem(line, f"added is an ISO 8601 date or time (2026-11-30, 2026-11-30T12:00:00Z), not {added[:40]!r}")
        return
    if len(valid) < 10_000:
        valid.update((category, "action:" + action, "added:" + added))
    rows.hash_types.append(hash_type)
    rows.hashes.append(value)
    rows.categories.append(category)
    rows.actions.append(action)
    rows.notes.append(values.get("note", "").strip())
    rows.added.append(added)
    rows.lines.append(line)


def _is_time(text: str) -> bool:
    try:
        (date if len(text) == 10 else datetime).fromisoformat(text)
        return True
    except ValueError:
        return False


def write_bank(
    path: Path,
    kind: str,
    rows: list[dict[str, str]],
    *,
    pdq_threshold: int | None = None,
    category: str | None = None,
    action: str | None = None,
    overrides: str | None = None,
    description: str = "",
) -> BankRows:
    """Write a new bank file: validated first, then renamed over ``path`` (atomic); returns it parsed.

    Raises:
        BankFileError: the rows do not make a valid bank (``path`` is left as it was).
    """
    buf = io.StringIO()
    buf.write("# moderator hash bank (format: docs/policies.md#hash-banks)\n")
    buf.write(f"# kind: {kind}\n")
    for key, value in (
        ("pdq_threshold", pdq_threshold),
        ("category", category),
        ("action", action),
        ("overrides", overrides),
        ("description", " ".join(description.split())),
    ):
        if value not in (None, ""):
            buf.write(f"# {key}: {value}\n")
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(map(_one_line, rows))
    return _replace_valid(path, buf.getvalue(), len(rows))


def append_rows(path: Path, rows: list[dict[str, str]], kind: str | None = None) -> BankRows:
    """Add rows to an existing, valid bank file (of ``kind``, if given); the result is validated
    before it replaces the file (atomic); returns it parsed.

    Raises:
        BankFileError: the file is not a valid bank, is of another kind, lacks a category or
            action column for rows that set one, or the rows are not valid (the file is left as
            it is). Notes and dates go where the header row has their columns.
    """
    existing = read_bank(path)
    if kind is not None and existing.kind != kind:
        raise BankFileError([f"{path}: a bank of kind {existing.kind}, not {kind}"])
    text = read_regular_file(path, MAX_BANK_BYTES, "bank").decode("utf-8-sig")
    # Without their column a row's category and action would silently become the bank's
    # defaults: refused. A note or a date is information only, and left out.
    dropped = sorted({k for r in rows for k, v in r.items() if v and k in DECIDING and k not in existing.columns})
    if dropped:
        raise BankFileError([f"{path}: its header row has no {' or '.join(dropped)} column for the new rows' values; add it to the header row first"])
    buf = io.StringIO()
    csv.DictWriter(buf, existing.columns, lineterminator="\n", extrasaction="ignore").writerows(map(_one_line, rows))
    return _replace_valid(path, (text if text.endswith("\n") else text + "\n") + buf.getvalue(), len(existing) + len(rows))


def _one_line(row: dict[str, str]) -> dict[str, str]:
    """``row`` with each run of whitespace in its note made one space: a row is one line, and a
    note may come from text anyone chose (a verdict's id is a message's key), where a line
    separator (U+2028, a form feed, ...) would otherwise split the row and fail the whole write."""
    note = row.get("note")
    return row if not note else row | {"note": " ".join(note.split())}


def _replace_valid(path: Path, text: str, expected: int | None = None) -> BankRows:
    """Write ``text`` beside ``path`` under the bank's own name (in a temporary directory, so the
    bank name and errors read right), parse it, and only then rename it over ``path``: if it is
    valid and holds ``expected`` rows (when given: a row written but not read back is an error,
    never a silent loss)."""
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    tmp = scratch / path.name
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            rows = read_bank(tmp)
        except BankFileError as exc:
            raise BankFileError([p.replace(str(tmp), str(path)) for p in exc.problems]) from None
        if expected is not None and len(rows) != expected:
            raise BankFileError([f"{path}: {expected} rows written, {len(rows)} read back; the bank was not changed"])
        os.replace(tmp, path)
        rows.path = path
        return rows
    finally:
        tmp.unlink(missing_ok=True)
        scratch.rmdir()
