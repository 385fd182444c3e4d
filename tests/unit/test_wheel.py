"""The wheel installs the product and only the product: its four packages, their modules and their data files.

The wheel is built offline (``pip wheel --no-deps --no-build-isolation --no-index``) from a copy of the project
in a temporary folder, beside decoys a checkout or a deployment may hold: the deployment's ``bundles/``, a stray
``models/`` and ``modelzoo/`` (names an ``include = ["model*"]`` pattern would take), and ``tests/``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("model", "workers", "service", "vad")
PACKAGE_DATA = ("model/presets/*.json", "model/benchmark/data/*.json.gz", "service/web/*")


def _copy_project(dest: Path) -> None:
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    for package in PRODUCT:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    decoys = {"bundles/README.md": "# bundles\n", "bundles/extra.json": "{}\n", "models/x.json": "{}\n",
              "modelzoo/__init__.py": "", "tests/__init__.py": "", "tests/support/__init__.py": ""}
    for path, text in decoys.items():
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_text(text)


def _expected_files() -> set[str]:
    files = {p.relative_to(ROOT).as_posix() for package in PRODUCT for p in (ROOT / package).rglob("*.py")
             if "__pycache__" not in p.parts}
    files |= {p.relative_to(ROOT).as_posix() for pattern in PACKAGE_DATA for p in ROOT.glob(pattern) if p.is_file()}
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    _copy_project(source)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
               "-w", str(out), str(source)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("dsanet_vad-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_only_the_product_packages(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
    assert {n.split("/")[0] for n in names} == {*PRODUCT, dist_info}
    assert sorted(wheel.read(f"{dist_info}/top_level.txt").decode().split()) == sorted(PRODUCT)


def test_the_wheel_holds_every_module_and_data_file(wheel: zipfile.ZipFile) -> None:
    files = {n for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")}
    expected = _expected_files()
    assert {"model/presets/ucf.json", "model/benchmark/data/xd.json.gz", "service/web/index.html"} <= expected
    assert files == expected, f"missing: {sorted(expected - files)}; unexpected: {sorted(files - expected)}"
