"""Package boundaries of DESIGN.md, checked on the source and at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "model": {"service", "workers", "redis", "rq", "fastapi", "vad"},
    "workers": {"service", "fastapi"},
    "service": {"torch", "open_clip", "decord", "av", "model", "workers"},
}


def imported_top_levels(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_imports_in_the_source(package: str) -> None:
    imports = imported_top_levels(package)
    bad = {name: sorted(files) for name, files in imports.items() if name in FORBIDDEN[package]}
    assert not bad, f"{package}/ imports {bad}"


def test_the_api_process_loads_no_torch_or_decoders() -> None:
    code = ("import sys, service.app; service.app.create_app; "
            "print(sorted(m for m in ('torch', 'open_clip', 'decord', 'av', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_cli_starts_without_importing_torch() -> None:
    code = "import sys, vad.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
