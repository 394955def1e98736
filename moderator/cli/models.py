"""``moderator models``: build, export, inspect, verify and convert model directories."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moderator.errors import SettingsError


def add_parser(sub) -> None:
    models = sub.add_parser("models", help="model directories")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    br = msub.add_parser("build-random", help="write a random-weight CLIP model directory (needs the export extra)")
    br.add_argument("out", type=Path)
    br.add_argument("--architecture", default="tiny")
    br.add_argument("--seed", type=int, default=0)
    br.add_argument("--name")
    msub.add_parser("architectures", help="list the architecture configs")
    ex = msub.add_parser("export", help="export a real checkpoint (open_clip or Hugging Face) to a model directory (needs the export extra)")
    src = ex.add_mutually_exclusive_group(required=True)
    src.add_argument("--open-clip", metavar="ARCH", help="open_clip architecture name, e.g. ViT-B-32, ViT-H-14, EVA02-B-16, MobileCLIP-S1")
    src.add_argument("--hf", metavar="DIR", type=Path, help="a local Hugging Face CLIPModel or SiglipModel directory")
    ex.add_argument("--pretrained", help="open_clip: a local checkpoint file, or a pretrained tag already in the local cache")
    ex.add_argument("--tokenizer", type=Path, help="open_clip models whose tokenizer lives on the hub (SigLIP): its saved directory")
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--name", help="model name in the manifest and verdicts")
    ex.add_argument("--precision", action="append", choices=("int8", "fp16"), default=[], help="also write this variant (repeatable)")
    info = msub.add_parser("info", help="what a model directory holds; each variant's agreement with fp32 and CPU speed")
    info.add_argument("model_dir", type=Path)
    info.add_argument("--json", action="store_true")
    info.add_argument("--no-measure", action="store_true", help="skip the forward passes")
    ver = msub.add_parser("verify", help="check a model directory: checksums, graph shapes, a forward pass of every variant")
    ver.add_argument("model_dir", type=Path)
    te = msub.add_parser("tensorrt", help="build fp16 TensorRT engines of a model directory (needs tensorrt and an NVIDIA GPU)")
    te.add_argument("model_dir", type=Path)
    te.add_argument("--min-batch", type=int, default=1)
    te.add_argument("--opt-batch", type=int, default=32)
    te.add_argument("--max-batch", type=int, default=256)
    te.add_argument("--for-triton", action="store_true", help="also build the Triton repository's uint8 image graph")
    te.add_argument("--no-text", action="store_true", help="image encoder only")
    me = msub.add_parser("measure", help="record each variant's agreement with fp32 in the manifest (what precision: auto reads; add-variant does it too)")
    me.add_argument("model_dir", type=Path)
    av = msub.add_parser("add-variant", help="write the int8 or fp16 variant of a model directory")
    av.add_argument("model_dir", type=Path)
    av.add_argument("precision", choices=("int8", "fp16"))
    tr = msub.add_parser("triton-repo", help="write a Triton model repository (onnxruntime_onnx, dynamic batching) from a model directory")
    tr.add_argument("model_dir", type=Path)
    tr.add_argument("--out", type=Path, required=True, help="repository folder (its two model folders are replaced)")
    tr.add_argument("--precision", default="fp32", help="manifest variant to serve (default fp32)")
    tr.add_argument("--prefix", default="moderator", help="model names: PREFIX_image and PREFIX_text")
    tr.add_argument("--max-batch-size", type=int, default=64)
    tr.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batching: longest a request waits for a batch")
    tr.add_argument("--instances", type=int, default=1, help="model instances per device")
    tr.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="instance group kind")
    tr.add_argument("--tensorrt", action="store_true", help="run GPU instances through onnxruntime's TensorRT accelerator (fp16)")
    tr.add_argument(
        "--image-engine",
        type=Path,
        help="a TensorRT engine built from this repository's image graph: the image model becomes tensorrt_plan (the command prints the trtexec line)",
    )
    tr.add_argument("--text-engine", type=Path, help="the same for the text graph")
    models.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from moderator.models.builder import build_random_model, list_architectures

    if args.models_command == "architectures":
        print("\n".join(list_architectures()))
        return 0
    if args.models_command == "export":
        return _export(args)
    if args.models_command == "info":
        from moderator.models.inspect import format_info, model_info

        info = model_info(args.model_dir, measure=not args.no_measure)
        print(json.dumps(info, indent=2) if args.json else format_info(info))
        return 0
    if args.models_command == "verify":
        from moderator.models.inspect import verify_model_dir

        result = verify_model_dir(args.model_dir)
        for c in result.checks:
            print(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
        print(f"{args.model_dir}: {'verified' if result.ok else 'FAILED'}")
        return 0 if result.ok else 1
    if args.models_command == "tensorrt":
        from moderator.models.tensorrt import Profile, build_engines

        for path in build_engines(args.model_dir, Profile(args.min_batch, args.opt_batch, args.max_batch), for_triton=args.for_triton, text=not args.no_text):
            print(f"wrote {path}")
        return 0
    if args.models_command == "add-variant":
        from moderator.models.quantize import add_variant

        manifest = add_variant(args.model_dir, args.precision)
        print(f"{args.model_dir}: variants {sorted(manifest.variants)} (checksum {manifest.checksum()})")
        _print_agreement(args.precision, manifest.variants[args.precision].agreement)
        return 0
    if args.models_command == "measure":
        from moderator.models.inspect import store_agreement
        from moderator.models.manifest import load_manifest

        for precision in sorted(load_manifest(args.model_dir, verify=False).variants):
            if precision != "fp32":
                _print_agreement(precision, store_agreement(args.model_dir, precision))
        print(f"{args.model_dir}: agreement recorded in the manifest")
        return 0
    if args.models_command == "triton-repo":
        from moderator.models.manifest import load_manifest
        from moderator.serving.triton_repo import RepoOptions, trtexec_command, write_repository

        if args.max_batch_size < 1 or args.instances < 1 or args.max_queue_delay_us < 0:
            raise SettingsError("--max-batch-size and --instances must be at least 1, --max-queue-delay-us at least 0")
        opts = RepoOptions(
            prefix=args.prefix,
            precision=args.precision,
            max_batch_size=args.max_batch_size,
            max_queue_delay_us=args.max_queue_delay_us,
            instances=args.instances,
            kind=f"KIND_{args.kind.upper()}",
            tensorrt=args.tensorrt,
            image_engine=args.image_engine,
            text_engine=args.text_engine,
        )
        for folder in write_repository(args.model_dir, args.out, opts):
            print(f"wrote {folder}")
        if opts.kind == "KIND_GPU" and opts.image_engine is None:
            print(
                f"TensorRT engine (optional): {trtexec_command(args.out, opts, load_manifest(args.model_dir, verify=False))}, "
                "then rerun with --image-engine image.plan"
            )
        print(
            f"serve it: tritonserver --model-repository={args.out}; then MODERATOR_ENCODER__BACKEND=triton "
            f"MODERATOR_ENCODER__TRITON__IMAGE_MODEL={args.prefix}_image MODERATOR_ENCODER__TRITON__TEXT_MODEL={args.prefix}_text"
        )
        return 0
    manifest = build_random_model(args.out, args.architecture, seed=args.seed, name=args.name)
    print(f"wrote {args.out} ({manifest.name}, checksum {manifest.checksum()})")
    return 0


def _print_agreement(precision: str, found) -> None:
    if found is not None:
        print(
            f"{precision} vs fp32: image cosine min {found.image_cosine_min:.6f} (mean {found.image_cosine_mean:.6f}), "
            f"text min {found.text_cosine_min:.6f} (mean {found.text_cosine_mean:.6f}) on {found.probe}"
        )


def _export(args: argparse.Namespace) -> int:
    from moderator.models.quantize import add_variant

    if args.hf is not None:
        if args.pretrained or args.tokenizer:
            raise SettingsError("--pretrained and --tokenizer are for --open-clip; a --hf directory holds both")
        from moderator.models.export.hf import export_hf

        report = export_hf(args.hf, args.out, name=args.name)
    else:
        from moderator.models.export.openclip import export_open_clip

        report = export_open_clip(args.open_clip, args.out, pretrained=args.pretrained, tokenizer_dir=args.tokenizer, name=args.name)
    print(report.summary())
    for precision in dict.fromkeys(args.precision):
        add_variant(args.out, precision)
        print(f"added the {precision} variant")
    print(f"check it: moderator models verify {args.out}; compare variants: moderator models info {args.out}")
    return 0
