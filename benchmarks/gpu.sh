#!/usr/bin/env bash
# GPU figures for docs/benchmarks.md (issue: TensorRT). One script, no downloads, under 8 minutes
# on an H100/H200: export a random-weight ViT-B/32 (the full-size architecture; weights do not
# change speed), build its fp16 TensorRT engine, then print images/s at batch 1, 32 and 256 for
# TensorRT fp16, onnxruntime's CUDA provider fp16 and CUDA provider fp32, measured in one run.
#
# Needs, already installed in $PYTHON's environment: this package with the export extra,
# onnxruntime-gpu, tensorrt (CUDA 12 build) and an NVIDIA driver. Usage: benchmarks/gpu.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${1:-$(mktemp -d /tmp/moderator-gpu.XXXXXX)}
start=$SECONDS

command -v nvidia-smi >/dev/null || { echo "gpu.sh: no NVIDIA driver (nvidia-smi) on this machine" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PYTHON" - <<'PY'
import importlib, sys
missing = [m for m in ("torch", "open_clip", "onnxruntime", "tensorrt") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu.sh: missing {missing}: install this package with the export extra, onnxruntime-gpu and tensorrt")
import onnxruntime as ort, tensorrt, torch
print(f"torch {torch.__version__} (cuda {torch.version.cuda}, available {torch.cuda.is_available()}), "
      f"onnxruntime {ort.__version__} {ort.get_available_providers()}, tensorrt {tensorrt.__version__}")
if not torch.cuda.is_available():
    sys.exit("gpu.sh: torch sees no CUDA device")
PY

if [ ! -f "$WORK/vit-b-32/manifest.json" ]; then
  "$PYTHON" -m moderator models export --open-clip ViT-B-32 --out "$WORK/vit-b-32" --precision fp16
fi
echo "export done at $((SECONDS - start))s"
"$PYTHON" -m moderator models tensorrt "$WORK/vit-b-32" --no-text --min-batch 1 --opt-batch 32 --max-batch 256
echo "engine built at $((SECONDS - start))s"
"$PYTHON" benchmarks/gpu_bench.py "$WORK/vit-b-32"
echo "gpu.sh: finished in $((SECONDS - start))s"
