"""Hash lists in the formats people already have, turned into bank rows.

- ``te-csv``: the CSV that ThreatExchange's ``threatexchange dataset -P --csv`` prints (columns
  ``collab,signal_type,signal_str,category,tags``), and any CSV with ``signal_type`` and
  ``signal_str`` columns (HMA exports). Rows of other signal types (``md5``, ``url``, …) are
  skipped and counted; rows whose category says the hash was judged not harmful
  (``FALSE_POSITIVE``, ``DISPUTED``, ``BENIGN``) are skipped for deny banks and counted.
- ``lines``: one hash a line, alone (give ``--hash-type``) or after its type (``pdq <hex>``, as
  ``threatexchange dataset -P -S`` prints); text after the hash is kept as the note; ``#``
  lines and blank lines are skipped.

Every row is validated as a bank row would be; the first bad line stops the import with its
line number (an import is all or nothing).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from moderator.errors import BankError
from moderator.files import FileRefused, read_regular_file
from moderator.hashing.bankfile import HASH_TYPES, MAX_BANK_BYTES, MAX_FIELD_CHARS
from moderator.hashing.compute import parse_hex

FORMATS = ("te-csv", "lines")
NOT_HARMFUL = {"false_positive", "disputed", "benign", "non_harmful"}
TE_TYPES = {"pdq": "pdq", "sha256": "sha256", "photo_sha256": "sha256"}


@dataclass
class Imported:
    rows: list[dict[str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # why -> rows

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def import_hashes(path: Path, fmt: str, kind: str, hash_type: str | None = None) -> Imported:
    """Rows (``hash_type``, ``hash``, ``note``) for a bank of ``kind`` from ``path`` in ``fmt``.

    Raises:
        BankError: unreadable file, unknown format, or a bad line (with its number).
    """
    try:
        text = read_regular_file(path, MAX_BANK_BYTES, "hash list").decode("utf-8-sig")
    except (FileRefused, UnicodeDecodeError) as exc:
        raise BankError(f"{path}: {exc}") from exc
    if fmt == "te-csv":
        return _te_csv(path, text, kind)
    if fmt == "lines":
        return _lines(path, text, hash_type)
    raise BankError(f"unknown import format {fmt!r}; one of {', '.join(FORMATS)}")


def _te_csv(path: Path, text: str, kind: str) -> Imported:
    out = Imported()
    reader = csv.DictReader(text.splitlines(), strict=True)
    try:
        names = {n.strip().lower() for n in reader.fieldnames or []}
        if not {"signal_type", "signal_str"} <= names:
            raise BankError(f"{path}:1: a ThreatExchange CSV has signal_type and signal_str columns; found {sorted(names)[:8]}")
        for record in reader:
            _te_row(path, reader.line_num, record, kind, out)
    except csv.Error as exc:  # a stray quote, a field over csv's 128 KiB limit
        # line_num counts the lines of the records read whole: the bad one starts after them
        raise BankError(f"{path}:{reader.line_num + 1}: not CSV: {exc}") from None
    return out


def _te_row(path: Path, line: int, record: dict, kind: str, out: Imported) -> None:
    row = {k.strip().lower(): v.strip() if isinstance(v, str) else "" for k, v in record.items() if isinstance(k, str)}
    hash_type = TE_TYPES.get(row.get("signal_type", "").lower())
    if hash_type is None:
        out.skip(f"signal type {row.get('signal_type', '')[:40]!r}")
        return
    if kind == "deny" and row.get("category", "").lower() in NOT_HARMFUL:
        out.skip(f"category {row['category'][:40]}")
        return
    value = parse_hex(row.get("signal_str", ""))
    if value is None:
        raise BankError(f"{path}:{line}: signal_str is not a 256-bit hash in hex: {row.get('signal_str', '')[:80]!r}")
    note = " ".join(p for p in (row.get("collab", ""), row.get("tags", "")) if p)[:MAX_FIELD_CHARS]
    out.rows.append({"hash_type": hash_type, "hash": value.hex(), "note": note})


def _lines(path: Path, text: str, hash_type: str | None) -> Imported:
    out = Imported()
    for line, raw in enumerate(text.splitlines(), 1):
        parts = raw.strip().split(None, 2)
        if not parts or parts[0].startswith("#"):
            continue
        kind: str | None
        if parts[0].lower() in HASH_TYPES:
            kind, rest = parts[0].lower(), parts[1:]
        else:
            kind, rest = hash_type, parts
        if kind is None:
            raise BankError(f"{path}:{line}: a bare hash: say which kind with --hash-type sha256|pdq, or write the type before it (pdq <hex>)")
        if not rest or parse_hex(rest[0]) is None:
            raise BankError(f"{path}:{line}: not a 256-bit hash in hex: {raw.strip()[:80]!r}")
        note = " ".join(rest[1:])[:MAX_FIELD_CHARS]
        out.rows.append({"hash_type": kind, "hash": rest[0].lower(), "note": note})
    return out
