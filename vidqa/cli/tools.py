"""`vidqa inspect` and `vidqa bench`: what compression does to a video, and what it costs and saves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidqa.cli.common import app, fail, load_engine, sigterm_as_interrupt
from vidqa.cli.options import (
    AttnOpt,
    CacheDirOpt,
    CacheOptions,
    CacheSizeOpt,
    DebugOpt,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    FpsOpt,
    FramesOpt,
    FullHashOpt,
    JsonOpt,
    KeepOpt,
    MaxFramesOpt,
    MethodOpt,
    ModelOpt,
    ModelOptions,
    NoCacheOpt,
    ParamOpt,
    PresetOpt,
    QuietOpt,
    RemoteCodeOpt,
    RevisionOpt,
    TokensOpt,
    compression_from_flags,
    sampling_from_flags,
    settings_grid,
)
from vidqa.cli.output import Reporter
from vidqa.errors import UsageError
from vidqa.models import DEFAULT_MODEL


@app.command()
def inspect(
    video: Annotated[str, typer.Argument(metavar="VIDEO", help="The video to inspect.", show_default=False)],
    method: MethodOpt = None,
    keep: KeepOpt = None,
    tokens: TokensOpt = None,
    preset: PresetOpt = None,
    param: ParamOpt = None,
    save: Annotated[
        Path | None, typer.Option("--save", metavar="FILE.png", help="Write a contact sheet PNG here.")
    ] = None,
    model: ModelOpt = DEFAULT_MODEL,
    frames: FramesOpt = None,
    fps: FpsOpt = None,
    max_frames: MaxFramesOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    attn: AttnOpt = "auto",
    device_map: DeviceMapOpt = None,
    revision: RevisionOpt = None,
    trust_remote_code: RemoteCodeOpt = False,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache_size: CacheSizeOpt = None,
    full_hash: FullHashOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Per-frame scores and kept tokens of a compression setting (sampling + vision tower, no generation)."""
    reporter = Reporter(quiet=quiet)
    try:
        with sigterm_as_interrupt():
            if save is not None and save.suffix.lower() != ".png":
                raise UsageError(f"--save writes a PNG: give a file ending in .png (got {save})")
            compression = compression_from_flags(
                preset=preset, method=method, keep=keep, params=param, tokens=tokens
            )
            sampling = sampling_from_flags(frames=frames, fps=fps, max_frames=max_frames)
            options = ModelOptions(
                model=model, device=device, dtype=dtype, attn=attn, device_map=device_map, revision=revision,
                trust_remote_code=trust_remote_code,
            )  # fmt: skip
            cache = CacheOptions(directory=cache_dir, disabled=no_cache, size=cache_size, full_hash=full_hash)
            engine = load_engine(reporter, options, cache=cache.open(), full_hash=full_hash)
            with reporter.status(f"reading {video} and encoding frames"):
                report = engine.inspect_setting(video, compression, sampling=sampling)
            if save is not None:
                from vidqa.sheet import save_sheet

                save_sheet(report, save)
            for warning in report.warnings:
                reporter.warning(f"{video}: {warning}")
            if json_output:
                reporter.data(report.to_dict())
            else:
                from vidqa.ui import frame_chart

                reporter.show(frame_chart(report))
                share = 100 * report.kept / max(1, report.total)
                reporter.show(
                    f"{report.kept}/{report.total} visual tokens kept by {compression.label} ({share:.1f} %)"
                )
            if save is not None:
                reporter.note("saved", str(save))
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc, reporter, debug=debug)


@app.command()
def bench(
    video: Annotated[
        str, typer.Argument(metavar="VIDEO", help="The video to benchmark on.", show_default=False)
    ],
    question: Annotated[
        str, typer.Option("--question", "-q", metavar="QUESTION", help="The question asked.")
    ] = "What happens?",
    methods: Annotated[
        str, typer.Option("--methods", metavar="LIST", help="Comma-separated methods.")
    ] = "none,vidcom2,dycoke",
    keeps: Annotated[
        str, typer.Option("--keep", metavar="LIST", help="Comma-separated keep ratios.")
    ] = "1,0.25,0.15",
    preset: Annotated[
        list[str] | None,
        typer.Option(
            "--preset", metavar="NAME|FILE", help="Add a preset's setting to the grid (repeatable)."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help="A parameter for every method that has it (repeatable).",
        ),
    ] = None,
    repeat: Annotated[int, typer.Option("--repeat", metavar="N", help="Timed rounds after one warm-up.")] = 3,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", metavar="N", help="Answer length.")] = 32,
    min_new_tokens: Annotated[
        int | None,
        typer.Option("--min-new-tokens", metavar="N", help="Force at least this many tokens. [default: max]"),
    ] = None,
    model: ModelOpt = DEFAULT_MODEL,
    frames: FramesOpt = None,
    fps: FpsOpt = None,
    max_frames: MaxFramesOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    attn: AttnOpt = "auto",
    device_map: DeviceMapOpt = None,
    revision: RevisionOpt = None,
    trust_remote_code: RemoteCodeOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Latency, tokens and memory of several settings side by side (interleaved, after a warm-up, cold)."""
    from vidqa.bench import run_bench
    from vidqa.settings import GenerationSettings

    reporter = Reporter(quiet=quiet)
    try:
        with sigterm_as_interrupt():
            configs, skipped = settings_grid(methods=methods, keeps=keeps, params=param, presets=preset)
            sampling = sampling_from_flags(frames=frames, fps=fps, max_frames=max_frames)
            generation = GenerationSettings(
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens if min_new_tokens is None else min_new_tokens,
            )
            options = ModelOptions(
                model=model, device=device, dtype=dtype, attn=attn, device_map=device_map, revision=revision,
                trust_remote_code=trust_remote_code,
            )  # fmt: skip
            engine = load_engine(reporter, options)  # no feature cache: every run is a cold item
            for note in skipped:
                reporter.note("skipped", note)
            with reporter.status("benchmarking") as update:
                rows = run_bench(
                    engine, video, question, configs, sampling=sampling, generation=generation, repeat=repeat,
                    on_progress=update,
                )  # fmt: skip
            if json_output:
                reporter.data(
                    {
                        "video": video,
                        "model": engine.model_name,
                        "device": str(engine.device),
                        "dtype": str(engine.adapter.model.dtype).removeprefix("torch."),
                        "settings": engine.settings(sampling, generation),
                        "configurations": rows,
                    }
                )
            from vidqa.ui import bench_table

            reporter.show(f"{video} · {engine.model_name} · {engine.device} · median of {repeat} (min–max)")
            reporter.show(bench_table(rows))
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc, reporter, debug=debug)
