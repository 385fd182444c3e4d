"""``vad adapt`` and ``vad bundles``: a camera's own DSANet from its verdicts, its lineage, promotion and rollback."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from vad.cli.app import app, fail, invalid_settings, setting_default


def _worker_settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from workers.settings import WorkerSettings

    try:
        return WorkerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise invalid_settings(exc) from exc


@app.command("adapt")
def adapt(
    stream_id: Annotated[str, typer.Argument(help="The stream (camera) to adapt, as GET /v1/streams lists it.")],
    epochs: Annotated[int | None, typer.Option(
        min=1, max=1000, help=f"Fine-tuning epochs ({setting_default('adapt_epochs')}).")] = None,
    lr: Annotated[float | None, typer.Option(
        min=0.0, help=f"Learning rate ({setting_default('adapt_lr')}).")] = None,
    holdout: Annotated[float | None, typer.Option(min=0.01, max=0.99, help=f"Share of verdicts and normal windows "
                                                  f"held out ({setting_default('adapt_holdout')}).")] = None,
    device: Annotated[str | None, typer.Option(help=f"cpu or cuda ({setting_default('device')}).")] = None,
) -> None:
    """Fine-tune the stream's own DSANet from its verdicts, here, as the worker job of POST
    /v1/streams/{id}/adapt does: false alarms as normal videos, true alerts as abnormal ones, plus the stream's
    saved normal windows; from its active bundle (or the deployment's model), on saved CLIP features only (no
    video is decoded). The candidate is compared with its parent on held-out verdicts and normal windows: a better
    one runs in shadow on the stream's worker and replaces the active model once the shadow rule holds (docs/
    alerts.md); a worse one is recorded as rejected. Reads Redis, the storage and the models of the VAD_*
    settings."""
    import redis

    from model.bundle import load_bundle
    from model.exceptions import ModelError
    from workers.exceptions import WorkerError
    from workers.runtime.adapt import adapt_stream
    from workers.runtime.context import JobContext

    settings = _worker_settings(adapt_epochs=epochs, adapt_lr=lr, adapt_holdout=holdout, device=device)
    ctx = JobContext(settings, redis.Redis.from_url(settings.redis_url, socket_timeout=30))
    paths = ctx.model_paths() if settings.bundle or settings.models else {}
    if not paths:
        raise fail("no model configured: set VAD_BUNDLE (or VAD_MODELS) as for the workers")
    try:
        entry = adapt_stream(ctx, stream_id, base_of=lambda name: load_bundle(paths[name]))
    except (WorkerError, ModelError, ValueError, KeyError) as exc:
        raise fail(str(exc)) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise fail(f"Redis at {settings.redis_url} does not answer: {exc}") from exc
    m = entry.metrics
    typer.echo(f"bundle {entry.id} ({entry.size_bytes / 1e6:.2f} MB): {entry.state}: {entry.reason}")
    typer.echo(f"held out {m.true_alerts} true alerts, {m.false_alarms} false alarms, {m.normal_windows} normal "
               f"windows; trained on {entry.training['samples']} samples, {entry.training['iterations']} iterations "
               f"in {entry.training['seconds']} s")
    if entry.state == "rejected":
        raise typer.Exit(code=1)


@app.command("bundles")
def bundles(
    stream_id: Annotated[str, typer.Argument(help="The stream (camera).")],
    promote: Annotated[bool, typer.Option("--promote", help="Make the shadow bundle active (the shadow rule).")
                       ] = False,
    force: Annotated[bool, typer.Option("--force", help="With --promote: even though the rule does not hold.")
                     ] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="Make the active bundle's parent active again.")
                        ] = False,
) -> None:
    """Print a stream's per-camera bundles as JSON (active, shadow, last adaptation, lineage), after promoting the
    shadow or rolling back when asked; the stream's worker follows within a second, without a restart."""
    import redis
    from pydantic import ValidationError

    from vad.bundles import BundleBook
    from vad.exceptions import BundleRefused
    from vad.keys import Keys
    from vad.settings import QueueSettings

    if promote and rollback:
        raise fail("--promote and --rollback exclude each other")
    try:
        settings = QueueSettings()
    except ValidationError as exc:
        raise invalid_settings(exc) from exc
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    key = Keys(settings.key_prefix).stream_bundles(stream_id)
    try:
        book = BundleBook.read(conn.hgetall(key))
        if promote or rollback:
            updates = book.promote(settings.adapt_shadow_min_snippets, force) if promote else book.rollback()
            if not book.apply(conn, key, updates):
                raise fail("the stream's bundles changed meanwhile; run the command again")
            book = BundleBook.read(conn.hgetall(key))
    except BundleRefused as exc:
        raise fail(str(exc)) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise fail(f"Redis at {settings.redis_url} does not answer: {exc}") from exc
    typer.echo(json.dumps({"active": book.active or None, "shadow": book.shadow or None,
                           "adaptation": book.adaptation.model_dump() if book.adaptation else None,
                           "bundles": [e.model_dump() for e in book.entries()]}, indent=1))
