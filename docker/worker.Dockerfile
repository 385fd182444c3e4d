# The GPU worker: the tested torch in its CUDA build, the decoders and FFmpeg's libraries, non-root. Build from the
# repository root:
#   docker build -f docker/worker.Dockerfile -t dsanet-vad-worker .
# Model weights: mount a bundle at /models (see docker-compose.yml), or bake one in by placing it in
# bundles/ before building (the bundle from `vad import-checkpoint` carries DSANet and CLIP ViT-B/16).
# torch and torchvision: the versions pinned in requirements/cpu-dev.txt (the ones the project is tested with, read
# from there at build time), in the CUDA build of TORCH_INDEX. CUDA_IMAGE's CUDA release must be TORCH_INDEX's
# (cu130: CUDA 13.0, NVIDIA driver >= 580); the wheels bring their own CUDA libraries, the image only the driver check.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu22.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH

# FFmpeg's shared libraries for torchcodec (PyAV and decord bundle their own), by the script CI uses too.
COPY scripts/ensure-ffmpeg.sh /tmp/ensure-ffmpeg.sh
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && bash /tmp/ensure-ffmpeg.sh \
 && ldconfig -p | grep -q 'libavcodec\.so\.' \
 && rm -rf /var/lib/apt/lists/* /tmp/ensure-ffmpeg.sh \
 && python3.11 -m venv /opt/venv

COPY requirements/cpu-dev.txt /tmp/pins.txt
RUN grep -E '^(torch|torchvision)==' /tmp/pins.txt > /opt/torch-pins.txt \
 && pip install --index-url ${TORCH_INDEX} -r /opt/torch-pins.txt

WORKDIR /app
COPY pyproject.toml README.md ./
COPY model/ model/
COPY workers/ workers/
COPY service/ service/
COPY vad/ vad/
# -c: the worker extra's dependencies (open_clip, torchcodec) must not move torch off the pinned build.
RUN pip install -c /opt/torch-pins.txt ".[worker]" \
 && useradd --system --uid 10001 --home-dir /app vad \
 && mkdir -p /data/uploads /models && chown vad /data/uploads
COPY --chown=vad bundles/ /models/

USER vad
# The supervisor spawns worker processes (never forks after CUDA initialisation; see workers/runtime/rq_worker.py):
# without --concurrency, VAD_WORKERS_PER_GPU per GPU of VAD_GPUS, each given its GPU through CUDA_VISIBLE_DEVICES.
# CUDA_DEVICE_ORDER=PCI_BUS_ID: CUDA numbers the GPUs as nvidia-smi does, so VAD_GPUS=0,2 means nvidia-smi's 0 and 2.
ENV VAD_DEVICE=cuda VAD_STORAGE_DIR=/data/uploads VAD_BUNDLE=/models/dsanet.safetensors HF_HUB_OFFLINE=1 \
    CUDA_DEVICE_ORDER=PCI_BUS_ID
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["python", "-m", "workers.runtime.healthcheck"]
CMD ["vad", "worker"]
