#!/usr/bin/env bash
# The GPU check (bench/gpu.py) on a lent GPU machine that has no network.
#
#   bash scripts/gpu-check.sh prepare      # here: download the Python 3.12 wheels it lacks into .whl/ (git-ignored)
#   bash scripts/gpu-check.sh run OUT      # there: install .whl/ into /tmp/site, run the full check, table in OUT/
#   bash scripts/gpu-check.sh dry-run OUT  # here: the same script on the CPU at tiny sizes (every section runs)
#
# With the device tool: run `bash scripts/gpu-check.sh run $OUT` with carry [".whl"] and timeout_s 600.
# The machine's image has torch (CUDA), torchvision, numpy, safetensors, regex, tqdm, timm and huggingface_hub;
# what it lacks travels as wheels (about 55 MiB of the 64 MiB a call may carry). Versions: those of .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 av==18.1.0 pydantic==2.14.4 pydantic_core==2.50.5
        pydantic-settings==2.16.3 python-dotenv==1.2.4 annotated-types==0.8.0 typing-inspection==0.4.5
        torchcodec==0.17.0)
# torchcodec (NVDEC for the live-streams section) needs FFmpeg's shared libraries, which the image lacks: `run`
# offers it PyAV's (FFmpeg 8) under their plain names. Where it still does not load (or does not pair with the
# image's torch), the section decodes with PyAV's CUDA hwaccel, else on the CPU, and its note says why.

case "${1:-}" in
  prepare)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    mkdir -p .whl
    for wheel in "${WHEELS[@]}"; do
      python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$wheel"
    done
    du -sh .whl ;;
  run)
    out=${2:?usage: gpu-check.sh run OUT}
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    mkdir -p /tmp/ffmpeg-libs
    for lib in /tmp/site/av.libs/lib{avcodec,avformat,avutil,avdevice,avfilter,swscale,swresample}-*.so.*; do
      [ -e "$lib" ] || continue
      name=$(basename "$lib"); base=${name%%-*}; major=$(echo "$name" | sed -E 's/.*\.so\.([0-9]+).*/\1/')
      ln -sf "$lib" "/tmp/ffmpeg-libs/$base.so.$major"
    done
    # the plain names for torchcodec, and av.libs for the hashed names those libraries load each other by
    export LD_LIBRARY_PATH=/tmp/ffmpeg-libs:/tmp/site/av.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    python3 bench/gpu.py --device cuda --out "$out" 2>&1 | tee "$out/gpu-check.log" ;;
  dry-run)
    out=${2:?usage: gpu-check.sh dry-run OUT}
    mkdir -p "$out"
    HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py --device cpu --quick --out "$out" ;;
  *)
    sed -n '2,10p' "$0"; exit 2 ;;
esac
