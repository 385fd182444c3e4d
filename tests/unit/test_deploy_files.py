"""docker-compose.yml and the Dockerfiles, checked by reading (no Docker engine runs here)."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
import typing
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
# Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}.
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def dockerfile_lines(name: str) -> list[str]:
    return [line.strip() for line in (ROOT / "docker" / name).read_text().splitlines()]


def env_example() -> dict[str, str]:
    """The variables of .env.example (what compose reads from .env), with their example values."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = [line.partition("=") for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return {name.strip(): value.strip() for name, _, value in pairs}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """``value`` as compose resolves it from ``variables`` (its environment and .env); raises like compose does."""

    def resolve(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in variables and (variables[name] != "" or op in (None, "-", "?"))
        if present:
            return variables[name]
        if op in (":?", "?"):
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return arg or ""

    return VARIABLE.sub(resolve, value)


def service_env(name: str, variables: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), variables) for key, value in COMPOSE["services"][name]["environment"].items()}


def filled_env_example() -> dict[str, str]:
    """.env.example with every empty required secret filled in, as an operator's .env would be."""
    return {name: value or f"{name.lower()}-0123456789abcdef" for name, value in env_example().items()}


def secret_variables() -> set[str]:
    """Compose variables that carry a secret: by name, or because they feed a secret setting or credential."""
    from pydantic import SecretStr

    from vad.cli.settings_docs import variables
    from workers.settings import WorkerSettings

    secret_keys = {"AWS_SECRET_ACCESS_KEY"}
    for field_name, field in WorkerSettings.model_fields.items():
        if SecretStr in typing.get_args(field.annotation) or field.annotation is SecretStr:
            secret_keys.update(variables(WorkerSettings, field_name, field))
    names = {m["name"] for m in VARIABLE.finditer(COMPOSE_TEXT) if re.search(r"SECRET|PASSWORD|TOKEN", m["name"])}
    for service in COMPOSE["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if key in secret_keys:
                names.update(m["name"] for m in VARIABLE.finditer(str(value)))
    return names


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


def test_worker_mounts_models() -> None:
    worker = COMPOSE["services"]["worker"]
    assert "./bundles:/models:ro" in worker["volumes"] and (ROOT / "bundles").is_dir()
    assert worker["environment"]["VAD_DEVICE"] == "cuda"


def docker_cmd(name: str) -> list[str]:
    cmds = [line for line in dockerfile_lines(name) if line.startswith("CMD ")]
    assert len(cmds) == 1
    return json.loads(cmds[0].removeprefix("CMD "))


def test_the_worker_container_takes_every_gpu_and_runs_one_process_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.runtime import gpus
    from workers.runtime.supervisor import Supervisor
    from workers.settings import WorkerSettings

    worker = COMPOSE["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # `count: 1` gives every container the host's first GPU; the container takes all of them, or the ones named.
    assert device.get("count") == "all" or device.get("device_ids")
    # No --concurrency anywhere: the supervisor's default is VAD_WORKERS_PER_GPU processes per GPU of VAD_GPUS.
    command = worker.get("command") or docker_cmd("worker.Dockerfile")
    assert command[:2] == ["vad", "worker"] and "--concurrency" not in command and "-c" not in command
    assert {"VAD_GPUS", "VAD_WORKERS_PER_GPU"} <= set(worker["environment"])

    # That command's supervisor, in the container's environment, on a host with four GPUs (the NVIDIA runtime sets
    # NVIDIA_VISIBLE_DEVICES, not CUDA_VISIBLE_DEVICES, and nvidia-smi lists the GPUs the container got).
    for key, value in service_env("worker", filled_env_example()).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpus.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(gpus, "_nvidia_smi", lambda cmd: "0\n1\n2\n3\n")
    supervisor = Supervisor(WorkerSettings())
    assert supervisor.concurrency == 4
    assert [gpus.gpu_for_slot(slot, supervisor.gpus) for slot in range(4)] == ["0", "1", "2", "3"]
    monkeypatch.setenv("VAD_WORKERS_PER_GPU", "2")
    assert Supervisor(WorkerSettings()).concurrency == 8


def test_no_secret_has_a_default_and_compose_refuses_to_start_without_one() -> None:
    secrets = secret_variables()
    assert {"VAD_S3_SECRET_KEY", "VAD_CALLBACK_SECRET"} <= secrets
    for match in VARIABLE.finditer(COMPOSE_TEXT):
        if match["name"] in secrets:
            assert match["op"] == ":?", f"{match[0]}: a secret must be required (${{NAME:?message}}), never defaulted"
    filled = filled_env_example()
    interpolate(COMPOSE_TEXT, filled)  # an .env made from .env.example starts the stack
    for secret in secrets:
        unset = {name: value for name, value in filled.items() if name != secret}
        for variables in (unset, {**unset, secret: ""}):
            with pytest.raises(ValueError, match=secret):
                interpolate(COMPOSE_TEXT, variables)


def test_env_example_lists_every_required_variable_and_nothing_compose_ignores() -> None:
    example = env_example()
    used = {match["name"] for match in VARIABLE.finditer(COMPOSE_TEXT)}
    required = {match["name"] for match in VARIABLE.finditer(COMPOSE_TEXT) if match["op"] in (":?", "?")}
    assert required <= set(example), f"missing from .env.example: {sorted(required - set(example))}"
    assert set(example) <= used, f"not read by docker-compose.yml: {sorted(set(example) - used)}"
    assert all(example[name] == "" for name in required)  # no example secret to be copied into a deployment
    for ignore_file in (".gitignore", ".dockerignore"):  # the filled-in .env never reaches git or an image
        assert ".env" in (ROOT / ignore_file).read_text().splitlines()


def test_the_api_and_the_workers_get_the_same_shared_settings() -> None:
    from service.settings import ServiceSettings
    from vad.cli.settings_docs import variables
    from vad.settings import QueueSettings
    from workers.settings import WorkerSettings

    def names(cls: type, fields: typing.Iterable[str]) -> set[str]:
        return {v for name in fields for v in variables(cls, name, cls.model_fields[name])}

    services = COMPOSE["services"]
    for service, cls in (("api", ServiceSettings), ("worker", WorkerSettings)):
        unknown = {key for key in services[service]["environment"] if key.startswith("VAD_")}
        unknown -= names(cls, cls.model_fields)
        assert not unknown, f"{service} sets variables no setting reads: {sorted(unknown)}"
    per_container = {"VAD_STORAGE_DIR"}  # with VAD_STORAGE_URL, each container's own scratch space
    shared = names(ServiceSettings, QueueSettings.model_fields) - per_container
    api, worker = ({key: value for key, value in services[name]["environment"].items() if key in shared}
                   for name in ("api", "worker"))
    assert api == worker
    # The workers send the callbacks and stream webhooks: they sign with it, so they must get it.
    assert worker["VAD_CALLBACK_SECRET"].startswith("${VAD_CALLBACK_SECRET:?")


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


def pinned_versions() -> dict[str, str]:
    lines = (ROOT / "requirements" / "cpu-dev.txt").read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if re.match(r"^[\w.-]+==", line))


def test_worker_image_installs_the_tested_torch_in_its_cuda_build() -> None:
    text = (ROOT / "docker" / "worker.Dockerfile").read_text()
    pins = pinned_versions()
    # No version of its own: the image's torch and torchvision are the pins the project is tested with, read at
    # build time with the grep below (run here on the same file).
    assert not re.search(r"torch(vision)?==\d|TORCH_VERSION|TORCHVISION_VERSION", text)
    assert "COPY requirements/cpu-dev.txt /tmp/pins.txt" in text
    pattern = re.search(r"grep -E '([^']+)' /tmp/pins\.txt > /opt/torch-pins\.txt", text)
    assert pattern is not None
    selected = [line for line in (ROOT / "requirements" / "cpu-dev.txt").read_text().splitlines()
                if re.search(pattern[1], line)]
    assert selected == [f"torch=={pins['torch']}", f"torchvision=={pins['torchvision']}"]
    assert "pip install --index-url ${TORCH_INDEX} -r /opt/torch-pins.txt" in text
    assert 'pip install -c /opt/torch-pins.txt ".[worker]"' in text  # the extra cannot move torch
    # torchcodec (the worker extra, >= 0.17) needs torch >= 2.11.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("torchcodec>=0.17") for dep in extras["worker"])
    assert tuple(int(part) for part in pins["torch"].split(".")[:2]) >= (2, 11)
    # The CUDA build of the wheels is the base image's CUDA release (cu130 <-> nvidia/cuda:13.0.x).
    index = re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cu(\d+)(\d)$", text, re.M)
    image = re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.(\d+)\.\d+-\w+-ubuntu[\d.]+$", text, re.M)
    assert index is not None and image is not None
    assert (index[1], index[2]) == (image[1], image[2])


def test_worker_image_has_ffmpeg_shared_libraries_for_torchcodec() -> None:
    lines = dockerfile_lines("worker.Dockerfile")
    text = "\n".join(lines)
    assert "COPY scripts/ensure-ffmpeg.sh /tmp/ensure-ffmpeg.sh" in text
    assert (ROOT / "scripts" / "ensure-ffmpeg.sh").is_file()
    install = next(i for i, line in enumerate(lines) if "bash /tmp/ensure-ffmpeg.sh" in line)
    assert lines[install + 1].startswith("&& ldconfig -p | grep -q 'libavcodec")  # the build fails without them
    user = next(i for i, line in enumerate(lines) if line.startswith("USER"))
    assert install < user  # installed as root (the script installs with apt-get only then)


def test_compose_sets_the_stream_capacity_and_one_allow_list_for_api_and_workers() -> None:
    api, worker = COMPOSE["services"]["api"]["environment"], COMPOSE["services"]["worker"]["environment"]
    assert api["VAD_STREAM_ALLOWLIST"] == worker["VAD_STREAM_ALLOWLIST"] == "${VAD_STREAM_ALLOWLIST:-}"
    assert worker["VAD_STREAMS_PER_WORKER"].startswith("${VAD_STREAMS_PER_WORKER:-")
    for key in ("VAD_STREAM_RETENTION_S", "VAD_STREAM_TIMELINE_RETENTION_S"):
        assert api[key] == worker[key]  # the API shows what the workers keep
