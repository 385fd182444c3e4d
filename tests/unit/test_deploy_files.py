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
    assert set(services) == {"redis", "seaweedfs", "storage-init", "api", "worker"}
    for name in ("api", "worker", "storage-init"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    for name in ("api", "worker"):
        assert services[name]["environment"]["VAD_REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["storage-init"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        assert "healthcheck" in service or name == "storage-init"  # a one-shot job


def test_api_and_workers_share_only_redis_and_the_object_store() -> None:
    services = COMPOSE["services"]
    api, worker, store = services["api"], services["worker"], services["seaweedfs"]
    mounts = {name: {v.split(":")[0] for v in services[name].get("volumes", [])} for name in ("api", "worker")}
    assert not mounts["api"] & mounts["worker"]  # no shared upload volume: workers can run on any host
    assert "uploads" not in COMPOSE.get("volumes", {})
    s3_port = store["command"][store["command"].index("-s3.port=8333")].split("=")[1]
    for service in (api, worker, services["storage-init"]):
        env = service["environment"]
        assert env["VAD_STORAGE_URL"].startswith("s3://") and env["VAD_STORAGE_URL"].endswith("/uploads")
        assert env["VAD_STORAGE_ENDPOINT_URL"] == f"http://seaweedfs:{s3_port}"
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key] == store["environment"][key]  # the identity the store was started with
    assert store["image"].startswith("chrislusf/seaweedfs") and "-s3" in store["command"]
    assert f"http://127.0.0.1:{s3_port}/healthz" in store["healthcheck"]["test"]
    assert services["storage-init"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"


def test_the_bucket_init_command_names_what_exists() -> None:
    from vad.storage import S3Storage

    command = COMPOSE["services"]["storage-init"]["command"]
    assert command[:2] == ["python", "-c"] and "S3Storage.from_settings(QueueSettings()).ensure_bucket()" in command[2]
    assert callable(S3Storage.ensure_bucket) and callable(S3Storage.from_settings)


def test_redis_persists_and_never_evicts() -> None:
    command = COMPOSE["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_worker_reserves_a_gpu_and_mounts_models() -> None:
    worker = COMPOSE["services"]["worker"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "./bundles:/models:ro" in worker["volumes"] and (ROOT / "bundles").is_dir()
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
    assert importlib.util.find_spec("workers.runtime.healthcheck") is not None
    assert importlib.util.find_spec("service.app") is not None
    worker = "\n".join(dockerfile_lines("worker.Dockerfile"))
    assert 'CMD ["vad", "worker"' in worker and "cu12" in worker  # a CUDA build of torch


def test_compose_sets_the_stream_capacity_and_one_allow_list_for_api_and_workers() -> None:
    api, worker = COMPOSE["services"]["api"]["environment"], COMPOSE["services"]["worker"]["environment"]
    assert api["VAD_STREAM_ALLOWLIST"] == worker["VAD_STREAM_ALLOWLIST"] == "${VAD_STREAM_ALLOWLIST:-}"
    assert worker["VAD_STREAMS_PER_WORKER"].startswith("${VAD_STREAMS_PER_WORKER:-")
    for key in ("VAD_STREAM_RETENTION_S", "VAD_STREAM_TIMELINE_RETENTION_S"):
        assert api[key] == worker[key]  # the API shows what the workers keep
