"""The docs stay true: README size, settings tables generated from the code, links, and names of our code."""

from __future__ import annotations

import ast
import glob
import re
import shutil
from pathlib import Path

import pytest

from vad.cli import settings_docs
from vad.cli.settings_docs import WRITE_COMMAND, problems, render_table, table_fields

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
OURS = ("vad", "model", "workers", "service")
CODE_DIRS = ("vad", "model", "workers", "service", "tests", "scripts", "bench", "docker", "docs", "requirements")

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        if line.startswith("#"):
            base = slug(line.lstrip("#"))
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def test_readme_is_at_most_8_kb() -> None:
    size = len(README.read_bytes())
    assert size <= 8192, f"README.md is {size} bytes; keep it at most 8192 and move details to docs/"


def test_readme_quick_start_is_what_ci_and_the_scripts_run() -> None:
    text = README.read_text()
    assert "bash scripts/quickstart.sh" in text and (ROOT / "scripts/quickstart.sh").is_file()
    assert "bash scripts/test.sh" in text and "exec bash scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_settings_tables_match_the_settings_classes() -> None:
    found = problems()
    assert not found, "\n".join(found) + f"\nregenerate the tables with: {WRITE_COMMAND}"


def test_every_setting_has_a_description_and_a_table() -> None:
    from service.settings import ServiceSettings
    from workers.settings import WorkerSettings

    listed = {name for _, names in table_fields().values() for name in names}
    for cls in (ServiceSettings, WorkerSettings):
        assert set(cls.model_fields) <= listed
        missing = [name for name, field in cls.model_fields.items() if not field.description]
        assert not missing, f"{cls.__name__} fields without Field(description=...): {missing}"


def test_the_check_names_a_stale_table_and_write_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for page in DOCS:
        shutil.copy(page, tmp_path / page.name)
    assert problems(tmp_path, write=True) == []  # fresh tables, whatever the state of the real docs
    service = tmp_path / "service.md"
    service.write_text(service.read_text().replace("| `VAD_QUEUE_NAME` |", "| `VAD_QUEUE_NAMES` |"))
    found = problems(tmp_path)
    assert len(found) == 1 and "service.md" in found[0] and WRITE_COMMAND in found[0]
    assert problems(tmp_path, write=True) == [] and problems(tmp_path) == []
    assert "| `VAD_QUEUE_NAME` |" in service.read_text()
    assert "updated" in capsys.readouterr().out


def test_the_check_names_missing_and_unknown_tables(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("<!-- settings:NoSuchSettings -->\n<!-- /settings -->\n")
    found = "\n".join(problems(tmp_path))
    assert "unknown table NoSuchSettings" in found
    for name in table_fields():
        assert f"table {name} is in no docs file" in found


def test_the_command_exits_1_when_the_docs_differ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_docs, "DOCS_DIR", tmp_path)
    assert settings_docs.main([]) == 1


def test_a_table_escapes_pipes_and_renders_defaults() -> None:
    table = render_table("WorkerSettings.pipeline")
    assert "| `VAD_BUNDLE` | unset |" in table and "| `VAD_THRESHOLD` | `0.5` |" in table
    assert all(line.count(" | ") == 2 for line in table.splitlines()[2:])  # three cells, no stray pipe
    assert "| `VAD_REDIS_URL` / `REDIS_URL` |" in render_table("QueueSettings")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{page.name}: {broken}"


def defined(body: list[ast.stmt], name: str) -> ast.stmt | None:
    """The statement of ``body`` that defines ``name`` (a def, a class, an assignment or an import)."""
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names = [node.name]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        else:
            continue
        if name in names:
            return node
    return None


