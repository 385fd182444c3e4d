# The GPU worker: CUDA runtime, a CUDA build of torch, the decoders, non-root. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t dsanet-vad-worker .
# Model weights: mount a bundle at /models (see docker-compose.yml), or bake one in by placing it in
# bundles/ before building (the bundle from `vad import-checkpoint` carries DSANet and CLIP ViT-B/16).
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG TORCH_VERSION=2.6.0
ARG TORCHVISION_VERSION=0.21.0
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv \
 && pip install --index-url ${TORCH_INDEX} torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION}

WORKDIR /app
COPY pyproject.toml README.md ./
COPY model/ model/
COPY workers/ workers/
COPY service/ service/
COPY vad/ vad/
RUN pip install ".[worker]" \
 && useradd --system --uid 10001 --home-dir /app vad \
 && mkdir -p /data/uploads /models && chown vad /data/uploads
COPY --chown=vad bundles/ /models/

USER vad
# The supervisor spawns worker processes (never forks after CUDA initialisation; see workers/runtime/rq_worker.py).
ENV VAD_DEVICE=cuda VAD_STORAGE_DIR=/data/uploads VAD_BUNDLE=/models/dsanet.safetensors HF_HUB_OFFLINE=1
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["python", "-m", "workers.runtime.healthcheck"]
CMD ["vad", "worker", "--concurrency", "1"]
