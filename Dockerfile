# syntax=docker/dockerfile:1
# moderator: CPU image by default; CUDA image with --build-arg VARIANT=gpu.
#   docker build -t moderator .
#   docker build -t moderator:gpu --build-arg VARIANT=gpu .
#   docker build -t moderator:0.1.0-ray --build-arg EXTRAS=ray,triton,video .   (Ray Serve; Triton client; video)
# The default extras are triton,video: the Triton client, and PyAV for MP4/MOV/WebM.
# Not built where this project is developed (no Docker engine there); see docs/operations.md.
ARG VARIANT=cpu
ARG CPU_BASE=python:3.11-slim-bookworm
ARG GPU_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${CPU_BASE} AS base-cpu

FROM ${GPU_BASE} AS base-gpu
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

# hadolint ignore=DL3006
FROM base-${VARIANT} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH

FROM base AS build
ARG VARIANT
# Optional extras: "triton" (the Triton client, small) is in by default; add "ray" for Ray Serve.
ARG EXTRAS=triton,video
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY moderator ./moderator
# The package depends on onnxruntime-gpu on Linux x86_64; the CPU image swaps in the 20x smaller
# CPU wheel (same Python module).
# The GPU image adds TensorRT's libraries for onnxruntime's TensorRT execution provider, which is
# built against TensorRT 10 / CUDA 12; if they fail to load, the encoder falls back to the CUDA
# provider and logs why.
ARG PIP_VERSION=26.3
ARG ORT_VERSION=1.31.1
ARG TENSORRT_VERSION=10.16.1.11
# DL3013: the unpinned install is this project itself (".[extras]"); its dependencies are bounded
# in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "pip==${PIP_VERSION}" \
 && pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
 && if [ "$VARIANT" = "cpu" ]; then pip uninstall -y onnxruntime-gpu && pip install --no-cache-dir "onnxruntime==${ORT_VERSION}"; fi \
 && if [ "$VARIANT" = "gpu" ]; then pip install --no-cache-dir "tensorrt-cu12-libs==${TENSORRT_VERSION}" \
      && ln -s "$(python3 -c 'import tensorrt_libs, os; print(os.path.dirname(tensorrt_libs.__file__))')" /opt/venv/tensorrt_libs; fi \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
# Where the GPU image's TensorRT libraries are (absent, and harmless, in the CPU image).
ENV LD_LIBRARY_PATH=/opt/venv/tensorrt_libs
WORKDIR /app
COPY models/default ./models/default
COPY policies ./policies
COPY deploy/ray ./deploy/ray
RUN useradd --system --uid 10001 --home-dir /app moderator
USER 10001
EXPOSE 9400
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=2).status == 200 else 1)"]
# Model and policy default to the bundled pictogram model (it knows pictograms only); mount real ones and set
# MODERATOR_ENCODER__MODEL_DIR and MODERATOR_POLICY__PATH.
ENTRYPOINT ["moderator"]
CMD ["run"]