def defines(module: Path, names: list[str]) -> bool:
    """Whether ``module`` defines ``names[0]`` at top level, and ``names[1]`` in that class when given."""
    node = defined(ast.parse(module.read_text()).body, names[0])
    if node is None or len(names) == 1:
        return node is not None
    return len(names) == 2 and isinstance(node, ast.ClassDef) and defined(node.body, names[1]) is not None


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` (``workers.analyzer.Analyzer``, ``vad.cli.settings_docs``) names our code."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            return cut == len(parts) or defines(module, parts[cut:])
    return False


def expand(path: str) -> list[str]:
    """``a/{b,c}.json`` → ``a/b.json``, ``a/c.json``."""
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    return [p for option in match.group(1).split(",")
            for p in expand(path[:match.start()] + option + path[match.end():])]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_names_and_paths_of_our_code_exist(page: Path) -> None:
    text = page.read_text()
    missing = []
    for code in INLINE_CODE.findall(FENCE.sub("", text)):
        if re.fullmatch(rf"(?:{'|'.join(OURS)})(?:\.[A-Za-z_]\w*)+", code) and not resolves(code):
            missing.append(code)
        elif re.fullmatch(rf"(?:{'|'.join(CODE_DIRS)})/[\w./{{}},*-]*", code):
            missing += [p for p in expand(code) if not glob.glob(str(ROOT / p))]
    for language, block in FENCE.findall(text):
        if language != "python":
            continue
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
                missing += [f"{node.module}.{a.name}" for a in node.names if not resolves(f"{node.module}.{a.name}")]
    assert not missing, f"{page.name} names code that does not exist: {missing}"


MODULE_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(CODE_DIRS)})/[\w./{{}},-]*\.py)\b")
RUN_MODULE = re.compile(r"python3? -m ((?:vad|model|workers|service)(?:\.\w+)*)")
LAYOUT_FILE = re.compile(r"[\w{},./-]+\.(?:py|json|gz|js|html|css|sh|md|toml|yml)|[\w{},./-]+/")


def module_paths(text: str) -> list[str]:
    """The ``dir/…/module.py`` paths and ``python -m`` modules a page names anywhere (prose, code, tables)."""
    return [*(p for path in MODULE_PATH.findall(text) for p in expand(path)), *RUN_MODULE.findall(text)]


def missing_code(names: list[str]) -> list[str]:
    return [n for n in names if not (glob.glob(str(ROOT / n)) if "/" in n else resolves(n))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_module_path_a_page_names_exists(page: Path) -> None:
    """A moved or renamed module fails here wherever a page names it: in prose, tables and code blocks too."""
    missing = missing_code(module_paths(page.read_text()))
    assert not missing, f"{page.name} names modules that do not exist: {missing}"


def layout_names(text: str) -> list[str]:
    """The files and folders docs/architecture.md's layout table names, each under its row's folder(s)."""
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        first = re.findall(r"`([^`]+)`", cells[0])
        folders = [f for f in first if f.endswith("/")]
        names += [f for f in first if LAYOUT_FILE.fullmatch(f)]  # the row's own folders and files
        if not folders:
            continue
        for code in re.findall(r"`([^`]+)`", cells[1]):
            if LAYOUT_FILE.fullmatch(code):
                names.append("{" + ",".join(folders) + "}" + code if len(folders) > 1 else folders[0] + code)
    return names


def test_the_layout_table_names_what_is_there() -> None:
    text = (ROOT / "docs/architecture.md").read_text()
    names = layout_names(text)
    assert "workers/runtime/jobs.py" in names and "model/presets/{ucf,xd,demo}.json" in names
    missing = [n for n in names if not any(glob.glob(str(ROOT / p)) for p in expand(n))]
    missing = [n for n in missing if not glob.glob(str(ROOT / n.split("/", 1)[1]))]  # a path from the root
    assert not missing, f"docs/architecture.md's layout table names what does not exist: {missing}"


def test_the_reference_checks_catch_mistakes(tmp_path: Path) -> None:
    assert resolves("workers.analyzer.Analyzer") and resolves("workers.analyzer.Analyzer.analyze")
    assert resolves("vad.cli.settings_docs") and resolves("workers.jobs.analyze_job")
    assert not resolves("workers.pipeline.Analyzer") and not resolves("workers.analyzer.Analyser")
    assert not resolves("workers.analyzer.Analyzer.nope")
    assert slug("The worker process model, and why") == "the-worker-process-model-and-why"
    assert slug("Using the authors' checkpoints") == "using-the-authors-checkpoints"
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## Top\n\n```\n# not a heading\n```\n")
    assert anchors(page) == {"top", "top-1"}
    assert expand("model/presets/{ucf,xd}.json") == ["model/presets/ucf.json", "model/presets/xd.json"]
    text = ("see workers/queue/jobs.py and (workers/runtime/{jobs,gpus}.py); run `python -m workers.queue.healthcheck`"
            "\n```bash\npython -m workers.runtime.healthcheck\n```\nnot x/workers/y.py")
    assert module_paths(text) == ["workers/queue/jobs.py", "workers/runtime/jobs.py", "workers/runtime/gpus.py",
                                  "workers.queue.healthcheck", "workers.runtime.healthcheck"]
    assert missing_code(module_paths(text)) == ["workers/queue/jobs.py", "workers.queue.healthcheck"]
    table = "## Layout\n\n| `workers/` | `analyzer.py`, `events.py` (x), `Analyzer` |\n| `a/`, `b/` | `c.py` |\n"
    assert layout_names(table) == ["workers/", "workers/analyzer.py", "workers/events.py", "a/", "b/", "{a/,b/}c.py"]
    assert layout_names("## Layout\n\n| `workers/jobs.py` | alias |\n") == ["workers/jobs.py"]


def rules_table(text: str) -> dict[str, tuple[set[str], set[str]]]:
    """The rows of docs/architecture.md's package table: package → (ours it may import, what it must not)."""
    section = text.split("## Packages and their rules", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            allowed = set(re.findall(r"`([\w.]+)`", cells[2])) if "everything" not in cells[2] else {"*"}
            banned = {name.strip() for name in cells[3].split(",") if name.strip() not in ("", "—")}
            rows[cells[0].strip("`")] = (allowed, banned)
    return rows


def test_the_architecture_docs_mirror_the_boundary_rules() -> None:
    from tests.unit.test_boundaries import RULES

    documented = rules_table((ROOT / "docs/architecture.md").read_text())
    from tests.unit.test_boundaries import EVERYTHING

    expected = {package: ({"*"} if allowed == EVERYTHING else allowed, banned)
                for package, (allowed, banned) in RULES.items()}
    assert documented == expected, "docs/architecture.md's package table differs from test_boundaries.RULES"


def test_the_version_is_one_value_in_pyproject_and_the_docs() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    upgrading = (ROOT / "docs" / "service.md").read_text().split("## Upgrading", 1)[1]
    stated = re.search(r"This is release (\d+\.\d+\.\d+)", upgrading)
    assert stated is not None, "docs/service.md's Upgrading section no longer names this release"
    assert stated.group(1) == version
    minor = ".".join(version.split(".")[:2])
    # the upgrade notes speak of this release and of older ones only
    assert f"{minor} enqueues" in upgrading and f"still run on {minor}" in upgrading


def test_the_api_tables_are_generated_from_the_code(tmp_path: Path) -> None:
    """docs/service.md lists every error code (streams' and storage's too) and each route's statuses; a stale
    table is named by the check and fixed by --write."""
    from service.api.errors import error_codes

    text = (ROOT / "docs" / "service.md").read_text()
    for code, (status, _) in error_codes().items():
        assert f"| `{code}` | {status} |" in text, code
    assert "| `POST /v1/streams` | 201 | 400, 401, 422, 503 |" in text
    assert "| `GET /v1/jobs/{job_id}/result` | 200 | 401, 404, 409, 503 |" in text
    for page in DOCS:
        shutil.copy(page, tmp_path / page.name)
    service = tmp_path / "service.md"
    service.write_text(service.read_text().replace("| `streams_disabled` |", "| `streams_off` |"))
    found = problems(tmp_path)
    assert len(found) == 1 and "service.md" in found[0] and WRITE_COMMAND in found[0]
    assert problems(tmp_path, write=True) == [] and "| `streams_disabled` | 405 |" in service.read_text()
    service.write_text(service.read_text().replace("<!-- api:error-codes -->", "<!-- api:error-kodes -->"))
    found = "\n".join(problems(tmp_path))
    assert "unknown table error-kodes" in found and "table error-codes is in no docs file" in found
