"""``vad demo``: the whole service end to end on a synthetic demo model, or on real weights when configured.

Builds (once, cached) a DSANet bundle trained on synthetic videos with a random CLIP, starts the local
stack, uploads held-out synthetic videos over HTTP, prints each result's events next to the truth, writes
PNG timelines and prints the web page's URL.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vad.cli.app import app, configured_redis_url, fail, offline_hub

if TYPE_CHECKING:
    from vad.cli.stack import LocalStack
    from vad.schema import AnalysisResult
    from workers.demo.build import StepFn
    from workers.demo.recipe import DemoRecipe
    from workers.synthetic import SyntheticVideo


def _progress_bars() -> StepFn:
    """A ``step(stage, done, total)`` callback drawing one tqdm bar per stage on stderr."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def step(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:<20}", unit="video", file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return step


def _demo_bundle(recipe: DemoRecipe, cache_dir: Path | None, rebuild: bool) -> Path:
    from workers.demo.cache import cached_bundle, default_cache_dir, ensure_demo_bundle
    from workers.exceptions import DemoBuildFailed

    cache_dir = cache_dir or default_cache_dir()
    if rebuild or cached_bundle(recipe, cache_dir) is None:
        typer.echo(f"building the synthetic demo model (once; cached in {cache_dir}): synthetic videos, features "
                   "from a random CLIP, DSANet trained on video-level labels ...", err=True)
    try:
        built = ensure_demo_bundle(recipe, cache_dir, rebuild=rebuild, step=_progress_bars(), show_training=True,
                                   on_wait=lambda: typer.echo("another process is building it into the same cache: "
                                                              "waiting for that one", err=True),
                                   notify=lambda line: typer.echo(line, err=True))
    except DemoBuildFailed as exc:
        raise fail(str(exc)) from exc
    how = f"built in {built.seconds:.0f}s" if built.built else "from the cache"
    auc = f", validation frame AUC {built.validation_auc:.3f}" if built.validation_auc is not None else ""
    typer.echo(f"synthetic demo model {built.path} ({how}{auc})", err=True)
    return built.path


def _analyse(url: str, stack_alive: Callable[[], bool], videos: list[SyntheticVideo], timeout_s: float
             ) -> list[AnalysisResult]:
    """Upload every video, then wait for each result in order."""
    from tqdm import tqdm

    from vad.cli.demo.client import DemoClient
    from vad.exceptions import DemoClientError

    client = DemoClient(url)
    try:
        client.wait_ready(180, stack_alive)
        jobs = [client.upload(video.path) for video in videos]
        results = []
        for video, job_id in tqdm(list(zip(videos, jobs, strict=True)), desc="analysing", unit="video",
                                  file=sys.stderr, leave=False):
            job = client.wait(job_id, timeout_s)
            if job["status"] != "finished":
                raise DemoClientError(f"{video.path.name}: job {job['status']}: {job.get('error')}")
            results.append(client.result(job_id))
        return results
    finally:
        client.close()


def _report(results: list[AnalysisResult], videos: list[SyntheticVideo], out: Path) -> None:
    """Print each result next to its truth, write its JSON and PNG, then the totals."""
    from vad.cli.plot import plot_timeline
    from workers.demo.check import check_video, describe, frame_auc

    matched = 0
    for result, video in zip(results, videos, strict=True):
        check = check_video(result, video)
        matched += check.matched
        stem = video.path.stem
        (out / f"{stem}.json").write_text(result.model_dump_json(by_alias=True, indent=1))
        plot = plot_timeline(result, out / f"{stem}.png")
        mark = "ok: within 1 s" if check.matched else "MISSED"
        typer.echo(f"{video.path.name}  max score {result.summary.max_score:.2f}  [{mark}]\n"
                   f"    detected: {describe(result.events)}\n    truth:    {describe(check.truth)}\n"
                   f"    plot:     {plot}")
    label = results[0].model.label if results else None
    typer.echo(f"\n{matched}/{len(videos)} videos: detected events within 1 s of the truth; frame AUC "
               f"{frame_auc(results, videos):.3f}" + (f"  [{label}]" if label else ""))
    if results and not results[0].model.demo:
        typer.echo("(these weights were not trained on the synthetic events: missing them says nothing about "
                   "real footage)")


