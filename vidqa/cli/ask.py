"""`vidqa ask`: inputs → items → answers streamed to stdout, and records that survive failures."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
)
from vidqa.cli.output import Reporter
from vidqa.errors import UsageError
from vidqa.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from vidqa.compress.registry import Compression
    from vidqa.engine import Engine
    from vidqa.items import Item
    from vidqa.records import RecordFile
    from vidqa.settings import GenerationSettings, SamplingSettings


@dataclass
class Plan:
    """What one `ask` run will do, worked out before any model loads."""

    items: list[Item]
    single: bool  # one named video and one question: --json prints one object
    compression: Compression
    sampling: SamplingSettings
    generation: GenerationSettings
    record_file: RecordFile | None


@app.command()
def ask(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="VIDEO... QUESTION",
            help="Video files, folders, or - for paths on stdin; the last one is the question unless -q or "
            "--questions gives the questions (a per-video --questions file needs no VIDEO).",
            show_default=False,
        ),
    ] = None,
    question: Annotated[
        list[str] | None, typer.Option("--question", "-q", metavar="QUESTION", help="A question (repeatable)")
    ] = None,
    questions_file: Annotated[
        Path | None,
        typer.Option(
            "--questions",
            metavar="FILE",
            help="Questions: one per line, or JSON Lines with question and optionally video.",
        ),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    model: ModelOpt = DEFAULT_MODEL,
    method: MethodOpt = None,
    keep: KeepOpt = None,
    tokens: TokensOpt = None,
    preset: PresetOpt = None,
    param: ParamOpt = None,
    frames: FramesOpt = None,
    fps: FpsOpt = None,
    max_frames: MaxFramesOpt = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", metavar="N", help="Longest answer, in tokens.")
    ] = 128,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    attn: AttnOpt = "auto",
    device_map: DeviceMapOpt = None,
    revision: RevisionOpt = None,
    trust_remote_code: RemoteCodeOpt = False,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="JSON on stdout at the end: an array, or one object for one VIDEO and QUESTION."
        ),
    ] = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON record per line on stdout, as each item finishes.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Append JSON records to this file, not stdout."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Skip the items --output already holds a successful record of."),
    ] = False,
    shard: Annotated[
        str | None, typer.Option("--shard", metavar="I/N", help="Run a stable 1/N of the items (0-based I).")
    ] = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache_size: CacheSizeOpt = None,
    full_hash: FullHashOpt = False,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Print each answer when complete.")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Answer QUESTION about each VIDEO: answers stream to stdout, timings and progress go to stderr."""
    mode = "json" if json_output else "jsonl" if jsonl else "text"
    reporter = Reporter(quiet=quiet, mode="none" if output is not None and mode != "text" else mode)
    plan: Plan | None = None
    progress = {"done": 0}
    try:
        with sigterm_as_interrupt():
            if json_output and jsonl:
                raise UsageError("--json and --jsonl are exclusive")
            plan = _plan(
                inputs or [], question, questions_file, recursive=recursive, shard_spec=shard,
                compression=compression_from_flags(
                    preset=preset, method=method, keep=keep, params=param, tokens=tokens
                ),
                sampling=sampling_from_flags(frames=frames, fps=fps, max_frames=max_frames),
                max_new_tokens=max_new_tokens, output=output, resume=resume,
            )  # fmt: skip
            reporter.single = plan.single
            options = ModelOptions(
                model=model, device=device, dtype=dtype, attn=attn, device_map=device_map, revision=revision,
                trust_remote_code=trust_remote_code,
            )  # fmt: skip
            cache = CacheOptions(directory=cache_dir, disabled=no_cache, size=cache_size, full_hash=full_hash)
            engine = load_engine(reporter, options, cache=cache.open(), full_hash=full_hash)
            _check_run(engine, plan, reporter, resume=resume)
            failures = _run_items(engine, reporter, plan, text_mode=mode == "text", stream=not no_stream,
                                  debug=debug, progress=progress)  # fmt: skip
    except KeyboardInterrupt as exc:
        if plan is not None and plan.items:
            where = "; re-run with --resume to finish (the item in progress is redone)" if output else ""
            exc.args = (f"{progress['done']} of {len(plan.items)} item(s) done{where}",)
        _close(reporter, plan)
        fail(exc, reporter, debug=debug)
    except Exception as exc:
        _close(reporter, plan)
        fail(exc, reporter, debug=debug)
    _close(reporter, plan)
    raise typer.Exit(1 if failures else 0)


def _close(reporter: Reporter, plan: Plan | None) -> None:
    """Print --json's collected records (what finished, also on an interruption); close the record file."""
    from vidqa.cli.output import StdoutClosed

    try:
        reporter.close()
    except StdoutClosed:
        pass
    finally:
        if plan is not None and plan.record_file is not None:
            plan.record_file.close()


