"""Decode CPU of one live stream: CPU seconds per second of video, with each decoding lever on and off.

The live reader (:class:`~workers.stream.live_source.LiveSource`, as a stream worker runs it) reads generated
H.264 files as fast as it can, its kept frames taken at once, and the process's CPU time (every thread) is
divided by the video's duration. Levers: decoder threads per stream (``VAD_STREAM_DECODE_THREADS``: 0 = FFmpeg's
default, one slice thread per core; 1) and skipping non-reference frames no snippet keeps
(``VAD_STREAM_SKIP_FRAMES``: none, nonref). Two encodings per size: libx264 veryfast with B-frames (3 between
references, the x264 default) and without B-frames (``-bf 0``, what most IP cameras send), GOP 50 (2 s at 25 fps).
Each run repeats every row and keeps the lowest CPU time (other jobs on the machine only add to it).

    python bench/decode.py                      # 640x360, 1280x720 and 1920x1080, 10 s each
    python bench/decode.py --quick              # one small size (checks the script)

:func:`decode_cpu` is what ``bench/streams.py`` can call for one file and one setting of the levers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.stream.live_source import LiveSource
from workers.synthetic import make_video

SIZES = {"640x360": (640, 360), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}
LEVERS = [(0, "none"), (1, "none"), (0, "nonref"), (1, "nonref")]
NOISE = 6.0
"""Sensor noise of the generated scenes (grey levels): brings their bitrate near a camera's (the table says it)."""


def decode_cpu(path: str | Path, threads: int, skip: str, duration_s: float) -> tuple[float, int, int]:
    """Read ``path`` like a live stream with these levers.

    Returns:
        CPU seconds per second of video, frames decoded, snippets handed over.
    """
    source = LiveSource(path, decode_threads=threads, skip_frames=skip)  # type: ignore[arg-type]
    snippets = 0
    cpu0 = time.process_time()
    with source:
        while not source.finished:
            if source.get(timeout=0.05) is not None:
                snippets += 1
    return (time.process_time() - cpu0) / duration_s, source.frames_read, snippets


def make_inputs(workdir: Path, sizes: dict[str, tuple[int, int]], seconds: float) -> list[tuple[str, str, Path]]:
    """``(size, encoding, path)``: each size with B-frames (x264's default) and without (``-bf 0``)."""
    ffmpeg = shutil.which("ffmpeg")
    out = []
    for label, size in sizes.items():
        video = make_video(workdir / f"{label}-b.mp4", duration_s=seconds, fps=25.0, size=size, codec="libx264",
                           noise=NOISE)
        out.append((label, "B-frames", video.path))
        if ffmpeg is None:
            continue
        plain = workdir / f"{label}-p.mp4"
        subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(video.path), "-c:v", "libx264", "-preset", "veryfast",
                        "-crf", "23", "-bf", "0", "-g", "50", "-threads", "2", str(plain)], check=True)
        out.append((label, "no B-frames", plain))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each generated video")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row (the lowest CPU time is kept)")
    parser.add_argument("--quick", action="store_true", help="one 320x180 video of 2 s, one run per row")
    args = parser.parse_args()
    sizes = {"320x180": (320, 180)} if args.quick else SIZES
    seconds, repeats = (2.0, 1) if args.quick else (args.seconds, args.repeats)
    print(f"{os.cpu_count()} CPUs; CPU seconds per second of 25 fps video (lower is better), the lowest of "
          f"{repeats} run(s)")
    print("| size | encoding | Mbit/s | threads | skip | CPU s / video s | ratio to auto, none | frames decoded | "
          "snippets |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="vad-decode-bench-") as tmp:
        for label, encoding, path in make_inputs(Path(tmp), sizes, seconds):
            base = None
            mbits = path.stat().st_size * 8 / seconds / 1e6
            for threads, skip in LEVERS:
                cpu, frames, snippets = min(decode_cpu(path, threads, skip, seconds) for _ in range(repeats))
                base = base or cpu
                print(f"| {label} | {encoding} | {mbits:.1f} | {threads or 'auto'} | {skip} | {cpu:.3f} | "
                      f"{cpu / base:.2f} | {frames} | {snippets} |", flush=True)


if __name__ == "__main__":
    main()
