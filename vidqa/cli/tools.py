"""The other commands: inspect, bench, cache, presets, models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidqa.cli.common import (
    AttnOpt,
    CacheDirOpt,
    DebugOpt,
    DeviceOpt,
    DtypeOpt,
    FpsOpt,
    FramesOpt,
    JsonOpt,
    MaxFramesOpt,
    ModelOpt,
    QuietOpt,
    RemoteCodeOpt,
    RevisionOpt,
    app,
    fail,
    load_engine,
)
from vidqa.errors import UsageError
from vidqa.models import ALIASES, DEFAULT_MODEL
from vidqa.settings import SamplingSettings


@app.command()
def inspect(
    video: Annotated[str, typer.Argument(help="The video to inspect.", show_default=False)],
    keep: Annotated[
        float, typer.Option("--keep", help="VidCom² keep ratio the budgets are computed for.")
    ] = 0.25,
    save: Annotated[Path | None, typer.Option("--save", help="Write a contact sheet PNG here.")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    frames: FramesOpt = None,
    fps: FpsOpt = None,
    max_frames: MaxFramesOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    attn: AttnOpt = "auto",
    revision: RevisionOpt = None,
    trust_remote_code: RemoteCodeOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show per-frame uniqueness and VidCom² budgets (sampling + vision tower only, no generation)."""
    import json

    from vidqa.ui import make_console, say, status, uniqueness_bars

    console = make_console(quiet=quiet)
    try:
        if not 0 < keep <= 1:
            raise UsageError(f"--keep must be in (0, 1] (got {keep})")
        if save is not None and save.suffix.lower() != ".png":
            raise UsageError(f"--save writes a PNG: give a file ending in .png (got {save})")
        SamplingSettings(frames=frames, fps=fps, max_frames=max_frames)  # validates before the model loads
        engine = load_engine(
            console,
            model=model,
            device=device,
            dtype=dtype,
            attn=attn,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )
        with status(console, f"reading {video} and encoding frames"):
            report = engine.inspect(video, keep=keep, frames=frames, fps=fps, max_frames=max_frames)
        if save is not None:
            from vidqa.sheet import save_sheet

            save_sheet(report, save)
    except Exception as exc:  # translated in one place
        fail(exc, debug=debug, console=console)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(
            uniqueness_bars(
                report.frame_times, report.uniqueness, report.weights, report.budgets, report.tokens_per_frame
            )
        )
        share = 100 * report.kept / max(1, report.total)
        console.print(f"{report.kept}/{report.total} visual tokens kept at keep {keep:g} ({share:.1f} %)")
    if save is not None:
        say(console, "saved", str(save))


@app.command()
def bench(
    video: Annotated[str, typer.Argument(help="The video to benchmark on.", show_default=False)],
    question: Annotated[str, typer.Option("--question", "-q", help="The question asked.")] = "What happens?",
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated methods.")
    ] = "none,vidcom2,dycoke",
    keeps: Annotated[str, typer.Option("--keep", help="Comma-separated keep ratios.")] = "1,0.25,0.15",
    repeat: Annotated[int, typer.Option("--repeat", help="Timed rounds after one warm-up round.")] = 3,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Answer length.")] = 32,
    min_new_tokens: Annotated[
        int | None, typer.Option("--min-new-tokens", help="Force at least this many tokens. [default: max]")
    ] = None,
    model: ModelOpt = DEFAULT_MODEL,
    frames: FramesOpt = None,
    fps: FpsOpt = None,
    max_frames: MaxFramesOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    attn: AttnOpt = "auto",
    revision: RevisionOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Latency, tokens and memory of several configurations side by side (interleaved, after a warm-up)."""
    import json

    from vidqa.bench import configurations, run_bench
    from vidqa.ui import bench_table, make_console, say, status

    console = make_console(quiet=quiet)
    try:
        method_list = [m.strip() for m in methods.split(",") if m.strip()]
        try:
            keep_list = [float(k) for k in keeps.split(",") if k.strip()]
        except ValueError:
            raise UsageError(f"--keep expects comma-separated numbers (got {keeps!r})") from None
        configs, skipped = configurations(method_list, keep_list)
        sampling = SamplingSettings(frames=frames, fps=fps, max_frames=max_frames)
        engine = load_engine(
            console,
            model=model,
            device=device,
            dtype=dtype,
            attn=attn,
            revision=revision,
            trust_remote_code=False,
        )
        for note in skipped:
            say(console, "skipped", note)
        with status(console, "benchmarking") as update:
            rows = run_bench(
                engine,
                video,
                question,
                configs,
                sampling=sampling,
                repeat=repeat,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                on_progress=update,
            )
    except Exception as exc:  # translated in one place
        fail(exc, debug=debug, console=console)
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "video": video,
                    "model": engine.model_name,
                    "device": str(engine.device),
                    "dtype": str(engine.adapter.model.dtype),
                    "configurations": rows,
                },
                indent=2,
            )
        )
    console.print(f"{video} · {engine.model_name} · {engine.device} · median of {repeat} (min–max)")
    console.print(bench_table(rows))


cache_app = typer.Typer(help="Inspect or clear the on-disk feature cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(cache_dir: CacheDirOpt = None, json_output: JsonOpt = False) -> None:
    """Where the cache is, how many entries it holds and how big it is."""
    import json

    from vidqa.cache import FeatureCache, default_cache_dir

    try:
        info = FeatureCache(cache_dir or default_cache_dir()).info()
    except Exception as exc:  # translated in one place
        fail(exc, debug=False)
    data = {
        "directory": str(info.directory),
        "entries": info.entries,
        "size_bytes": info.size_bytes,
        "max_bytes": info.max_bytes,
    }
    if json_output:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(f"{info.directory}: {info.entries} entries, {info.size_bytes / 2**20:.1f} MiB")


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None) -> None:
    """Remove every entry of the feature cache."""
    from vidqa.cache import FeatureCache, default_cache_dir

    try:
        directory = cache_dir or default_cache_dir()
        removed = FeatureCache(directory).clear()
    except Exception as exc:  # translated in one place
        fail(exc, debug=False)
    typer.echo(f"removed {removed} entries from {directory}")


@app.command()
def presets(json_output: JsonOpt = False) -> None:
    """List the built-in presets."""
    import json

    from vidqa.presets import all_presets

    items = all_presets()
    if json_output:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "method": p.method,
                        "keep": p.keep,
                        "params": p.params,
                        "description": p.description,
                    }
                    for p in items
                ],
                indent=2,
            )
        )
        return
    for p in items:
        keep = "" if p.keep is None else f" keep={p.keep:g}"
        params = "".join(f" {k}={v}" for k, v in p.params.items())
        typer.echo(f"{p.name:<12} {p.method}{keep}{params}  — {p.description}")


@app.command()
def models() -> None:
    """List the model aliases and the architectures vidqa supports."""
    from vidqa.models import ADAPTERS

    for alias, hub_id in ALIASES.items():
        default = "  (default)" if alias == DEFAULT_MODEL else ""
        typer.echo(f"{alias:<16} {hub_id}{default}")
    typer.echo(f"\nsupported model types: {', '.join(sorted(ADAPTERS))}")