def _plan(
    inputs: list[str],
    questions: list[str] | None,
    questions_file: Path | None,
    *,
    recursive: bool,
    shard_spec: str | None,
    compression: Compression,
    sampling: SamplingSettings,
    max_new_tokens: int,
    output: Path | None,
    resume: bool,
) -> Plan:
    """Everything decided from the command line alone: items, settings, the record file."""
    from vidqa import items as inputs_to_items
    from vidqa.records import RecordFile
    from vidqa.settings import GenerationSettings

    generation = GenerationSettings(max_new_tokens=max_new_tokens)
    if resume and output is None:
        raise UsageError("--resume needs --output FILE (the records to resume from)")
    shared: list[str] = list(questions or [])
    explicit: list[Item] = []
    if questions_file is not None:
        file_shared, explicit = inputs_to_items.read_questions(questions_file)
        shared += file_shared
    if not shared and not explicit:
        if len(inputs) < 2:
            raise UsageError("give a video and a question: vidqa ask VIDEO QUESTION (or -q QUESTION)")
        inputs, shared = inputs[:-1], [inputs[-1]]
    if shared and not inputs:
        raise UsageError("no video given: vidqa ask VIDEO... -q QUESTION (or - for paths on stdin)")
    videos = inputs_to_items.expand_videos(inputs, recursive=recursive, stdin=sys.stdin)
    if not videos and not explicit:
        raise UsageError(f"no video files found in {', '.join(inputs)}")
    items = inputs_to_items.build_items(videos, shared, explicit)
    if shard_spec is not None:
        index, count = inputs_to_items.parse_shard(shard_spec)
        items = inputs_to_items.shard(items, index, count)
    single = (
        len(inputs) == 1 and inputs[0] != "-" and not Path(inputs[0]).is_dir() and len(shared) == 1
        and not explicit
    )  # fmt: skip
    record_file = RecordFile(output) if output is not None else None
    return Plan(items, single, compression, sampling, generation, record_file)


def _check_run(engine: Engine, plan: Plan, reporter: Reporter, *, resume: bool) -> None:
    """What needs the model: sampling and method limits, and that a resumed file matches these settings."""
    from vidqa.records import signature

    engine.validate(plan.compression)
    settings = engine.settings(plan.sampling, plan.generation)  # also checks sampling against the model
    if not resume or plan.record_file is None:
        return
    log = plan.record_file.log()
    expected = signature(
        {"settings": settings, "method": plan.compression.method,
         "params": plan.compression.params.model_dump()}
    )  # fmt: skip
    assert expected is not None
    log.check_settings(expected, plan.record_file.path)
    done = log.done
    before = len(plan.items)
    plan.items = [item for item in plan.items if item.key not in done]
    if before > len(plan.items):
        reporter.note("resuming", f"{before - len(plan.items)} item(s) already in {plan.record_file.path}")


def _run_items(
    engine: Engine, reporter: Reporter, plan: Plan, *, text_mode: bool, stream: bool, debug: bool,
    progress: dict[str, int],
) -> int:  # fmt: skip
    """Answer every item, writing each record as it completes; returns the number of failures."""
    from vidqa.ui import BatchProgress, print_summary

    several = len(plan.items) > 1
    on_terminal = sys.stdout.isatty()
    bar = BatchProgress(
        reporter.console, total=len(plan.items), enabled=several and not (text_mode and on_terminal)
    )
    warned: set[str] = set()

    def on_text(item: Item) -> Any:
        if not text_mode:
            return None
        if several:
            reporter.console.print(f"[bold]{item.video}[/bold] [dim]·[/dim] {item.question}", highlight=False)
        return reporter.text if stream else None

    failures = 0
    try:
        for result in engine.run(
            plan.items, sampling=plan.sampling, compression=plan.compression, generation=plan.generation,
            on_text=on_text,
        ):  # fmt: skip
            record = result.to_dict()
            progress["done"] += 1
            if result.video not in warned:
                warned.add(result.video)
                for warning in result.warnings:
                    reporter.warning(f"{result.video}: {warning}")
            if result.error is not None:
                failures += 1
                if debug and result.exception is not None:
                    import traceback

                    reporter.problems.print("".join(traceback.format_exception(result.exception)))
                where = "" if result.video in result.error else f"{result.video}: "
                reporter.error(f"{where}{result.error}")
            elif text_mode:
                if not stream:
                    reporter.text(result.answer or "")
                reporter.end_line()
                if not several or not bar.enabled:
                    print_summary(reporter.console, record)
            if plan.record_file is not None:
                plan.record_file.write(record)
            reporter.record(record)
            bar.advance(failed=result.error is not None)
    finally:
        bar.stop()
        reporter.end_line()
    return failures
