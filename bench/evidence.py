"""Evidence per event, measured (docs/review.md, Evidence): ring-buffer memory per stream at 2, 4 and 8 Mbit/s, the
time to cut a clip (from the ring, and from a stored video) and its bytes, a snapshot's and a thumbnail's, and the
storage one camera needs per day at a given event rate.

    .venv/bin/python bench/evidence.py                        # 1280x720, 25 fps, 2 s GOP, 60 s per bitrate
    .venv/bin/python bench/evidence.py --size 1920x1080 --events-per-day 50

Each bitrate is an H.264 stream made by FFmpeg as a camera sends it (CBR, a keyframe every 2 s, no B-frames, MPEG-TS);
its packets are pushed into a :class:`~workers.evidence.ring.PacketRing` as the live reader would.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.evidence.clip import cut_file, write_mp4
from workers.evidence.ring import PacketRing
from workers.evidence.snapshot import frame_at, jpeg

MB = 1024 * 1024


def camera_stream(path: Path, size: str, fps: int, gop_s: float, mbps: float, seconds: float) -> Path:
    rate = f"{mbps}M"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
                    "-f", "lavfi", "-i", f"nullsrc=size={size}:rate={fps}", "-filter_complex",
                    "[1:v]geq=random(1)*255:128:128[n];[0:v][n]blend=all_mode=overlay:all_opacity=0.25",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0",
                    "-g", str(int(gop_s * fps)), "-keyint_min", str(int(gop_s * fps)), "-sc_threshold", "0",
                    "-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", f"{mbps / 2}M",
                    "-x264-params", "nal-hrd=cbr", "-pix_fmt", "yuv420p", "-f", "mpegts", str(path)],
                   check=True, timeout=1800)
    return path


def feed(ring: PacketRing, video: Path, until_s: float) -> tuple[float, int]:
    """Push packets up to ``until_s``; the stream's measured bitrate (bit/s) and the ring's peak bytes."""
    total, peak, first, last = 0, 0, None, 0.0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        ring.begin(stream)
        origin = float((stream.start_time or 0) * stream.time_base)
        ring.set_origin(-origin)
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base) - origin
            if t > until_s:
                break
            first = t if first is None else first
            last = t
            total += packet.size
            ring.push(packet)
            peak = max(peak, ring.nbytes)
    return total * 8 / max(1e-9, last - (first or 0.0)), peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop-s", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each test stream")
    parser.add_argument("--bitrates", default="2,4,8", help="Mbit/s, comma-separated")
    parser.add_argument("--pre-roll", type=float, default=5.0)
    parser.add_argument("--post-roll", type=float, default=5.0)
    parser.add_argument("--event-s", type=float, default=10.0, help="length of the measured event")
    parser.add_argument("--events-per-day", default="20,100", help="event rates of the storage estimate")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rates = [float(r) for r in args.bitrates.split(",")]
    per_day = [int(r) for r in args.events_per_day.split(",")]
    start = args.seconds / 2 - args.event_s / 2
    end = start + args.event_s
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for mbps in rates:
            video = camera_stream(folder / f"{mbps}.ts", args.size, args.fps, args.gop_s, mbps, args.seconds)
            rest = PacketRing(args.pre_roll, 4096 * MB)
            bitrate, at_rest = feed(rest, video, args.seconds)  # the most it held
            pinned = PacketRing(args.pre_roll, 4096 * MB)
            pinned.pin("event", start - args.pre_roll)
            _, during = feed(pinned, video, end + args.post_roll)
            ring_times, file_times, clip_bytes = [], [], 0
            for i in range(args.repeats):
                out = folder / f"clip{i}.mp4"
                began = time.perf_counter()
                clip = pinned.cut(start - args.pre_roll, end + args.post_roll)
                assert clip is not None
                with clip.template.stream() as template:
                    write_mp4(template, clip.packets, out)
                ring_times.append(time.perf_counter() - began)
                clip_bytes = out.stat().st_size
                began = time.perf_counter()
                cut_file(video, start - args.pre_roll, end + args.post_roll, folder / f"file{i}.mp4")
                file_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            image = frame_at(video, (start + end) / 2)
            decode_s = time.perf_counter() - began
            began = time.perf_counter()
            snapshot, thumbnail = jpeg(image), jpeg(image, 320)
            jpeg_s = time.perf_counter() - began
            rows.append((mbps, bitrate, at_rest, during, statistics.median(ring_times), statistics.median(file_times),
                         clip_bytes, decode_s, jpeg_s, len(snapshot), len(thumbnail)))
    print(f"{args.size}, {args.fps} fps, {args.gop_s:g} s GOP, CBR; pre-roll {args.pre_roll:g} s, event "
          f"{args.event_s:g} s, post-roll {args.post_roll:g} s")
    print()
    print("| stream | measured | ring at rest (peak) | ring during the event (peak) | clip from the ring | "
          "clip from a file | clip | snapshot (decode + JPEG) | snapshot | thumbnail |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mbps, bitrate, at_rest, during, ring_s, file_s, clip_bytes, decode_s, jpeg_s, snap, thumb in rows:
        print(f"| {mbps:g} Mbit/s | {bitrate / 1e6:.2f} Mbit/s | {at_rest / MB:.1f} MiB | {during / MB:.1f} MiB | "
              f"{ring_s * 1000:.0f} ms | {file_s * 1000:.0f} ms | {clip_bytes / MB:.1f} MiB | "
              f"{decode_s * 1000:.0f} + {jpeg_s * 1000:.0f} ms | {snap / 1024:.0f} KiB | {thumb / 1024:.0f} KiB |")
    print()
    print("| stream | " + " | ".join(f"{n} events/day" for n in per_day) + " |")
    print("| --- | " + " | ".join("---" for _ in per_day) + " |")
    for mbps, *_, clip_bytes, _d, _j, snap, thumb in rows:
        event = clip_bytes + snap + thumb + 1024  # + meta.json
        print(f"| {mbps:g} Mbit/s | " + " | ".join(f"{n * event / MB:.0f} MiB ({n * event * 30 / 1024**3:.1f} "
                                                   f"GiB / 30 days)" for n in per_day) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
