"""`vidqa eval`: a multiple-choice benchmark through several compression settings, accuracy side by side."""

from __future__ import annotations

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
    JsonOpt,
    MaxFramesOpt,
    ModelOpt,
    ModelOptions,
    NoCacheOpt,
    QuietOpt,
    RemoteCodeOpt,
    RevisionOpt,
    sampling_from_flags,
    settings_grid,
    split_list,
)
from vidqa.cli.output import Reporter
from vidqa.errors import UsageError
from vidqa.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from vidqa.compress.registry import Compression
    from vidqa.engine import Engine
    from vidqa.evaluation.data import EvalItem
    from vidqa.records import RecordFile
    from vidqa.settings import GenerationSettings, SamplingSettings


@app.command("eval")
def evaluate(
    data: Annotated[
        str,
        typer.Argument(
            metavar="DATA",
            help="A questions .jsonl file, an MVBench folder or a Video-MME folder (docs/evaluation.md).",
            show_default=False,
        ),
    ],
    methods: Annotated[
        str, typer.Option("--methods", metavar="LIST", help="Comma-separated methods; none is the baseline.")
    ] = "none,vidcom2,dycoke",
    keeps: Annotated[
        str, typer.Option("--keep", metavar="LIST", help="Comma-separated keep ratios (1 = none).")
    ] = "1,0.25,0.15",
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help="A parameter for every method that has it (repeatable).",
        ),
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option("--preset", metavar="NAME|FILE", help="Add a preset's setting (repeatable)."),
    ] = None,
    layout: Annotated[
        str, typer.Option("--layout", metavar="KIND", help="auto, jsonl, mvbench or videomme.")
    ] = "auto",
    video_root: Annotated[
        Path | None,
        typer.Option(
            "--video-root", metavar="DIR", help="Where the videos are, if not where the layout says."
        ),
    ] = None,
    tasks: Annotated[
        str | None, typer.Option("--tasks", metavar="LIST", help="Only these tasks (comma-separated).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="The first N questions of each task.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Append one JSON record per question and setting."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip pairs whose newest record in --output succeeded.")
    ] = False,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", metavar="N", help="Answer length (lmms-eval uses 16).")
    ] = 16,
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
    """Accuracy of compression settings on a multiple-choice video QA benchmark, side by side with none.

    Every question is asked under every setting (greedy, lmms-eval's prompts); each video is encoded once.
    Prints accuracy with its 95 % interval, its share of none's, McNemar's p against none, kept tokens and
    time per question, overall and per task. Fails (exit 1) when a compressed setting answers exactly as
    none on every question (compression not applied) or every answer is empty.
    """
    from vidqa.evaluation.data import load_benchmark
    from vidqa.records import RecordFile
    from vidqa.settings import GenerationSettings

    reporter = Reporter(quiet=quiet)
    record_file: RecordFile | None = None
    try:
        with sigterm_as_interrupt():
            if resume and output is None:
                raise UsageError("--resume needs --output (the file to resume)")
            configs, skipped = settings_grid(methods=methods, keeps=keeps, params=param, presets=preset)
            items = load_benchmark(
                data, layout=layout, video_root=video_root, tasks=split_list(tasks or ""), limit=limit
            )
            sampling = sampling_from_flags(frames=frames, fps=fps, max_frames=max_frames)
            generation = GenerationSettings(max_new_tokens=max_new_tokens)
            record_file = RecordFile(output) if output is not None else None
            options = ModelOptions(
                model=model, device=device, dtype=dtype, attn=attn, device_map=device_map, revision=revision,
                trust_remote_code=trust_remote_code,
            )  # fmt: skip
            cache = CacheOptions(directory=cache_dir, disabled=no_cache, size=cache_size, full_hash=full_hash)
            engine = load_engine(reporter, options, cache=cache.open(), full_hash=full_hash)
            for note in skipped:
                reporter.note("skipped", note)
            for config in configs:
                engine.validate(config)
            settings = engine.settings(sampling, generation)
            earlier = _earlier_records(record_file, settings, items, configs, reporter) if resume else {}
            records = _run(engine, reporter, items, configs, sampling, generation, earlier, record_file)
            passed = _report(reporter, engine, settings, records, json_output=json_output)
    except (Exception, KeyboardInterrupt) as exc:
        if record_file is not None:
            record_file.close()
        fail(exc, reporter, debug=debug)
    if record_file is not None:
        record_file.close()
    failed = any(record.get("error") for record in records.values())
    raise typer.Exit(0 if passed and not failed else 1)


