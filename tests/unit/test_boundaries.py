"""Package boundaries (docs/architecture.md), checked on the source and at import time.

Imports run one way: the ``vad`` contract ← ``service``, ``workers`` ← ``vad.cli``; ``model`` knows none of
ours; the shared infrastructure (``vad.net``, ``vad.storage``) imports only the contract. Every package and subpackage
has a row, so a new module lands under a rule whatever folder it is put in, and a new subpackage fails the test until
it has one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("vad", "model", "workers", "service")

CONTRACT_BANS = {"torch", "open_clip", "numpy", "redis", "rq", "fastapi", "starlette", "av", "decord", "torchcodec",
                 "typer", "boto3", "botocore", "httpx"}
INFRA_BANS = {"torch", "open_clip", "numpy", "redis", "rq", "fastapi", "starlette", "av", "decord", "torchcodec",
              "typer"}
MODEL_BANS = {"redis", "rq", "fastapi", "starlette", "uvicorn", "av", "decord", "torchcodec", "cv2", "typer"}
WORKER_BANS = {"fastapi", "starlette", "uvicorn", "typer"}
SERVICE_BANS = {"torch", "open_clip", "decord", "torchcodec", "av", "cv2", "numpy"}
MODEL = {"model", "model.train", "model.benchmark"}
CONTRACT = {"vad", "vad.net", "vad.storage"}
SERVICE = {"service", "service.api", "service.api.routes"}
DECODING = {"workers", "workers.video"}
FEATURES = DECODING | {"workers.encode"}
LIVE = FEATURES | {"workers.stream"}
WORKERS = LIVE | {"workers.queue", "workers.mqtt", "workers.evidence", "workers.demo", "workers.testing"}
EVERYTHING = CONTRACT | MODEL | WORKERS | SERVICE | {"vad.cli", "vad.cli.commands"}

# package or subpackage -> (our packages it may import, third-party packages it must not import); a module belongs
# to the row of the longest name that prefixes it
RULES: dict[str, tuple[set[str], set[str]]] = {
    "vad": ({"vad"}, CONTRACT_BANS),  # the contract: nothing of ours but itself, not even the infrastructure
    "vad.net": ({"vad", "vad.net"}, INFRA_BANS),
    "vad.storage": ({"vad", "vad.storage"}, INFRA_BANS),
    "model": ({"model"}, MODEL_BANS),
    "model.benchmark": ({"model", "model.benchmark"}, MODEL_BANS),
    "model.train": (MODEL, MODEL_BANS),
    "workers": (WORKERS | MODEL | CONTRACT, WORKER_BANS),
    "workers.video": (DECODING | {"model", "vad"}, WORKER_BANS),  # decoding knows nothing of features or queues
    "workers.encode": (FEATURES | {"model", "model.benchmark", "vad"}, WORKER_BANS),
    "workers.stream": (LIVE | {"model", "model.benchmark", "vad", "vad.net"}, WORKER_BANS),  # no Redis runtime
    "workers.queue": (LIVE | {"workers.queue", "workers.mqtt", "workers.evidence"} | MODEL | CONTRACT, WORKER_BANS),
    # snapshots and clips: decoding and remuxing, the storage; no model, no stream runtime (it is handed in)
    "workers.evidence": (DECODING | {"workers.evidence", "vad", "vad.net", "vad.storage"}, WORKER_BANS | {"torch"}),
    "workers.mqtt": ({"workers", "workers.mqtt", "vad"}, WORKER_BANS | {"torch", "numpy"}),  # Redis -> broker only
    "workers.demo": (FEATURES | {"workers.demo", "workers.testing"} | MODEL | {"vad"}, WORKER_BANS),
    "workers.testing": (LIVE | {"workers.testing", "model", "vad"}, WORKER_BANS),
    "service": (SERVICE | CONTRACT, SERVICE_BANS),
    "service.api": (SERVICE | CONTRACT, SERVICE_BANS),
    "service.api.routes": (SERVICE | CONTRACT, SERVICE_BANS),
    "vad.cli": (EVERYTHING, set()),
    "vad.cli.commands": (EVERYTHING, set()),
}
OURS = tuple(sorted(RULES, key=len, reverse=True))  # the longest prefix names a module's row


def owner(module: str) -> str | None:
    """Which row of ours ``module`` (dotted) belongs to, or ``None`` for a third-party one."""
    if module == "vad.__main__":  # `python -m vad` is the command line's entry point
        return "vad.cli"
    return next((p for p in OURS if module == p or module.startswith(p + ".")), None)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(package: str) -> list[Path]:
    """The modules of the row ``package`` (those of its subpackages with rows of their own are theirs)."""
    top = ROOT / package.split(".")[0]
    return [f for f in sorted(top.rglob("*.py")) if owner(module_name(f)) == package]


def packages() -> set[str]:
    """Every package and subpackage of the product: a folder with an ``__init__.py`` under a top-level package."""
    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    return {module_name(init) for top in tops for init in (ROOT / top).rglob("__init__.py")}


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


def test_every_package_and_subpackage_has_a_row() -> None:
    assert packages() == set(RULES)
    assert all(source_files(package) for package in RULES)


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from workers.queue.jobs import analyze_job\n    import torch\n")
    assert imports_of(bad) == {"workers.queue.jobs", "torch"}
    assert owner("workers.queue.jobs") == "workers.queue" and owner("vad.cli.app") == "vad.cli"
    assert owner("vadx") is None
    assert owner("vad.net.policy") == "vad.net" and owner("vad.keys") == "vad" and owner("vad.__main__") == "vad.cli"


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return ast.literal_eval(out.stdout.strip())


def test_the_api_process_loads_no_torch_or_decoders() -> None:
    heavy = ("torch", "open_clip", "decord", "torchcodec", "av", "cv2", "model", "workers")
    assert _loaded_after("import service.app; service.app.create_app", heavy) == []


CONTRACT_MODULES = sorted(module_name(f) for f in source_files("vad"))


def test_the_contract_is_every_module_of_vad_and_loads_nothing_but_pydantic() -> None:
    assert {"vad.schema", "vad.jobstate", "vad.keys", "vad.streams", "vad.streamlua", "vad.settings", "vad.callbacks",
            "vad.exceptions"} <= set(CONTRACT_MODULES)
    statement = "import " + ", ".join(CONTRACT_MODULES)
    heavy = ("torch", "numpy", "model", "workers", "service", "vad.cli", "redis", "vad.net", "vad.storage", "boto3")
    assert _loaded_after(statement, heavy) == []


@pytest.mark.parametrize("package", ["vad.net", "vad.storage"])
def test_the_shared_infrastructure_loads_no_torch_nor_the_layers_above(package: str) -> None:
    modules = sorted(module_name(f) for f in source_files(package))
    heavy = ("torch", "numpy", "model", "workers", "service", "vad.cli", "redis", "boto3")  # boto3: only when used
    assert _loaded_after("import " + ", ".join(modules), heavy) == []


def test_the_cli_starts_without_importing_torch() -> None:
    assert _loaded_after("import vad.cli", ("torch", "open_clip", "av", "decord", "torchcodec")) == []
