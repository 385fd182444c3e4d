"""Package boundaries (docs/architecture.md), checked on the source and at import time.

Imports run one way: the ``vad`` contract ← ``service``, ``workers`` ← ``vad.cli``; ``model`` knows none of
ours. Every package has a row, so a new module lands under a rule whatever folder it is put in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("vad.cli", "vad", "model", "workers", "service")  # vad.cli before vad: the longest prefix names a package

# package -> (our packages it may import, third-party packages it must not import)
RULES: dict[str, tuple[set[str], set[str]]] = {
    "vad": ({"vad"}, {"torch", "open_clip", "numpy", "redis", "rq", "fastapi", "av", "decord", "torchcodec", "typer"}),
    "model": ({"model"}, {"redis", "rq", "fastapi", "starlette", "uvicorn", "av", "decord", "torchcodec", "cv2",
                          "typer"}),
    "workers": ({"workers", "model", "vad"}, {"fastapi", "starlette", "uvicorn", "typer"}),
    "service": ({"service", "vad"}, {"torch", "open_clip", "decord", "torchcodec", "av", "cv2", "numpy"}),
    "vad.cli": ({"vad.cli", "vad", "model", "workers", "service"}, set()),
}


def owner(module: str) -> str | None:
    """Which of our packages ``module`` (dotted) belongs to, or ``None`` for a third-party one."""
    return next((p for p in OURS if module == p or module.startswith(p + ".")), None)


def source_files(package: str) -> list[Path]:
    folder = ROOT.joinpath(*package.split("."))
    files = sorted(folder.rglob("*.py"))
    if package == "vad":  # vad/__main__.py (`python -m vad`) is the command line's entry point: it belongs to vad.cli
        files = [f for f in files if "cli" not in f.relative_to(folder).parts and f.name != "__main__.py"]
    if package == "vad.cli":
        files.append(ROOT / "vad" / "__main__.py")
    return files


def imports_of(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(RULES))
def test_each_package_imports_only_what_its_row_allows(package: str) -> None:
    allowed, banned = RULES[package]
    bad: dict[str, list[str]] = {}
    for path in source_files(package):
        for module in imports_of(path):
            ours = owner(module)
            if (ours is not None and ours not in allowed) or module.split(".")[0] in banned:
                bad.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert not bad, f"{package} imports what its row forbids: {bad}"


def test_every_package_has_a_row() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == {p.split(".")[0] for p in RULES}


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from workers.runtime.jobs import analyze_job\n    import torch\n")
    assert imports_of(bad) == {"workers.runtime.jobs", "torch"}
    assert owner("workers.runtime.jobs") == "workers" and owner("vad.cli.app") == "vad.cli" and owner("vadx") is None


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return ast.literal_eval(out.stdout.strip())


def test_the_api_process_loads_no_torch_or_decoders() -> None:
    heavy = ("torch", "open_clip", "decord", "torchcodec", "av", "cv2", "model", "workers")
    assert _loaded_after("import service.app; service.app.create_app", heavy) == []


def test_the_contract_loads_nothing_but_pydantic() -> None:
    statement = "import vad.schema, vad.jobstate, vad.settings, vad.callbacks, vad.exceptions"
    assert _loaded_after(statement, ("torch", "numpy", "model", "workers", "service", "vad.cli", "redis")) == []


def test_the_cli_starts_without_importing_torch() -> None:
    assert _loaded_after("import vad.cli", ("torch", "open_clip", "av", "decord", "torchcodec")) == []
