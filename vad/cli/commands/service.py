"""Service commands: the RQ worker pool, the API server and the whole local stack."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

import typer

from vad.cli.app import app, configured_redis_url, fail, invalid_settings, offline_hub


class LogLevel(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


@app.command("worker")
def worker(
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", "-c", min=1, help="Worker processes (default: one per GPU times VAD_WORKERS_PER_GPU, "
                                           "each given its GPU; one without GPUs).")] = None,
    burst: Annotated[bool, typer.Option("--burst", help="Exit when the queue is empty (for batch jobs and tests).")
                     ] = False,
) -> None:
    """Start RQ workers for the analysis queue (settings from VAD_* variables: docs/service.md, Settings).

    A supervisor that never imports torch spawns the worker processes, restarts any that dies and
    retries the jobs of dead workers; each worker process loads its models once and keeps them.
    """
    offline_hub()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(levelname)s %(message)s")
    from pydantic import ValidationError

    from workers.runtime.supervisor import Supervisor
    from workers.settings import WorkerSettings

    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        raise invalid_settings(exc) from exc
    code = Supervisor(settings, concurrency, ["--burst"] if burst else []).run()
    raise typer.Exit(code)


@app.command("api")
def api(
    host: Annotated[str, typer.Option(help="Address the API listens on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the API.")] = 8000,
    log_level: Annotated[LogLevel, typer.Option(help="uvicorn's log level (warning hides the access log).")
                         ] = LogLevel.info,
) -> None:
    """Serve the API alone (uvicorn), against the Redis and storage of the VAD_* settings.

    Warns at start-up when it listens beyond loopback and VAD_API_KEYS is empty.
    """
    from pydantic import ValidationError

    from service.server import run
    from service.settings import ServiceSettings

    try:
        settings = ServiceSettings()
    except ValidationError as exc:
        raise fail(f"invalid VAD_* settings: {exc}") from exc
    run(host, port, settings, log_level.value)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes.")] = 1,
    ready_timeout: Annotated[float, typer.Option(
        min=1, help="Seconds to wait for the stack to be ready (a worker with its models loaded).")] = 300.0,
) -> None:
    """Run a local stack: Redis (REDIS_URL / VAD_REDIS_URL, else an embedded redis-server), the API and workers.

    The settings, the model bundles, the port and a configured Redis are checked before anything starts; the stack
    is announced once /readyz answers. Ctrl-C stops everything cleanly.
    """
    from vad.cli.stack import LocalStack
    from vad.exceptions import StackError
    from vad.net.redact import redact_url

    redis_url = configured_redis_url()
    _check_serve(host, port, redis_url)
    stack = LocalStack(host=host, port=port, workers=workers, redis_url=redis_url)
    try:
        stack.start()
        typer.echo(f"waiting for the workers to load their models (up to {ready_timeout:.0f} s) ...", err=True)
        stack.wait_ready(ready_timeout)
    except StackError as exc:
        stack.stop()
        raise fail(f"{exc}; everything started was stopped (the parts' own output is above)") from exc
    except BaseException:
        stack.stop()
        raise
    typer.echo(f"dsanet-vad is up: API {stack.url} (docs {stack.url}/docs), Redis {redact_url(stack.redis_url or '')}, "
               f"{workers} worker process(es). Ctrl-C stops everything.")
    try:
        code = stack.wait()
    finally:
        stack.stop()
    raise typer.Exit(code)


def _check_serve(host: str, port: int, redis_url: str | None) -> None:
    """What `vad serve` needs, checked before it starts anything: valid settings, readable model bundles, a free
    port and, when one is configured, a Redis that answers. Each failure is one error line (exit 2)."""
    from pydantic import ValidationError

    from model.bundle import read_bundle_metadata
    from model.exceptions import BundleError
    from service.settings import ServiceSettings
    from vad.cli.stack import port_free
    from vad.net.redact import redact_url
    from workers.exceptions import ConfigurationError
    from workers.runtime.context import model_paths
    from workers.settings import WorkerSettings

    try:
        ServiceSettings()
        paths = model_paths(WorkerSettings())
    except ValidationError as exc:
        raise invalid_settings(exc) from exc
    except ConfigurationError as exc:
        raise fail(str(exc)) from exc
    for name, path in paths.items():
        try:
            read_bundle_metadata(path)
        except BundleError as exc:
            source = "VAD_BUNDLE" if name == "default" else f"VAD_MODELS[{name!r}]"
            raise fail(f"{source}: {exc}") from exc
    if not port_free(host, port):
        raise fail(f"port {port} on {host} is in use (another `vad serve` or `vad demo`?); pass --port")
    if redis_url is not None and not _redis_answers(redis_url):
        raise fail(f"the configured Redis ({redact_url(redis_url)}, from VAD_REDIS_URL or REDIS_URL) does not answer; "
                   "start it, or unset both variables to run an embedded redis-server")


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping())
    except (redis.RedisError, OSError, ValueError):
        return False
