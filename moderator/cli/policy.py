"""``moderator policy lint|test|explain|eval|calibrate``: write, test and tune policies before they go live."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from moderator.errors import PolicyError, StartupError
from moderator.policy import compile_policy, explain, load_policy
from moderator.policy.evaluate import draw_pr_curves, report, score_labelled, suggest
from moderator.policy.loader import PolicyFileError
from moderator.policy.rewrite import with_thresholds
from moderator.policy.score import ACTIONS, score_frames
from moderator.processing import Processor


def add_parser(sub) -> None:
    p = sub.add_parser("policy", help="lint, test, explain, evaluate and calibrate policy files")
    ps = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    p.set_defaults(handler=run)

    def model_arg(q):
        q.add_argument("--model", type=Path, help="model directory (default: MODERATOR_ENCODER__MODEL_DIR or models/default)")

    lint = ps.add_parser("lint", help="validate files; errors as FILE:LINE:COL: message; exit 1 on any")
    lint.add_argument("files", nargs="+", type=Path)
    lint.add_argument("--model", type=Path, help="also compile against this model (prompts encode, model matches)")
    lint.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text: FILE:LINE:COL: message on stderr; json: one object on stdout; github: workflow annotations",
    )

    test = ps.add_parser("test", help="run the policy's inline tests")
    test.add_argument("file", type=Path)
    test.add_argument("--junit", type=Path, help="also write the results as JUnit XML (for CI)")
    model_arg(test)

    ex = ps.add_parser("explain", help="per category and prompt: score, threshold, margin for one image")
    ex.add_argument("file", type=Path)
    ex.add_argument("image", type=Path)
    ex.add_argument("--json", action="store_true")
    model_arg(ex)

    ev = ps.add_parser("eval", help="precision, recall, F1 and confusion per category on labelled images")
    ev.add_argument("file", type=Path)
    ev.add_argument("--labels", type=Path, required=True, help="CSV with path and categories columns (see examples/labels.csv)")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--pr-curve", type=Path, help="write precision-recall curves to this PNG (default: <labels dir>/pr-curve.png)")
    model_arg(ev)

    cal = ps.add_parser("calibrate", help="suggest thresholds for a target precision; write them only when asked")
    cal.add_argument("file", type=Path)
    cal.add_argument("--labels", type=Path, required=True)
    cal.add_argument("--target-precision", type=float, default=0.95, help="review threshold: lowest score reaching this precision")
    cal.add_argument("--block-precision", type=float, default=0.99, help="block threshold: lowest score reaching this precision")
    out = cal.add_mutually_exclusive_group()
    out.add_argument("--out", type=Path, help="write a new policy file with the suggested thresholds")
    out.add_argument("--patch", action="store_true", help="print a unified diff instead")
    model_arg(cal)


def run(args: argparse.Namespace) -> int:
    return {"lint": _lint, "test": _test, "explain": _explain, "eval": _eval, "calibrate": _calibrate}[args.policy_command](args)


def _encoder(model: Path | None):
    from moderator.encoders import create_encoder
    from moderator.settings import load_settings

    settings = load_settings()
    es = settings.encoder if model is None else settings.encoder.model_copy(update={"model_dir": model})
    return create_encoder(es), settings


def _compiled(path: Path, model: Path | None):
    encoder, settings = _encoder(model)
    from moderator.app import decode_limits, frame_limits

    compiled = compile_policy(load_policy(path), encoder)
    # As the service decodes, selects and crops: what is evaluated is what it scores.
    m = settings.media
    processor = Processor(
        encoder, compiled, decode_limits(settings), frame_limits=frame_limits(settings), fast_decode=m.fast_decode, crops=m.crops, max_crops=m.max_crops
    )
    return processor, compiled


def _lint(args: argparse.Namespace) -> int:
    """Every problem of every file, sorted by line, in the format asked for."""
    encoder = _encoder(args.model)[0] if args.model else None
    results: list[dict[str, Any]] = []
    for f in args.files:
        problems: list[dict] = []
        loaded = None
        try:
            loaded = load_policy(f)
            if encoder is not None:
                compile_policy(loaded, encoder)
        except PolicyFileError as exc:
            problems = [{"line": p.line, "column": p.column, "message": p.message} for p in exc.problems]
        except PolicyError as exc:
            problems = [{"line": None, "column": None, "message": str(exc).removeprefix(f"{f}: ")}]
        results.append(
            {
                "file": str(f),
                "ok": not problems,
                "problems": problems,
                **({"categories": len(loaded.policy.categories), "version": loaded.digest} if loaded and not problems else {}),
            }
        )
    if args.format == "json":
        print(json.dumps({"files": results}))
    for r in results:
        for p in r["problems"]:
            if args.format == "github":
                where = ",".join(f"{k}={v}" for k, v in (("file", r["file"]), ("line", p["line"]), ("col", p["column"])) if v is not None)
                message = p["message"].replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
                print(f"::error {where}::{message}")
            elif args.format == "text":
                loc = ":".join(str(x) for x in (r["file"], p["line"], p["column"]) if x is not None)
                print(f"{loc}: {p['message']}", file=sys.stderr)
        if r["ok"] and args.format == "text":
            print(f"{r['file']}: ok ({r['categories']} categories, version {r['version']})")
    return 0 if all(r["ok"] for r in results) else 1


def _prepare(processor: Processor, image: Path):
    """The squares scored of an image, ``uint8 [R, S, S, 3]``, whether it overflowed, and the
    frame of each square (:func:`~moderator.policy.score.score_frames`'s groups)."""
    try:
        prepared = processor.prepare(image.read_bytes())
    except OSError as exc:
        raise StartupError(f"{image}: {exc.strerror or exc}") from exc
    if prepared.error is not None:
        raise StartupError(f"{image}: {prepared.error.reason}: {prepared.error}")
    frames = prepared.frames
    return prepared.pixels, bool(frames and frames.overflow), frames.indices if frames is not None else None


def _test(args: argparse.Namespace) -> int:
    processor, compiled = _compiled(args.file, args.model)
    if not compiled.tests:
        print(f"{args.file}: the policy has no tests", file=sys.stderr)
        return 1
    failures = 0
    cases = []
    for i, t in enumerate(compiled.tests):
        image = args.file.parent / t.image
        pixels, overflow, group = _prepare(processor, image)
        d = score_frames(processor.encoder.encode_images(pixels), compiled, [len(pixels)], [overflow], [group])[0]
        fired = sorted(c.name for c in d.fired)
        problems = []
        if t.decision is not None and d.decision != t.decision:
            problems.append(f"decision {d.decision}, expected {t.decision}")
        if t.categories is not None and fired != sorted(t.categories):
            problems.append(f"fired {fired}, expected {sorted(t.categories)}")
        failures += bool(problems)
        cases.append((f"tests.{i} {t.image}", "; ".join(problems), "; ".join(d.reasons) or "nothing fired"))
        status = "FAIL" if problems else "PASS"
        print(f"{status} tests.{i} {t.image}: {'; '.join(problems) or d.decision} ({'; '.join(d.reasons) or 'nothing fired'})")
    print(f"{len(compiled.tests) - failures} passed, {failures} failed")
    if args.junit:
        _write_junit(args.junit, str(args.file), cases)
    return 1 if failures else 0


def _write_valid(path: Path, text: str) -> None:
    """Write a policy only if it loads: validated from a temporary file beside it, then renamed
    over it (atomic); an invalid result leaves ``path`` as it was.

    Raises:
        PolicyFileError: the text is not a valid policy.
    """
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        load_policy(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_junit(path: Path, suite: str, cases: list[tuple[str, str, str]]) -> None:
    """JUnit XML, as CI systems read it: one testcase per inline test, a failure where it failed."""
    from xml.etree import ElementTree as ET

    root = ET.Element("testsuite", name=f"policy {suite}", tests=str(len(cases)), failures=str(sum(bool(c[1]) for c in cases)))
    for name, failure, detail in cases:
        case = ET.SubElement(root, "testcase", classname=suite, name=name)
        if failure:
            ET.SubElement(case, "failure", message=failure).text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _explain(args: argparse.Namespace) -> int:
    processor, compiled = _compiled(args.file, args.model)
    pixels, overflow, group = _prepare(processor, args.image)
    frames = processor.encoder.encode_images(pixels)
    decision = score_frames(frames, compiled, [len(frames)], [overflow], [group])[0]
    # An animation is explained at the frame that gave the highest-scoring category its score.
    top = max(decision.categories, key=lambda c: (ACTIONS.index(c.action), c.margin))
    x = frames[top.frame]
    rows = explain(x, compiled)
    if args.json:
        print(
            json.dumps(
                {
                    "decision": decision.decision,
                    "reasons": decision.reasons,
                    "categories": [
                        {
                            "name": r.name,
                            "score": r.score,
                            "review": r.review,
                            "block": r.block,
                            "action": r.action,
                            "margin": r.margin,
                            "scoring": e.scoring,
                            "prompts": [{"prompt": p.prompt, "cosine": p.cosine, "contrast": p.contrast} for p in prompts],
                        }
                        for (r, prompts), e in zip(rows, compiled.entries)
                    ],
                }
            )
        )
        return 0
    print(f"{args.image}: {decision.decision}" + (f" ({'; '.join(decision.reasons)})" if decision.reasons else ""))
    for (r, prompts), e in zip(rows, compiled.entries):
        print(
            f"\n{r.name} [{e.scoring}] score {r.score:.4f}  review {r.review:g}  block {r.block:g}  -> {r.action} "
            f"(margin {r.margin:+.4f} to the {'review' if r.action == 'allow' else r.action} threshold)"
        )
        for p in prompts:
            print(f"    {p.cosine:+.4f}  {'(contrast) ' if p.contrast else ''}{p.prompt}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    processor, compiled = _compiled(args.file, args.model)
    data = score_labelled(args.labels, processor, compiled)
    result = report(data, compiled)
    curve = args.pr_curve or args.labels.parent / "pr-curve.png"
    draw_pr_curves(data, compiled, curve)
    result["pr_curve"] = str(curve)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['images']} images ({len(result['skipped'])} skipped), policy {compiled.name}@{compiled.version}")
    print(f"{'CATEGORY':<16} {'LEVEL':<7} {'THRESH':>8} {'TP':>4} {'FP':>4} {'FN':>4} {'TN':>5} {'PREC':>6} {'RECALL':>6} {'F1':>6}")
    for name, cat in result["categories"].items():
        for level in ("fires", "blocks"):
            c = cat[level]
            print(
                f"{name:<16} {level:<7} {c['threshold']:>8.4f} {c['tp']:>4} {c['fp']:>4} {c['fn']:>4} {c['tn']:>5} "
                f"{c['precision']:>6.3f} {c['recall']:>6.3f} {c['f1']:>6.3f}"
            )
    for s in result["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    print(f"precision-recall curves: {curve}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    processor, compiled = _compiled(args.file, args.model)
    data = score_labelled(args.labels, processor, compiled)
    changes: dict[str, dict[str, float]] = {}
    table = sys.stderr if args.patch else sys.stdout  # with --patch, stdout is only the diff (pipe it to `patch`)
    print(f"{'CATEGORY':<16} {'REVIEW':>15} {'BLOCK':>15}  at review: PRECISION RECALL", file=table)
    for j, name in enumerate(compiled.categories):
        review = suggest(data.scores[:, j], data.truth[:, j], args.target_precision)
        block = suggest(data.scores[:, j], data.truth[:, j], args.block_precision, edge=True)
        if review is None:
            print(f"{name:<16} no threshold reaches precision {args.target_precision} on these labels; unchanged", file=table)
            continue
        r = review[0]
        if block is not None:
            b = max(block[0], r)
        else:  # no threshold reaches the block precision: keep the block threshold, above the review band
            b = max(float(compiled.block[j]), r)
            print(f"{name:<16} no threshold reaches block precision {args.block_precision}; block kept at {b:g}", file=table)
        changes[name] = {"review": r, "block": b}
        print(
            f"{name:<16} {float(compiled.review[j]):>6.4f} -> {r:<6g} {float(compiled.block[j]):>6.4f} -> {b:<6g}  {review[1]:>9.3f} {review[2]:>6.3f}",
            file=table,
        )
    old = args.file.read_text()
    new = with_thresholds(old, changes)
    if args.patch:
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(args.file), str(args.file) + " (calibrated)"))
    elif args.out:
        _write_valid(args.out, new)
        print(f"wrote {args.out}")
    else:
        print("nothing written: use --out NEW.yaml or --patch")
    return 0
