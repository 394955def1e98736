# syntax=docker/dockerfile:1
# moderator: CPU image by default; CUDA image with a CUDA base and the gpu variant.
#   docker build -t moderator .
#   docker build -t moderator:gpu --build-arg VARIANT=gpu --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 .
#   docker build -t moderator:ray --build-arg EXTRAS=ray,triton,video .   (Ray Serve; Triton client; video)
# The default extras are triton,video: the Triton client, and PyAV for MP4/MOV/WebM.
# Built and run in CI without a Docker engine: buildah on a debootstrap base given as CPU_BASE
# (deploy/image/build.sh, docs/operations.md#container-image).
#
# The base is one global argument (BASE, CPU_BASE by default) rather than a stage picked by name
# ("FROM base-${VARIANT}"): BuildKit resolves computed stage names, buildah 1.28 does not.
ARG CPU_BASE=python:3.11-slim-bookworm
ARG BASE=${CPU_BASE}

FROM ${BASE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
# A CUDA base has no Python; the slim Python and Debian bases have it and skip this.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*; fi

FROM base AS build
# cpu: onnxruntime's CPU wheel (the base dependency). gpu: onnxruntime-gpu in its place (the two
# wheels install one module, so the CPU one is removed: docs/operations.md#gpu) and TensorRT's
# libraries for onnxruntime's TensorRT execution provider (TensorRT 10 / CUDA 12); if they fail to
# load, the encoder falls back to the CUDA provider and logs why.
ARG VARIANT=cpu
# Optional extras: "triton" (the Triton client, small) is in by default; add "ray" for Ray Serve.
ARG EXTRAS=triton,video
ARG PIP_VERSION=26.3
ARG TENSORRT_VERSION=10.16.1.11
WORKDIR /src
# A C++ compiler (and Python's headers where the base lacks them) for the dependencies PyPI has as
# source only (pdqhash, the PDQ hasher); in this stage only, not in the image.
# hadolint ignore=DL3008
RUN if [ "$VARIANT" = gpu ] && [ ! -e /usr/local/cuda ]; then \
      echo "VARIANT=gpu needs a CUDA base: --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04" >&2; exit 1; fi \
 && headers=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \
 && dev=$([ -f "$headers/Python.h" ] || echo python3-dev) \
 && apt-get update \
 && apt-get install -y --no-install-recommends g++ ${dev:+"$dev"} \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY moderator ./moderator
COPY models/default ./models/default
COPY policies/default.yaml ./policies/default.yaml
COPY deploy/local/kafka.sh ./deploy/local/kafka.sh
COPY examples ./examples
# DL3013: the unpinned install is this project itself (".[extras]"); its dependencies are bounded
# in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "pip==${PIP_VERSION}" \
 && if [ "$VARIANT" = gpu ]; then EXTRAS="${EXTRAS:+$EXTRAS,}gpu"; fi \
 && pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
 && if [ "$VARIANT" = gpu ]; then pip uninstall -y onnxruntime onnxruntime-gpu \
      && pip install --no-cache-dir --no-deps "onnxruntime-gpu>=1.20" \
      && pip install --no-cache-dir "tensorrt-cu12-libs==${TENSORRT_VERSION}" \
      && ln -s "$(python3 -c 'import tensorrt_libs, os; print(os.path.dirname(tensorrt_libs.__file__))')" /opt/venv/tensorrt_libs; fi \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
# Where the GPU image's TensorRT libraries are (absent, and harmless, in the CPU image).
ENV LD_LIBRARY_PATH=/opt/venv/tensorrt_libs
# The one writable place the service needs: its text-embedding cache. Declared as a volume so a
# read-only root filesystem (Kubernetes readOnlyRootFilesystem, docker run --read-only) keeps it
# writable; the model and policy are package data (moderator/bundled.py) and are only read.
ENV MODERATOR_POLICY__CACHE_DIR=/var/cache/moderator/embeddings
RUN useradd --system --uid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin moderator \
 && mkdir -p /var/cache/moderator/embeddings && chown -R 10001:10001 /var/cache/moderator
VOLUME ["/var/cache/moderator"]
COPY deploy/ray /app/deploy/ray
WORKDIR /app
USER 10001
EXPOSE 9400
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=2).status == 200 else 1)"]
# Model and policy default to the bundled pictogram model (it knows pictograms only); mount real ones and set
# MODERATOR_ENCODER__MODEL_DIR and MODERATOR_POLICY__PATH.
ENTRYPOINT ["moderator"]
CMD ["run"]
