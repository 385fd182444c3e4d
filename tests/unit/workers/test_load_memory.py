"""Loading a bundle into a worker holds its weights once: the resident memory a worker gains is about the file.

A bundle of the real sizes (full-width UCF DSANet and the ViT-B/16 image tower, 497 MiB) is loaded by an
:class:`~workers.analyzer.Analyzer` in a fresh interpreter, which reports its ``VmRSS`` and ``VmHWM``
(``/proc/self/status``) before and after. Issue 13 measured 1.29 GB more RSS for a 521 MB bundle: the file's
tensors plus a copy in every module's own parameters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import gc, json, sys
import open_clip, torch  # imported before the baseline: their own memory is not the bundle's
from model.bundle import load_bundle
from workers.analyzer import Analyzer
from workers.settings import WorkerSettings

def status():
    fields = dict(line.split(':', 1) for line in open('/proc/self/status'))
    return {k: int(fields[k].split()[0]) * 1024 for k in ('VmRSS', 'VmHWM')}

before = status()
if sys.argv[2] == 'verify':
    loaded = load_bundle(sys.argv[1], verify=True)
else:
    analyzer = Analyzer(sys.argv[1], WorkerSettings(device='cpu', clip_precision=sys.argv[2]))
gc.collect()
print(json.dumps({'before': before, 'after': status()}))
"""


def write_full_size_bundle(path: Path) -> None:
    from model.bundle import OPENAI_VIT_B_16, Bundle, save_bundle
    from model.factory import create_model
    from workers.encode.clip_encoder import build_vision_tower

    torch.manual_seed(0)
    model = create_model("ucf")
    visual = build_vision_tower(OPENAI_VIT_B_16["config"]).state_dict()
    text = torch.nn.functional.normalize(torch.randn(model.cfg.num_classes, model.cfg.visual_width), dim=-1)
    save_bundle(Bundle(config=model.cfg, state_dict=dict(model.state_dict()), text_features=text,
                       clip_state_dict={"visual." + k: v for k, v in visual.items()}, demo=True), path)


@pytest.fixture(scope="module")
def full_size_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "full.safetensors"
    write_full_size_bundle(path)
    return path


def load_in_child(bundle: Path, what: str) -> dict[str, dict[str, int]]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(bundle), what], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_loaded_bundle_holds_its_weights_once(full_size_bundle: Path) -> None:
    size = full_size_bundle.stat().st_size
    got = load_in_child(full_size_bundle, "fp32")
    grown = got["after"]["VmRSS"] - got["before"]["VmRSS"]
    peak = got["after"]["VmHWM"] - got["before"]["VmRSS"]
    assert grown < 1.2 * size, f"loading a {size / 2**20:.0f} MiB bundle added {grown / 2**20:.0f} MiB of RSS"
    assert peak < 1.5 * size, f"loading a {size / 2**20:.0f} MiB bundle peaked {peak / 2**20:.0f} MiB above the start"


def test_verifying_a_bundle_reads_it_without_holding_it(full_size_bundle: Path) -> None:
    size = full_size_bundle.stat().st_size
    got = load_in_child(full_size_bundle, "verify")
    peak = got["after"]["VmHWM"] - got["before"]["VmRSS"]
    # the tensors map the file; only the pages a model touches become resident (vad extract: the CLIP tower's)
    assert peak < 0.1 * size, f"verifying a {size / 2**20:.0f} MiB bundle took {peak / 2**20:.0f} MiB"