Records = dict[tuple[str, ...], dict[str, Any]]


def _earlier_records(record_file: RecordFile | None, settings: dict[str, Any], items: list[EvalItem],
                     configs: list[Compression], reporter: Reporter) -> Records:  # fmt: skip
    """--resume: the newest successful record of each (question, setting) of this run already in the file."""
    from vidqa.evaluation.runner import key_of, record_key
    from vidqa.records import read_log, signature

    assert record_file is not None
    log = read_log(record_file.path, key=record_key, with_method=False)
    expected = signature({"settings": settings}, with_method=False)
    assert expected is not None
    log.check_settings(expected, record_file.path)
    wanted = [key_of(item, config) for item in items for config in configs]  # in the run's order
    done = log.done
    earlier = {key: log.latest[key] for key in wanted if key in done}
    if earlier:
        reporter.note("resuming", f"{len(earlier)} of {len(wanted)} answers already in {record_file.path}")
    return earlier


def _run(
    engine: Engine,
    reporter: Reporter,
    items: list[EvalItem],
    configs: list[Compression],
    sampling: SamplingSettings,
    generation: GenerationSettings,
    earlier: Records,
    record_file: RecordFile | None,
) -> Records:
    """Answer what is left, writing each record as it completes; every failure gets one warning line."""
    from vidqa.evaluation.runner import record_key, run_eval
    from vidqa.ui import BatchProgress

    records = dict(earlier)
    left = len(items) * len(configs) - len(earlier)
    bar = BatchProgress(reporter.console, total=left, enabled=left > 1)
    try:
        for record in run_eval(engine, items, configs, sampling=sampling, generation=generation,
                               done=set(earlier)):  # fmt: skip
            key = record_key(record)
            assert key is not None
            records[key] = record
            if record_file is not None:
                record_file.write(record)
            if record.get("error"):
                reporter.error(f"{record['item']} ({record['method']} {record['keep']:g}): {record['error']}")
            bar.advance(failed=bool(record.get("error")))
    finally:
        bar.stop()
    return records


def _report(reporter: Reporter, engine: Engine, settings: dict[str, Any],
            records: Records, *, json_output: bool) -> bool:  # fmt: skip
    """The table (or --json document) on stdout, the gate's verdict on stderr; False when the gate fails."""
    from rich.console import Console

    from vidqa.evaluation.report import summarize
    from vidqa.evaluation.table import overall_table, task_table

    summary = summarize(records.values())
    document = summary.to_dict()
    if json_output:
        reporter.data({"model": engine.model_name, "settings": settings, **document})
    else:
        wide = None if reporter.stdout.isatty() else 160  # a file or pipe gets whole rows, not wrapped cells
        console = Console(file=reporter.stdout, highlight=False, soft_wrap=False, width=wide)
        console.print(overall_table(document))
        if len(document["tasks"]) > 1:
            console.print()
            console.print(task_table(document))
    if summary.unparsed:
        reporter.note(
            "unparsed", f"{len(summary.unparsed)} answer(s) name no single option (counted wrong; "
            "records with prediction null, or --json's unparsed list)",
        )  # fmt: skip
    for note in summary.notes:
        reporter.warning(note)
    for problem in summary.problems:
        reporter.error(f"divergence gate: {problem}")
    return not summary.problems
