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
TREES = ("vad.cli", "vad", "model", "workers", "service")  # vad.cli before vad: the longest prefix names a tree

CONTRACT = {"torch", "open_clip", "numpy", "redis", "rq", "fastapi", "av", "decord", "torchcodec", "typer"}
NETWORK = {"redis", "rq", "fastapi", "starlette", "uvicorn", "av", "decord", "torchcodec", "cv2", "typer"}
NO_WEB = {"fastapi", "starlette", "uvicorn", "typer"}
NO_TORCH = {"torch", "open_clip", "decord", "torchcodec", "av", "cv2", "numpy"}
INFRA = {"torch", "open_clip", "numpy", "redis", "rq", "fastapi", "starlette", "av", "decord", "torchcodec", "typer"}
EVERYTHING = {"vad", "vad.cli", "model", "workers", "service"}

# package -> (our packages it may import, what it must not import: third-party packages, or ours to narrow the
# first set). An entry names a package and its subpackages within one tree ("vad" does not cover "vad.cli").
RULES: dict[str, tuple[set[str], set[str]]] = {
    # the contract: nothing of ours but itself, not even the shared infrastructure beside it
    "vad": ({"vad"}, CONTRACT | {"starlette", "boto3", "botocore", "httpx", "vad.net", "vad.storage"}),
    # shared infrastructure: the one outbound-URL policy; uploads and scratch storage (boto3 only when used)
    "vad.net": ({"vad"}, INFRA | {"vad.storage"}),
    "vad.storage": ({"vad"}, INFRA | {"vad.net"}),
    "vad.cli": (EVERYTHING, set()),
    "vad.cli.commands": (EVERYTHING, set()),
    # the demo's HTTP client speaks the public REST API, as any user's client would
    "vad.cli.demo": ({"vad"}, {"torch", "open_clip", "redis", "rq", "fastapi", "av", "decord", "torchcodec"}),
    "model": ({"model"}, NETWORK),
    "model.benchmark": ({"model"}, NETWORK | {"model.train"}),  # training uses the protocol, not the reverse
    "model.train": ({"model"}, NETWORK),
    "workers": ({"workers", "model", "vad"}, NO_WEB),
    # decoding: frames from files, nothing of CLIP, jobs, streams or Redis
    "workers.video": ({"workers", "model"}, NO_WEB | {"redis", "rq", "open_clip", "workers.encode", "workers.stream",
                                                      "workers.runtime", "workers.demo", "workers.synthetic"}),
    "workers.encode": ({"workers", "model"}, NO_WEB | {"redis", "rq", "workers.stream", "workers.runtime",
                                                       "workers.demo", "workers.synthetic"}),
    # live streams without HTTP or Redis: the runtime (workers.runtime) owns them in Redis
    "workers.stream": ({"workers", "model", "vad"}, NO_WEB | {"redis", "rq", "workers.runtime", "workers.demo",
                                                              "workers.synthetic"}),
    "workers.runtime": ({"workers", "model", "vad"}, NO_WEB | {"workers.demo", "workers.synthetic"}),
    "workers.demo": ({"workers", "model", "vad"}, NO_WEB | {"redis", "rq", "workers.runtime"}),
    # snapshots and clips: decoding and remuxing, the storage; no model, no stream runtime (it is handed in)
    "workers.evidence": ({"workers", "vad"}, NO_WEB | {"torch", "open_clip", "workers.encode", "workers.stream",
                                                       "workers.runtime", "workers.mqtt", "workers.demo",
                                                       "workers.synthetic"}),
    # the MQTT bridge: stream events and state from Redis to a broker, nothing of video or models
    "workers.mqtt": ({"workers", "vad"}, NO_WEB | {"torch", "numpy", "workers.video", "workers.encode",
                                                  "workers.stream", "workers.runtime", "workers.evidence",
                                                  "workers.demo", "workers.synthetic"}),
    # synthetic videos: numpy and PyAV only, so that anything may use them
    "workers.synthetic": ({"workers.synthetic"}, NO_WEB | {"torch", "open_clip", "redis", "rq"}),
    "service": ({"service", "vad"}, NO_TORCH),
    "service.api": ({"service", "vad"}, NO_TORCH),
    "service.api.routes": ({"service", "vad"}, NO_TORCH),
}


def hits(module: str, name: str) -> bool:
    """Whether ``module`` is ``name`` or inside it."""
    return module == name or module.startswith(name + ".")


def tree(module: str) -> str | None:
    """Which of our trees ``module`` (dotted) belongs to, or ``None`` for a third-party one."""
    return next((t for t in TREES if hits(module, t)), None)


def owner(module: str) -> str | None:
    """The package (a row of :data:`RULES`) that holds ``module``: the longest one that contains it."""
    return max((p for p in RULES if hits(module, p) and tree(module) == tree(p)), key=len, default=None)


def allowed_import(package: str, module: str) -> bool:
    """Whether ``package``'s row lets it import ``module``."""
    allowed, banned = RULES[package]
    if any(hits(module, b) for b in banned):
        return False
    return tree(module) is None or any(hits(module, a) and tree(module) == tree(a) for a in allowed)


def packages() -> set[str]:
    """Every package of ours: each folder with an ``__init__.py`` under a tree's root."""
    return {p.parent.relative_to(ROOT).as_posix().replace("/", ".") for root in ("vad", "model", "workers", "service")
            for p in (ROOT / root).rglob("__init__.py")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(package: str) -> list[Path]:
    """The modules whose own package is ``package`` (a subpackage's modules are under its own row)."""
    files = [p for root in ("vad", "model", "workers", "service") for p in sorted((ROOT / root).rglob("*.py"))]
    if package == "vad.cli":  # vad/__main__.py (`python -m vad`) is the command line's entry point: it belongs here
        return [f for f in files if owner(module_name(f)) == package] + [ROOT / "vad" / "__main__.py"]
    return [f for f in files if owner(module_name(f)) == package and f != ROOT / "vad" / "__main__.py"]


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
    bad: dict[str, list[str]] = {}
    files = source_files(package)
    assert files, f"{package} has no modules of its own"
    for path in files:
        for module in imports_of(path):
            if not allowed_import(package, module):
                bad.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert not bad, f"{package} imports what its row forbids: {bad}"


def test_every_package_and_subpackage_has_a_row() -> None:
    assert packages() == set(RULES)
    top = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert top == {p.split(".")[0] for p in RULES}


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from workers.runtime.jobs import analyze_job\n    import torch\n")
    assert imports_of(bad) == {"workers.runtime.jobs", "torch"}
    assert owner("workers.runtime.jobs") == "workers.runtime" and owner("workers.analyzer") == "workers"
    assert owner("vad.cli.app") == "vad.cli" and owner("vad.jobstate") == "vad" and owner("vadx") is None
    assert not allowed_import("service", "workers.runtime.jobs") and not allowed_import("service.api", "torch")
    assert not allowed_import("vad", "vad.cli.app") and allowed_import("vad.cli.demo", "vad.schema")
    assert not allowed_import("workers.synthetic", "model.bundle") and allowed_import("workers.synthetic", "av")
    assert not allowed_import("workers.stream", "redis") and not allowed_import("model.benchmark", "model.train.run")
    assert allowed_import("workers.stream", "workers.encode.features") and allowed_import("model.train", "torch")
    assert owner("vad.net.policy") == "vad.net" and owner("vad.keys") == "vad"
    assert not allowed_import("vad", "vad.net.policy") and allowed_import("service", "vad.storage")


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
