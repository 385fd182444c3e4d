"""``vad export-reviews``: the events people gave verdicts, as a training folder ``vad train`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vad.cli.app import app, fail, invalid_settings
from vad.cli.commands.training import PresetOption, _config


@app.command("export-reviews")
def export_reviews(
    preset: PresetOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write (new or empty).")],
    context_s: Annotated[float, typer.Option(
        min=0.0, max=120.0, help="Seconds of a job's snippets kept before and after each event.")] = 10.0,
) -> None:
    """Write every event with a verdict as VadCLIP-format features (false alarms normal, true alerts abnormal
    with the event's class), with the lists and ground truth `vad train --features-root DIR` reads. Reads Redis
    and the storage of the VAD_* settings; decodes no video."""
    import redis
    from pydantic import ValidationError

    from service.events import EventIndex
    from vad.exceptions import StorageError
    from vad.keys import Keys
    from vad.settings import QueueSettings
    from vad.storage import open_storage
    from vad.storage.features import FeatureStore
    from workers.reviews import export_reviews as export

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise fail(f"{output} exists and is not an empty folder; name a new one")
    try:
        settings = QueueSettings()
    except ValidationError as exc:
        raise invalid_settings(exc) from exc
    cfg = _config(preset)
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    keys = Keys(settings.key_prefix)
    index = EventIndex(conn, keys)

    def result_of(job_id: str) -> str | None:
        raw = conn.get(keys.result(job_id))
        return raw.decode() if isinstance(raw, bytes) else raw

    try:
        records = index.reviewed()
        if not records:
            raise fail("no event has a verdict yet: give some with PUT /v1/events/{id}/verdict")
        report = export(records, FeatureStore(open_storage(settings)), cfg, output, result_of=result_of,
                        raw_event=index.raw_event, context_s=context_s)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise fail(f"Redis at {settings.redis_url} does not answer: {exc}") from exc
    except StorageError as exc:
        raise fail(str(exc)) from exc
    for item in report.skipped:
        typer.echo(f"skipped {item['id']}: {item['why']}", err=True)
    alerts = sum(1 for e in report.exported if e["verdict"] == "true_alert")
    typer.echo(f"wrote {len(report.exported)} reviewed events to {output} ({alerts} true alerts, "
               f"{len(report.exported) - alerts} false alarms; {len(report.skipped)} skipped)")
    if not report.exported:
        raise typer.Exit(code=1)
