"""``moderator hashes``: compute hashes, match files against banks, and build banks (from files,
from ThreatExchange/HMA exports, from reviewed verdicts). Bank format: docs/policies.md#hash-banks."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from moderator.app import decode_limits, frame_limits
from moderator.cli.scan import iter_files
from moderator.errors import BankError, MessageError, ModelError
from moderator.hashing import known as known_content
from moderator.hashing.bankfile import (
    CATEGORY,
    DENY_ACTIONS,
    HASH_TYPES,
    KINDS,
    MAX_PDQ_THRESHOLD,
    append_rows,
    bank_name,
    write_bank,
)
from moderator.hashing.banks import load_banks
from moderator.hashing.compute import TURN_WORDS, one_per_frame, parse_hex
from moderator.hashing.importers import FORMATS, import_hashes
from moderator.media.decode import silence_decoder_warnings
from moderator.media.preprocess import Preprocessor
from moderator.models.manifest import Preprocess, load_manifest
from moderator.processing import FAST_REDUCING_GAP, draft_side, hash_image
from moderator.settings import load_settings

MAX_VERDICT_LINE = 4 * 1024 * 1024  # a verdict is a few KB; a longer line is not one


def add_parser(sub) -> None:
    p = sub.add_parser("hashes", help="SHA-256 and PDQ hashes, hash banks")
    cmds = p.add_subparsers(dest="hashes_command", required=True, metavar="SUBCOMMAND")

    c = cmds.add_parser("compute", help="print the SHA-256 and the PDQ hash (per scored frame) of files")
    c.add_argument("paths", nargs="+", type=Path)
    c.add_argument("--config", type=Path, help="YAML settings file (media limits)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.set_defaults(handler=compute)

    m = cmds.add_parser("match", help="look files up in a bank directory, as the service does")
    m.add_argument("paths", nargs="+", type=Path)
    m.add_argument("--banks", type=Path, required=True, help="bank directory")
    m.add_argument("--config", type=Path, help="YAML settings file (media limits, hashing.pdq_quality_floor)")
    m.add_argument("--json", action="store_true", help="one JSON object per line")
    m.set_defaults(handler=match)

    i = cmds.add_parser("import", help="make a bank from a ThreatExchange/HMA CSV or a list of hashes")
    i.add_argument("source", type=Path)
    i.add_argument("--format", required=True, choices=FORMATS)
    i.add_argument("--out", type=Path, required=True, help="bank file to write (<bank>.csv; replaced atomically)")
    _bank_options(i)
    i.add_argument("--hash-type", choices=HASH_TYPES, help="lines format: the type of bare hashes")
    i.set_defaults(handler=import_cmd)

    a = cmds.add_parser("add", help="add the hashes of files to a bank (created if missing)")
    a.add_argument("bank", type=Path)
    a.add_argument("paths", nargs="+", type=Path)
    _bank_options(a)
    a.add_argument("--note", default="", help="note on every added row")
    a.add_argument("--hash-types", default="sha256,pdq", help="which hashes to add (default: sha256,pdq)")
    a.add_argument("--config", type=Path, help="YAML settings file (media limits)")
    a.set_defaults(handler=add)

    v = cmds.add_parser("from-verdicts", help="make a bank from verdict JSON lines (e.g. the verdicts reviewers confirmed)")
    v.add_argument("verdicts", type=Path, help="file of verdicts, one JSON object per line ('-' = stdin)")
    v.add_argument("--out", type=Path, required=True, help="bank file to write (<bank>.csv; replaced atomically)")
    _bank_options(v)
    v.add_argument("--decision", choices=("allow", "review", "block"), help="only verdicts with this decision")
    v.add_argument("--hash-types", default="sha256,pdq", help="which hashes to take (default: sha256,pdq)")
    v.set_defaults(handler=from_verdicts)


def _bank_options(p) -> None:
    p.add_argument("--kind", choices=KINDS, default="deny", help="deny (known bad) or allow (known good); default deny")
    p.add_argument("--category", help="category of the rows (deny banks; default: the bank's, else known_content)")
    p.add_argument("--action", choices=("block", "review", "allow"), help="action of the rows (deny: block or review; allow: allow)")
    p.add_argument("--pdq-threshold", type=int, help=f"the bank's PDQ match threshold (0..{MAX_PDQ_THRESHOLD}; default 31)")
    p.add_argument(
        "--overrides", choices=("review", "block"), help="allow banks: the most severe classifier decision a PDQ match may override (default review)"
    )


def _check_bank_options(args) -> None:
    if args.category is not None and not CATEGORY.match(args.category):
        raise BankError(f"--category: lower-case letters, digits and underscores, not {args.category!r}")
    if args.action is not None and (args.action in DENY_ACTIONS) != (args.kind == "deny"):
        raise BankError(f"--action {args.action} does not fit a {args.kind} bank (deny: block or review; allow: allow)")
    if args.pdq_threshold is not None and not 0 <= args.pdq_threshold <= MAX_PDQ_THRESHOLD:
        raise BankError(f"--pdq-threshold is 0..{MAX_PDQ_THRESHOLD}")
    if args.overrides is not None and args.kind != "allow":
        raise BankError("--overrides applies to allow banks")


def _out_path(path: Path) -> Path:
    if bank_name(path) is None:
        raise BankError(f"{path}: a bank file is named <bank>.csv")
    return path


def _hash_types(text: str) -> set[str]:
    types = {t.strip() for t in text.split(",") if t.strip()}
    if not types or not types <= set(HASH_TYPES):
        raise BankError(f"--hash-types: a comma-separated subset of {', '.join(HASH_TYPES)}, not {text!r}")
    return types


def _hash_files(args, paths: list[Path], failed: list[Path], out=None, as_json: bool = False, lookup: bool = False):
    """(path, hashes, frames) of each file that decodes; the others are reported on ``out`` (or
    stderr) and appended to ``failed``. ``lookup``: hashed to be looked up as the service does
    (with the frames' turns and trimmed borders, as ``hashing`` says)."""
    settings = load_settings(getattr(args, "config", None))
    silence_decoder_warnings()
    limits, frames = decode_limits(settings), frame_limits(settings)
    preprocess = _service_preprocess(settings)  # the model's manifest, read once
    draft, prepare = service_draft_side(settings, preprocess), service_preprocessor(settings, preprocess)
    for f in iter_files(paths):
        try:
            hs = settings.hashing
            hashes, frame_set = hash_image(f.read_bytes(), limits, frames, hs.pdq, draft, prepare, lookup and hs.pdq_turns, lookup and hs.pdq_trim_borders)
        except MessageError as exc:
            failed.append(f)
            _print_error(out or sys.stderr, f, exc, as_json)
            continue
        yield f, hashes, frame_set


def service_draft_side(settings, preprocess: Preprocess | None = None) -> int | None:
    """The decode scale the service uses for large JPEGs (it depends on the model's input size),
    so that ``compute`` and bank files give the hashes the service will compute."""
    if not (settings.media.fast_decode and settings.hashing.pdq):
        return None
    return draft_side((preprocess or _service_preprocess(settings)).image_size, True, True)


def service_preprocessor(settings, preprocess: Preprocess | None = None) -> Preprocessor:
    """The service's preprocessor: frames of an animation or video are selected by what the model
    sees, so the tool keeps (and hashes) the frames the service keeps."""
    m = settings.media
    return Preprocessor(
        preprocess or _service_preprocess(settings), reducing_gap=FAST_REDUCING_GAP if m.fast_decode else None, crops=m.crops, max_crops=m.max_crops
    )


def _service_preprocess(settings) -> Preprocess:
    try:
        return load_manifest(settings.encoder.model_dir, verify=False, graphs=False).preprocess
    except ModelError as exc:
        raise ModelError(
            f"{exc} (the model's input sets how large JPEGs are decoded before PDQ and which frames of an animation are the same: hashes match"
            " the service's only with its model)"
        ) from exc


def _pdq_records(hashes, frames) -> list[dict]:
    """A record per frame's hash (a frame scored as several squares has one hash, listed once)."""
    pdq = hashes.pdq
    rows = one_per_frame(pdq, frames.indices)
    return [{"hash": pdq[i].hex, "quality": pdq[i].quality, "frame": frames.indices[i] if frames.animated else None} for i in rows]


def compute(args: argparse.Namespace) -> int:
    out, failed = sys.stdout, list[Path]()
    for f, hashes, frames in _hash_files(args, args.paths, failed, out, args.json):
        pdq = _pdq_records(hashes, frames)
        if args.json:
            out.write(json.dumps({"path": str(f), "sha256": hashes.sha256.hex(), "pdq": pdq}) + "\n")
        else:
            out.write(f"{f}\n  sha256 {hashes.sha256.hex()}\n")
            for p in pdq:
                where = f" frame {p['frame']}" if p["frame"] is not None else ""
                out.write(f"  pdq    {p['hash']} quality {p['quality']}{where}\n")
    return 1 if failed else 0


def match(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    banks = load_banks(args.banks, settings.hashing.max_bank_entries)
    floor = settings.hashing.pdq_quality_floor
    out, failed = sys.stdout, list[Path]()
    for f, hashes, frames in _hash_files(args, args.paths, failed, out, args.json, lookup=True):
        found = known_content.combine(known_content.exact(banks, hashes.sha256), known_content.near(banks, hashes.pdq, floor, frames.overflow))
        if args.json:
            out.write(
                json.dumps(
                    {
                        "path": str(f),
                        "sha256": hashes.sha256.hex(),
                        "pdq": _pdq_records(hashes, frames),
                        "known": None
                        if found is None
                        else {
                            "kind": found.kind,
                            "reason": found.reason,
                            "decides": found.decides,
                            "matches": [
                                m.__dict__ | {"frame": frames.indices[m.frame] if m.frame is not None and frames.animated else None} for m in found.matches
                            ],
                        },
                    }
                )
                + "\n"
            )
        elif found is None:
            out.write(f"{f}: no match\n")
        else:
            out.write(f"{f}: {found.kind}: {found.reason}\n")
            for m in found.matches:
                turn = f" (the frame {TURN_WORDS[m.turn]})" if m.turn else ""
                out.write(f"  {m.bank}:{m.line} {m.hash_type} distance {m.distance}{turn} {m.category} {m.action}" + (f" ({m.note})" if m.note else "") + "\n")
    return 1 if failed else 0


def _print_error(out, path: Path, error: MessageError, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps({"path": str(path), "error": {"reason": error.reason, "message": str(error)}}) + "\n")
    else:
        out.write(f"{path}: error: {error.reason}: {error}\n")


def _write(path: Path, args, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` as a new bank, validated before it replaces anything."""
    for r in rows:
        r.setdefault("category", args.category or "")
        r.setdefault("action", args.action or "")
    written = write_bank(path, args.kind, rows, pdq_threshold=args.pdq_threshold, overrides=args.overrides)
    print(f"{path}: {args.kind} bank, {len(written)} hashes", file=sys.stderr)


def import_cmd(args: argparse.Namespace) -> int:
    _check_bank_options(args)
    out = _out_path(args.out)
    imported = import_hashes(args.source, args.format, args.kind, args.hash_type)
    _write(out, args, imported.rows)
    for why, n in sorted(imported.skipped.items()):
        print(f"  skipped {n} rows: {why}", file=sys.stderr)
    return 0


def add(args: argparse.Namespace) -> int:
    _check_bank_options(args)
    bank = _out_path(args.bank)
    types = _hash_types(args.hash_types)
    today = datetime.now(UTC).date().isoformat()
    rows: list[dict[str, str]] = []
    failed: list[Path] = []
    for f, hashes, frames in _hash_files(args, args.paths, failed):
        base = {"category": args.category or "", "action": args.action or "", "note": args.note or f.name, "added": today}
        if "sha256" in types:
            rows.append({"hash_type": "sha256", "hash": hashes.sha256.hex(), **base})
        if "pdq" in types:
            rows.extend({"hash_type": "pdq", "hash": r["hash"], **base} for r in _pdq_records(hashes, frames))
    if failed:
        raise BankError(f"{len(failed)} files could not be hashed; the bank was not changed")
    if bank.exists():
        written = append_rows(bank, rows, kind=args.kind)
        print(f"{bank}: {len(rows)} hashes added, {len(written)} in all", file=sys.stderr)
    else:
        _write(bank, args, rows)
    return 0


def from_verdicts(args: argparse.Namespace) -> int:
    _check_bank_options(args)
    out = _out_path(args.out)
    types = _hash_types(args.hash_types)
    stream = sys.stdin.buffer if str(args.verdicts) == "-" else open(args.verdicts, "rb")  # noqa: SIM115
    rows, seen = [], set()
    with stream:
        for line_no, raw in enumerate(iter(lambda: stream.readline(MAX_VERDICT_LINE + 1), b""), 1):
            if len(raw) > MAX_VERDICT_LINE:
                raise BankError(f"{args.verdicts}:{line_no}: over {MAX_VERDICT_LINE} bytes: not a verdict")
            if not raw.strip():
                continue
            try:
                verdict = json.loads(raw)
                found = _verdict_hashes(verdict, types)
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:  # RecursionError: JSON nested too deep
                raise BankError(f"{args.verdicts}:{line_no}: not a verdict with hashes (schema 2): {type(exc).__name__}: {exc}") from None
            if args.decision and verdict.get("decision") != args.decision:
                continue
            category = args.category or _verdict_category(verdict)
            note = f"verdict {str(verdict.get('id', ''))[:200]}"
            added = str(verdict.get("processed_at", ""))[:10]
            for hash_type, value in found:
                if (hash_type, value) not in seen:
                    seen.add((hash_type, value))
                    rows.append({"hash_type": hash_type, "hash": value, "category": category or "", "action": args.action or "", "note": note, "added": added})
    _write(out, args, rows)
    return 0


def _verdict_hashes(verdict: dict, types: set[str]) -> list[tuple[str, str]]:
    """The (type, hex) hashes a verdict carries, checked: a line that is not a verdict of schema 2
    is refused at its line, never written into a bank.

    Raises:
        KeyError, TypeError, AttributeError, ValueError: it is not such a verdict.
    """
    hashes = verdict["hashes"]
    found = []
    if "sha256" in types and hashes.get("sha256") is not None:
        found.append(("sha256", hashes["sha256"]))
    if "pdq" in types:
        found.extend(("pdq", p["hash"]) for p in hashes.get("pdq") or [])
    for hash_type, value in found:
        if not isinstance(value, str) or parse_hex(value) is None:
            raise ValueError(f"{hash_type} {str(value)[:80]!r} is not 64 hex digits")
    return [(t, v.lower()) for t, v in found]


def _verdict_category(verdict: dict) -> str | None:
    if verdict.get("known") and verdict["known"].get("match"):
        return verdict["known"]["match"].get("category")
    fired = [c for c in verdict.get("categories") or [] if c.get("fired")]
    return fired[0]["name"] if fired else None
