# The API gateway: slim, no torch, no decoders. Build from the repository root:
#   docker build -f docker/api.Dockerfile -t dsanet-vad-api .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY model/ model/
COPY workers/ workers/
COPY service/ service/
COPY vad/ vad/
# The [api] extra only: fastapi, uvicorn, redis, rq, prometheus-client (no torch, open_clip, av, decord).
RUN pip install ".[api]" \
 && useradd --system --uid 10001 --home-dir /app vad \
 && mkdir -p /data/uploads && chown vad /data/uploads

USER vad
ENV VAD_STORAGE_DIR=/data/uploads
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# `vad api` is uvicorn serving service.app; it warns at start-up while VAD_API_KEYS is empty (0.0.0.0 is beyond loopback).
# X-Forwarded-* headers are trusted from FORWARDED_ALLOW_IPS only (127.0.0.1 unless set; docs/service.md).
CMD ["vad", "api", "--host", "0.0.0.0", "--port", "8000"]
