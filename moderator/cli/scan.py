"""``moderator scan``: the service's decode -> encode -> score path over local files, no broker."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from moderator.app import build_processor
from moderator.media.decode import silence_decoder_warnings
from moderator.errors import StartupError
from moderator.processing import Prepared
from moderator.settings import Settings, load_settings


def add_parser(sub) -> None:
    p = sub.add_parser("scan", help="score local image files and folders, no broker")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--config", type=Path, help="YAML settings file (model, policy, limits)")
    p.add_argument("--model", type=Path, help="model directory (overrides settings)")
    p.add_argument("--policy", type=Path, help="policy file (overrides settings)")
    p.add_argument("--json", action="store_true", help="one JSON result per line instead of a table")
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
    updates = {}
    if args.model is not None:
        updates["encoder"] = settings.encoder.model_copy(update={"model_dir": args.model})
    if args.policy is not None:
        updates["policy"] = settings.policy.model_copy(update={"path": args.policy})
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
    with ThreadPoolExecutor(settings.media.decode_workers) as pool:
        for start in range(0, len(files), size):
            chunk = files[start : start + size]
            prepared: list[Prepared] = list(pool.map(lambda f: processor.prepare(f.read_bytes()), chunk))
            good = [(f, p) for f, p in zip(chunk, prepared) if p.error is None]
            overflow = [bool(p.frames and p.frames.overflow) for _, p in good]
            results = processor.score_batch([p.pixels for _, p in good], overflow) if good else None
            decisions = dict(zip([f for f, _ in good], results.decisions)) if results else {}
            for f, p in zip(chunk, prepared):
                if p.error is not None:
                    _print_error(out, f, p, args.json)
                else:
                    _print_result(out, f, decisions[f], info, results.policy, args.json, p.frames)
    return 0


def _print_error(out, path: Path, p: Prepared, as_json: bool) -> None:
    err = p.error
    if as_json:
        out.write(json.dumps({"path": str(path), "error": {"class": type(err).__name__, "reason": err.reason, "message": str(err)}}) + "\n")
    else:
        out.write(f"{str(path)[-48:]:<48} {'error':<8} {err.reason:<20} {'':>7}  {err}\n")


def _print_result(out, path: Path, decision, info, policy, as_json: bool, frames=None) -> None:
    animated = frames is not None and frames.animated
    if as_json:
        out.write(json.dumps({
            "path": str(path),
            "decision": decision.decision,
            "reasons": decision.reasons,
            "categories": [
                {"name": c.name, "score": round(c.score, 6), "review_threshold": c.review, "block_threshold": c.block,
                 "action": c.action, "fired": c.fired,
                 **({"frame": frames.indices[c.frame], "frame_timestamp_ms": frames.timestamps_ms[c.frame]} if animated else {})}
                for c in decision.categories
            ],
            "frames": {"total": frames.total, "distinct": frames.distinct, "scored": len(frames.indices),
                       "overflow": decision.overflow} if animated else None,
            "model": {"name": info.model_name, "checksum": info.model_checksum, "precision": info.precision, "backend": info.backend},
            "policy": {"name": policy.name, "version": policy.version},
        }) + "\n")
        return
    top = max(decision.categories, key=lambda c: c.score)
    detail = "; ".join(decision.reasons)
    if animated:
        detail = f"frame {frames.indices[top.frame]} of {frames.total}" + (f"; {detail}" if detail else "")
    out.write(f"{str(path)[-48:]:<48} {decision.decision:<8} {top.name:<20} {top.score:>7.3f}  {detail}\n")
