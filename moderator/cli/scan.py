"""``moderator scan``: the service's decode -> encode -> score path over local files, no broker."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from moderator.app import build_processor
from moderator.errors import StartupError
from moderator.media.decode import silence_decoder_warnings
from moderator.policy.score import ACTIONS
from moderator.processing import Outcome, Prepared
from moderator.settings import Settings, load_settings
from moderator.wire.input import ImageRequest, Source
from moderator.wire.verdict import Timings, build_verdict


def add_parser(sub) -> None:
    p = sub.add_parser("scan", help="score local image files and folders, no broker")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--config", type=Path, help="YAML settings file (model, policy, limits)")
    p.add_argument("--model", type=Path, help="model directory (overrides settings)")
    p.add_argument("--policy", type=Path, help="policy file (overrides settings)")
    p.add_argument("--banks", type=Path, help="directory of hash bank files (overrides hashing.banks_dir)")
    p.add_argument("--json", action="store_true", help="one JSON result per line instead of a table")
    p.add_argument("--fail-on", choices=("review", "block"), help="exit 1 when any image's decision is this or more severe (CI gating); errors exit 1 too")
    p.set_defaults(handler=scan)


def iter_files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            yield p
        else:
            raise StartupError(f"{p}: no such file or directory")


def scan_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    updates: dict[str, Any] = {}
    if args.model is not None:
        updates["encoder"] = settings.encoder.model_copy(update={"model_dir": args.model})
    if args.policy is not None:
        updates["policy"] = settings.policy.model_copy(update={"path": args.policy})
    if getattr(args, "banks", None) is not None:
        updates["hashing"] = settings.hashing.model_copy(update={"banks_dir": args.banks})
    return settings.model_copy(update=updates)


def scan(args: argparse.Namespace) -> int:
    settings = scan_settings(args)
    files = list(iter_files(args.paths))
    silence_decoder_warnings()
    processor, _ = build_processor(settings)
    info = processor.encoder.info()
    out = sys.stdout
    if not args.json:
        out.write(f"model {info.model_name} ({info.model_checksum}, {info.precision}), policy {processor.policy.name}@{processor.policy.version}\n")
        out.write(f"{'PATH':<48} {'DECISION':<8} {'TOP CATEGORY':<20} {'SCORE':>7}  DETAIL\n")
    size = settings.batch.micro_batch_size
    failed = False
    with ThreadPoolExecutor(settings.media.decode_workers) as pool:
        for start in range(0, len(files), size):
            chunk = files[start : start + size]
            prepared: list[Prepared] = list(pool.map(lambda f: processor.prepare(f.read_bytes()), chunk))
            outcomes: dict[int, Outcome] = {}
            todo = []
            for i, p in enumerate(prepared):
                if p.error is None:
                    decided = processor.decided(p)
                    if decided is not None:
                        outcomes[i] = decided
                    else:
                        todo.append(i)
            if todo:
                result = processor.score_prepared([prepared[i] for i in todo])  # to do = needs encoding = has pixels
                outcomes.update(zip(todo, processor.outcomes([prepared[i] for i in todo], result)))
            for i, (f, p) in enumerate(zip(chunk, prepared)):
                if p.error is not None:
                    _print_error(out, f, p, args.json)
                    failed = failed or args.fail_on is not None
                else:
                    _print_result(out, f, outcomes[i], info, args.json, p.cached is not None)
                    if args.fail_on is not None and ACTIONS.index(outcomes[i].decision) >= ACTIONS.index(args.fail_on):
                        failed = True
    return 1 if failed else 0


def _print_error(out, path: Path, p: Prepared, as_json: bool) -> None:
    err = p.error
    assert err is not None
    if as_json:
        out.write(json.dumps({"path": str(path), "error": {"class": type(err).__name__, "reason": err.reason, "message": str(err)}}) + "\n")
    else:
        out.write(f"{str(path)[-48:]:<48} {'error':<8} {err.reason:<20} {'':>7}  {err}\n")


def _print_result(out, path: Path, outcome: Outcome, info, as_json: bool, cached: bool) -> None:
    frames = outcome.frames
    shown = frames if frames is not None and frames.animated else None
    decision = outcome.classifier
    if as_json:
        request = ImageRequest(str(path), Source("scan", 0, 0, None), b"", None, "raw")
        verdict = build_verdict(request, outcome, info, Timings(decode_ms=0, queue_ms=0, encode_ms=0, score_ms=0, batch_size=0), cached)
        record = verdict.model_dump(include={"decision", "reasons", "categories", "frames", "model", "policy", "hashes", "known", "cached"})
        record["policy"] = {"name": verdict.policy.name, "version": verdict.policy.version}
        out.write(json.dumps({"path": str(path), **record}) + "\n")
        return
    detail = "; ".join(outcome.reasons)
    if decision is None or not decision.categories:
        out.write(f"{str(path)[-48:]:<48} {outcome.decision:<8} {'(known content)':<20} {'':>7}  {detail}\n")
        return
    top = max(decision.categories, key=lambda c: c.score)
    if shown is not None:
        detail = f"frame {shown.indices[top.frame]} of {shown.total}" + (f"; {detail}" if detail else "")
    out.write(f"{str(path)[-48:]:<48} {outcome.decision:<8} {top.name:<20} {top.score:>7.3f}  {detail}\n")
