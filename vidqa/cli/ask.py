"""`vidqa ask`: inputs → items → answers streamed to stdout and records that survive failures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    KeepOpt,
    MaxFramesOpt,
    MethodOpt,
    ModelOpt,
    PresetOpt,
    QuietOpt,
    RemoteCodeOpt,
    RevisionOpt,
    app,
    fail,
    load_engine,
    parse_settings,
)
from vidqa.errors import UsageError
from vidqa.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from rich.console import Console

    from vidqa.compress.registry import Compression
    from vidqa.engine import Engine
    from vidqa.settings import SamplingSettings


@app.command()
def ask(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="VIDEO... (files, folders, - for paths on stdin) then QUESTION, unless -q or "
            "--questions gives the questions.",
            show_default=False,
        ),
    ],
    question: Annotated[
        list[str] | None, typer.Option("--question", "-q", help="A question (repeatable).")
    ] = None,
    questions_file: Annotated[
        Path | None,
        typer.Option(
            "--questions",
            help="Questions file: one per line, or JSONL with question (+ video).",
            show_default=False,
        ),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    model: ModelOpt = DEFAULT_MODEL,
    method: MethodOpt = None,
    keep: KeepOpt = None,
    preset: PresetOpt = None,
    frames: FramesOpt = None,
    fps: FpsOpt = None,
    max_frames: MaxFramesOpt = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest answer, in tokens.")] = 128,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    attn: AttnOpt = "auto",
    device_map: Annotated[
        str | None,
        typer.Option("--device-map", help="'auto' spreads a large model over several GPUs (accelerate)."),
    ] = None,
    revision: RevisionOpt = None,
    trust_remote_code: RemoteCodeOpt = False,
    json_output: JsonOpt = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON record per line on stdout, as each finishes.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Append JSON records to this file instead of stdout."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip items already recorded in --output.")
    ] = False,
    shard: Annotated[
        str | None, typer.Option("--shard", help="I/N: process a stable 1/N of the items (0-based I).")
    ] = None,
    cache_dir: CacheDirOpt = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")
    ] = False,
    cache_size: Annotated[
        str | None, typer.Option("--cache-size", help="Bound of the feature cache, e.g. 5G. [default: 2G]")
    ] = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print each answer only when complete.")
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Answer QUESTION about each VIDEO: answers stream to stdout, timings and progress go to stderr."""
    from vidqa.ui import make_console

    console = make_console(quiet=quiet)
    try:
        if json_output and jsonl:
            raise UsageError("--json and --jsonl are exclusive")
        if max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be at least 1 (got {max_new_tokens})")
        if resume and output is None:
            raise UsageError("--resume needs --output FILE (the records to resume from)")
        items = _items(inputs, question, questions_file, recursive=recursive, shard_spec=shard)
        compression, sampling = parse_settings(
            preset=preset, method=method, keep=keep, frames=frames, fps=fps, max_frames=max_frames
        )
        record_file = _record_file(output)
        if resume:
            done = record_file.done()
            skipped = len(items)
            items = [item for item in items if item.key not in done]
            skipped -= len(items)
            if skipped:
                console.print(f"[dim]resuming: {skipped} item(s) already in {output}[/dim]")
        if not items:
            console.print("[dim]nothing to do[/dim]")
            raise typer.Exit(0)
        cache = _feature_cache(cache_dir, cache_size, disabled=no_cache)
        engine = load_engine(
            console,
            model=model,
            device=device,
            dtype=dtype,
            attn=attn,
            revision=revision,
            trust_remote_code=trust_remote_code,
            device_map=device_map,
            cache=cache,
        )
    except typer.Exit:
        raise
    except Exception as exc:  # translated in one place
        fail(exc, debug=debug, console=console)
    mode = "json" if json_output else "jsonl" if jsonl else "text"
    failures = _run_items(
        engine,
        console,
        items,
        mode=mode,
        record_file=record_file,
        sampling=sampling,
        compression=compression,
        max_new_tokens=max_new_tokens,
        stream=not no_stream,
        debug=debug,
    )
    raise typer.Exit(1 if failures else 0)


