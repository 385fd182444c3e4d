"""Rebuild model/benchmark/data/{ucf,xd}.json.gz from the official list files.

Usage: .venv/bin/python scripts/build_benchmark_index.py PATH/TO/list   (VadCLIP's list/ folder, or
shared/data/benchmarks). The index holds video names, list labels, crops, the annotated test intervals and
the recorded snippet counts of normal test videos: what `vad synth-features` needs to mirror the real
benchmarks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from model.benchmark.index import read_benchmark_index, write_index
from model.config import load_preset


def main(bench_dir: str) -> None:
    out_dir = Path(__file__).resolve().parents[1] / "model" / "benchmark" / "data"
    for preset in ("ucf", "xd"):
        index = read_benchmark_index(bench_dir, load_preset(preset))
        write_index(index, out_dir / f"{preset}.json.gz")
        print(f"{preset}: {len(index.train)} training videos, {len(index.test)} test videos")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
