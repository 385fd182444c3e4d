"""Service commands: the RQ worker pool and the whole local stack."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from vad.cli.app import app, configured_redis_url, fail, offline_hub


@app.command("worker")
def worker(
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", "-c", min=1, help="Worker processes (default: one per GPU times VAD_WORKERS_PER_GPU, "
                                           "each given its GPU; one without GPUs).")] = None,
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty (for batch jobs and tests).")] = False,
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
        raise fail(f"invalid VAD_* settings: {exc}") from exc
    code = Supervisor(settings, concurrency, ["--burst"] if burst else []).run()
    raise typer.Exit(code)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes.")] = 1,
) -> None:
    """Run a local stack: Redis (REDIS_URL / VAD_REDIS_URL, else an embedded redis-server), the API and workers.

    Ctrl-C stops everything cleanly.
    """
    from vad.cli.stack import LocalStack
    from vad.exceptions import StackError

    stack = LocalStack(host=host, port=port, workers=workers, redis_url=configured_redis_url())
    try:
        stack.start()
    except StackError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"dsanet-vad is up: API {stack.url} (docs {stack.url}/docs), Redis {stack.redis_url}, "
               f"{workers} worker process(es). Ctrl-C stops everything.")
    try:
        code = stack.wait()
    finally:
        stack.stop()
    raise typer.Exit(code)