def _items(
    inputs: list[str],
    questions: list[str] | None,
    questions_file: Path | None,
    *,
    recursive: bool,
    shard_spec: str | None,
) -> list[Any]:
    """Command-line inputs → (video, question) items, sharded."""
    from vidqa import items as batch

    shared: list[str] = list(questions or [])
    explicit: list[batch.Item] = []
    if questions_file is not None:
        file_shared, explicit = batch.read_questions(questions_file)
        shared += file_shared
    if not shared and not explicit:
        if len(inputs) < 2:
            raise UsageError("give a video and a question: vidqa ask VIDEO QUESTION (or -q QUESTION)")
        inputs, shared = inputs[:-1], [inputs[-1]]
    videos = batch.expand_videos(inputs, recursive=recursive, stdin=sys.stdin)
    if not videos and not explicit:
        raise UsageError(f"no video files found in {', '.join(inputs)}")
    items = batch.build_items(videos, shared, explicit)
    if shard_spec is not None:
        index, count = batch.parse_shard(shard_spec)
        items = batch.shard(items, index, count)
    return items


def _record_file(output: Path | None) -> Any:
    from vidqa.records import RecordFile

    return RecordFile(output) if output is not None else None


def _feature_cache(cache_dir: Path | None, cache_size: str | None, *, disabled: bool) -> Any:
    if disabled:
        return None
    from vidqa.cache import FeatureCache, default_cache_dir, parse_size

    size = parse_size(cache_size) if cache_size is not None else 2 * 1024**3
    return FeatureCache(cache_dir or default_cache_dir(), max_bytes=size)


def _run_items(
    engine: Engine,
    console: Console,
    items: list[Any],
    *,
    mode: str,
    record_file: Any,
    sampling: SamplingSettings,
    compression: Compression,
    max_new_tokens: int,
    stream: bool,
    debug: bool = False,
) -> int:
    """Answer every item, writing each record as it completes; returns the number of failures."""
    import signal

    from vidqa import runner
    from vidqa.settings import GenerationSettings
    from vidqa.ui import BatchProgress, Output, print_summary, say

    output = Output(mode if record_file is None or mode == "text" else "none")
    text_mode = mode == "text"
    several = len(items) > 1
    progress = BatchProgress(
        console, total=len(items), enabled=several and (not text_mode or not sys.stdout.isatty())
    )

    def on_text(item: Any) -> Any:
        if not text_mode:
            return None
        if several:
            console.print(
                f"[bold]{item.video}[/bold] [dim]·[/dim] {item.question}", markup=True, highlight=False
            )
        return output.text_piece if stream else None

    failures = done = 0
    # SIGTERM (schedulers, timeouts) stops like Ctrl-C: between whole records, never inside one
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for result in runner.run(
            engine,
            items,
            sampling=sampling,
            compression=compression,
            generation=GenerationSettings(max_new_tokens=max_new_tokens),
            on_text=on_text,
        ):
            record = result.to_dict()
            done += 1
            if result.error is not None:
                failures += 1
                if debug and result.exception is not None:
                    import traceback

                    console.print("".join(traceback.format_exception(result.exception)), markup=False)
                say(
                    console,
                    "error",
                    result.error if result.video in result.error else f"{result.video}: {result.error}",
                )
            elif text_mode:
                if not stream:
                    output.text_piece(result.answer or "")
                output.end_answer()
                if not several or not progress.enabled:
                    print_summary(console, record)
            if record_file is not None:
                record_file.write(record)
            output.record(record)
            progress.advance(failed=result.error is not None)
    except KeyboardInterrupt:
        progress.stop()
        where = "; re-run with --resume to finish" if record_file is not None else ""
        say(console, "interrupted", f"{done} of {len(items)} item(s) done{where}")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.stop()
        if record_file is not None:
            record_file.close()
    output.close()
    return failures
