"""docker-compose.yml and the Dockerfiles, checked by reading (no Docker engine runs here)."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile_lines(name: str) -> list[str]:
    return [line.strip() for line in (ROOT / "docker" / name).read_text().splitlines()]


def test_compose_services_and_their_files() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"redis", "api", "worker"}
    for name in ("api", "worker"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
        assert services[name]["environment"]["VAD_REDIS_URL"] == "redis://redis:6379/0"
        assert "uploads:/data/uploads" in services[name]["volumes"]
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    for service in services.values():
        assert "healthcheck" in service


def test_redis_persists_and_never_evicts() -> None:
    command = COMPOSE["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_worker_reserves_a_gpu_and_mounts_models() -> None:
    worker = COMPOSE["services"]["worker"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "./models:/models:ro" in worker["volumes"] and (ROOT / "models").is_dir()
    assert worker["environment"]["VAD_DEVICE"] == "cuda"


@pytest.mark.parametrize("name", ["api.Dockerfile", "worker.Dockerfile"])
def test_dockerfiles_copy_what_exists_and_run_as_non_root(name: str) -> None:
    lines = dockerfile_lines(name)
    for line in lines:
        if line.startswith("COPY"):
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    users = [line.split()[1] for line in lines if line.startswith("USER")]
    assert users and users[-1] != "root"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in re.findall(r'pip install "\.\[(\w+)\]"', "\n".join(lines)):
        assert extra in extras


def test_api_image_installs_no_torch() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any(dep.startswith(("torch", "open_clip", "av", "decord")) for dep in extras["api"])
    assert "torch" not in "\n".join(dockerfile_lines("api.Dockerfile")).replace("no torch", "")


def test_commands_in_images_exist() -> None:
    assert importlib.util.find_spec("workers.queue.healthcheck") is not None
    assert importlib.util.find_spec("service.app") is not None
    worker = "\n".join(dockerfile_lines("worker.Dockerfile"))
    assert 'CMD ["vad", "worker"' in worker and "cu12" in worker  # a CUDA build of torch
