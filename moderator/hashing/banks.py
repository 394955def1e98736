"""The banks in service: every bank file of a directory, indexed for lookup by SHA-256 (a dict)
and by PDQ (:class:`~moderator.hashing.index.PdqIndex`, one over all banks, each hash checked
against its own bank's threshold).

A :class:`Banks` is immutable once built: a reload builds a new one beside it and the pipeline
swaps one reference, so a lookup never sees half a reload.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moderator.errors import BankError
from moderator.hashing.bankfile import BankFileError, BankRows, bank_name, read_bank
from moderator.hashing.compute import PDQ_BYTES, TURNS, PdqHash
from moderator.hashing.index import PdqIndex

log = logging.getLogger(__name__)

MAX_BANKS = 64  # bank names are metric labels
MAX_MATCHES = 8  # per hash, reported in a verdict (nearest first)


@dataclass(frozen=True)
class BankInfo:
    name: str
    kind: str
    pdq_threshold: int
    description: str
    digest: str
    overrides: str  # allow banks: the most severe classifier decision a PDQ match may override
    sha256: int  # entries of each hash type
    pdq: int


@dataclass(frozen=True)
class Match:
    """One bank entry matching one hash of a message."""

    bank: str
    kind: str  # deny | allow
    hash_type: str  # sha256 | pdq
    hash: str  # the bank entry's hash, hex
    distance: int  # Hamming distance (0 for sha256)
    category: str
    action: str  # block | review (deny banks), allow (allow banks)
    note: str
    added: str
    line: int  # the entry's line in its bank file
    frame: int | None = None  # PDQ: position of the matching frame among the message's scored frames
    overrides: str = "block"  # allow matches: the most severe classifier decision this match may override
    turn: str | None = None  # PDQ deny matches: how the frame was turned or mirrored to match (compute.TURNS), None as it is
    trimmed: bool = False  # PDQ deny matches: the frame matched with its uniform border cut off


class Banks:
    """All banks of one directory (or none), ready for lookups from any thread."""

    def __init__(self, files: list[BankRows], directory: Path | None = None) -> None:
        self.directory = directory
        self.banks = tuple(
            BankInfo(f.name, f.kind, f.pdq_threshold, f.description, f.digest, f.overrides, f.hash_types.count("sha256"), f.hash_types.count("pdq"))
            for f in files
        )
        self.version = hashlib.sha256("".join(f"{f.name}:{f.digest};" for f in files).encode()).hexdigest()[:16]
        self._strings: dict[str, int] = {}
        self._table: list[str] = []
        sha: dict[bytes, list[tuple]] = {}
        pdq_hashes: list[bytes] = []
        pdq_meta: list[np.ndarray] = []
        for b, f in enumerate(files):
            meta = np.stack(
                [
                    np.full(len(f), b, np.int64),
                    self._codes(f.categories),
                    self._codes(f.actions),
                    self._codes(f.notes),
                    self._codes(f.added),
                    np.asarray(f.lines, np.int64),
                ],
                axis=1,
            ).reshape(-1, 6)
            is_pdq = np.fromiter((t == "pdq" for t in f.hash_types), bool, len(f))
            pdq_meta.append(meta[is_pdq])
            pdq_hashes.extend(h for h, p in zip(f.hashes, is_pdq) if p)
            for i in np.flatnonzero(~is_pdq):
                sha.setdefault(f.hashes[i], []).append(tuple(meta[i]))
        self._sha = sha
        self._pdq_meta = np.concatenate(pdq_meta) if pdq_meta else np.empty((0, 6), np.int64)
        self._pdq_hashes = np.frombuffer(b"".join(pdq_hashes), dtype=np.uint8).reshape(-1, PDQ_BYTES)
        self._pdq = PdqIndex(self._pdq_hashes)
        self._thresholds = np.array([f.pdq_threshold for f in files] or [0], dtype=np.int64)
        self._is_deny = np.array([f.kind == "deny" for f in files] or [False])
        self._radius = int(max((f.pdq_threshold for f in files if "pdq" in f.hash_types), default=0))
        self.deny_pdq_entries = sum(b.pdq for b in self.banks if b.kind == "deny")

    def _codes(self, texts: list[str]) -> np.ndarray:
        return np.fromiter((self._code(t) for t in texts), np.int64, len(texts))

    def _code(self, text: str) -> int:
        code = self._strings.get(text)
        if code is None:
            code = self._strings[text] = len(self._table)
            self._table.append(text)
        return code

    @property
    def entries(self) -> int:
        return sum(b.sha256 + b.pdq for b in self.banks)

    @property
    def pdq_entries(self) -> int:
        return len(self._pdq_hashes)

    def index_bytes(self) -> int:
        return self._pdq.nbytes + self._pdq_meta.nbytes

    def match_sha256(self, digest: bytes) -> list[Match]:
        return [self._match(meta, "sha256", digest.hex(), 0) for meta in self._sha.get(digest, ())][:MAX_MATCHES]

    def match_pdq(self, pdq: PdqHash, frame: int | None = None) -> list[Match]:
        """Bank PDQ hashes within their bank's threshold of ``pdq``, nearest first (the caller
        applies the quality floor)."""
        if not len(self._pdq_hashes):
            return []
        return self._matches(*self._pdq.search(pdq.bits, self._radius), frame)

    def match_turns(self, pdq: PdqHash, frame: int | None = None) -> list[Match]:
        """Deny bank PDQ hashes within their bank's threshold of one of ``pdq``'s turns (the frame
        mirrored, flipped or turned: compute.TURNS), nearest first for each turn; allow banks are
        never matched turned."""
        if not self.deny_pdq_entries or not pdq.turns:
            return []
        found = self._pdq.search_many(pdq.turns, self._radius)
        return [m for turn, (rows, distances) in zip(TURNS, found) for m in self._matches(rows, distances, frame, turn)]

    def _matches(self, rows: np.ndarray, distances: np.ndarray, frame: int | None, turn: str | None = None) -> list[Match]:
        if not len(rows):
            return []
        meta = self._pdq_meta[rows]
        keep = distances <= self._thresholds[meta[:, 0]]
        if turn is not None:
            keep &= self._is_deny[meta[:, 0]]
        return [
            self._match(m, "pdq", self._pdq_hashes[r].tobytes().hex(), int(d), frame, turn)
            for r, m, d in zip(rows[keep][:MAX_MATCHES], meta[keep][:MAX_MATCHES], distances[keep][:MAX_MATCHES])
        ]

    def _match(self, meta, hash_type: str, hex_hash: str, distance: int, frame: int | None = None, turn: str | None = None) -> Match:
        bank, category, action, note, added, line = (int(v) for v in meta)
        info = self.banks[bank]
        t = self._table
        overrides = "block" if hash_type == "sha256" or info.kind == "deny" else info.overrides
        return Match(info.name, info.kind, hash_type, hex_hash, distance, t[category], t[action], t[note], t[added], line, frame, overrides, turn)


def load_banks(directory: Path, max_entries: int) -> Banks:
    """Every ``*.csv`` bank file of ``directory`` (hidden files and other names are not banks).

    Raises:
        BankError: the directory cannot be listed, has too many banks or entries, or a file has
            problems (all of them listed, ``FILE:LINE: message``).
    """
    directory = Path(directory)
    try:
        paths = sorted(p for p in directory.iterdir() if bank_name(p) is not None)
    except OSError as exc:
        raise BankError(f"hash banks: cannot list {directory}: {exc.strerror or exc}") from exc
    if len(paths) > MAX_BANKS:
        raise BankError(f"hash banks: {directory} has {len(paths)} bank files, over the limit of {MAX_BANKS}")
    files, problems, total = [], [], 0
    for path in paths:
        try:
            rows = read_bank(path)
        except BankFileError as exc:
            problems.extend(exc.problems)
            continue
        total += len(rows)
        if total > max_entries:
            raise BankError(f"hash banks: more than {max_entries} entries in {directory} (hashing.max_bank_entries)")
        files.append(rows)
    if problems:
        raise BankFileError(problems)
    return Banks(files, directory)