def _stack(host: str, port: int, env: dict[str, str], log: Path) -> LocalStack:
    """The local stack of the demo, its output in ``log``: its own embedded Redis, or (without redis-server) the
    configured Redis with a queue and key prefix of its own."""
    from vad.cli.stack import LocalStack

    redis_url = configured_redis_url()
    if shutil.which("redis-server") is None and redis_url:
        env = {**env, "VAD_QUEUE_NAME": "vad-demo", "VAD_KEY_PREFIX": "vad-demo:"}
    else:
        redis_url = None
    return LocalStack(host=host, port=port, workers=1, redis_url=redis_url, env=env, log_path=str(log))


@app.command("demo")
def demo(
    port: Annotated[int, typer.Option(help="Port of the API and the web page.")] = 8000,
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the videos, result JSON and PNG plots.")
                   ] = Path("out/demo"),
    videos: Annotated[int, typer.Option(min=1, max=100, help="Held-out synthetic videos to analyse.")] = 10,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Keep serving the web page until Ctrl-C "
                                                                  "(--no-serve: stop after the report).")] = True,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild the demo model even if it is cached.")] = False,
    cache_dir: Annotated[Path | None, typer.Option(envvar="VAD_DEMO_CACHE", help="Cache of the demo model "
                                                   "(default ~/.cache/dsanet-vad/demo).")] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", "-b", envvar="VAD_BUNDLE", help="Run on these real "
                                                "weights instead of the synthetic demo model.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each video's result.")] = 600.0,
) -> None:
    """Show the service end to end: demo model, local stack, synthetic videos analysed over HTTP, plots, web page.

    The first run builds the synthetic demo model (about 2 minutes on 2 CPU cores) and caches it; its results are
    labelled "synthetic demo model". With --bundle or VAD_BUNDLE set, the same run uses those weights instead.
    """
    offline_hub()
    from vad.cli.stack import port_free
    from workers.demo.build import generate
    from workers.demo.recipe import DemoRecipe, plan_videos

    if not port_free(host, port):
        raise fail(f"port {port} on {host} is in use (another `vad serve` or `vad demo`?); pass --port")
    recipe = dataclasses.replace(DemoRecipe(), heldout_videos=videos)
    if bundle is not None:
        if not bundle.is_file():
            raise fail(f"bundle not found: {bundle} (--bundle / VAD_BUNDLE); unset it to use the demo model")
        typer.echo(f"using the configured weights {bundle} (--bundle / VAD_BUNDLE), not the synthetic demo model",
                   err=True)
    model = bundle if bundle is not None else _demo_bundle(recipe, cache_dir, rebuild)
    out.mkdir(parents=True, exist_ok=True)
    held = list(generate(recipe, plan_videos(recipe, "heldout"), out / "videos").values())
    typer.echo(f"wrote {len(held)} held-out synthetic videos (never seen in training) to {out / 'videos'}", err=True)
    env = {"VAD_BUNDLE": str(model.resolve()), "VAD_STORAGE_DIR": str((out / "uploads").resolve()),
           "VAD_MODELS": "{}", "VAD_API_KEYS": ""}
    (out / "service.log").unlink(missing_ok=True)
    _run(_stack(host, port, env, out / "service.log"), held, out, timeout, serve)


def _run(stack: LocalStack, held: list[SyntheticVideo], out: Path, timeout: float, serve: bool) -> None:
    """Start the stack, analyse and report, then serve until Ctrl-C (or stop); the stack is always stopped."""
    from vad.exceptions import DemoClientError, StackError

    def alive() -> bool:
        return all(process.poll() is None for _, process in stack.processes)

    try:
        stack.start()
        typer.echo(f"local stack up at {stack.url} (its logs: {stack.log_path}); uploading {len(held)} videos over "
                   "HTTP ...", err=True)
        _report(_analyse(stack.url, alive, held, timeout), held, out)
        typer.echo(f"\nweb page: {stack.url}/  (upload a video from {out / 'videos'})")
        if serve:
            typer.echo("serving until Ctrl-C")
            raise typer.Exit(stack.wait())
    except (StackError, DemoClientError) as exc:
        raise fail(f"{exc} (the service's logs: {stack.log_path})") from exc
    finally:
        stack.stop()
