"""The `vidqa` command: parses and validates, calls the library, hands results to `ui`.

Imports nothing heavy at import time (`vidqa --help` must not import torch or transformers): the engine is
imported inside the commands that need it. Errors are translated to one-line messages and exit codes in one
place, `_fail`; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from vidqa._version import __version__
from vidqa.errors import UsageError, VidqaError
from vidqa.models import ALIASES, DEFAULT_MODEL

if TYPE_CHECKING:
    from rich.console import Console

    from vidqa.engine import Engine
    from vidqa.settings import CompressionSettings, SamplingSettings

app = typer.Typer(
    name="vidqa",
    help="Ask questions about videos with open VideoLLMs, fast: redundant visual tokens are dropped "
    "(VidCom², DyCoke) before the language model sees them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

# -- shared options (Annotated, passed by keyword) ------------------------------------------------------
ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help=f"Alias ({', '.join(list(ALIASES)[:3])}, …), hub id or local folder."),
]
MethodOpt = Annotated[
    str | None,
    typer.Option("--method", help="Compression: vidcom2, dycoke or none. [default: from --preset]"),
]
KeepOpt = Annotated[
    float | None,
    typer.Option(
        "--keep",
        help="Fraction of visual tokens that reach the LLM at prefill, in (0, 1]; 1 = no compression.",
    ),
]
PresetOpt = Annotated[
    str | None,
    typer.Option("--preset", help="Preset name (see `vidqa presets`) or a YAML file. [default: vidcom2]"),
]
FramesOpt = Annotated[
    int | None,
    typer.Option(
        "--frames",
        help="Frames sampled uniformly over the video. [default: 32 on a GPU, 8 on CPU (≈1 min on a laptop)]",
    ),
]
FpsOpt = Annotated[float | None, typer.Option("--fps", help="Sample one frame every 1/FPS seconds instead.")]
MaxFramesOpt = Annotated[
    int | None, typer.Option("--max-frames", help="Cap on frames when sampling by --fps.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda when available), cpu, cuda, cuda:1, …")]
DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.")
]
AttnOpt = Annotated[
    str,
    typer.Option(
        "--attn", help="auto (flash_attention_2 when installed, else sdpa), sdpa, flash_attention_2."
    ),
]
RevisionOpt = Annotated[
    str | None, typer.Option("--revision", help="Model revision (branch, tag or commit) on the hub.")
]
RemoteCodeOpt = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Allow code from the model repository to run (off by default)."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the JSON record(s) on stdout instead of the answer.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Nothing on stderr except errors.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Feature cache folder. [default: $XDG_CACHE_HOME/vidqa/features]"),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vidqa {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """vidqa: video question answering with visual-token compression."""


def _fail(exc: BaseException, *, debug: bool, console: Console | None = None) -> NoReturn:
    """The one place exceptions become a one-line message on stderr and an exit code."""
    from vidqa.ui import make_console, say

    console = console or make_console()
    if debug:
        console.print_exception(show_locals=False)
    if isinstance(exc, VidqaError):
        say(console, "error", str(exc))
        raise typer.Exit(exc.exit_code) from None
    say(console, "error", _unexpected(exc))
    raise typer.Exit(1) from None


def _unexpected(exc: BaseException) -> str:
    from vidqa.engine import describe_error

    text = describe_error(exc)
    return text if isinstance(exc, VidqaError) else f"{text} (run with --debug for the traceback)"


def _split_inputs(inputs: list[str], questions: list[str] | None) -> tuple[list[str], list[str]]:
    """`ask VIDEO... QUESTION` or `ask VIDEO... -q Q -q Q`."""
    if questions:
        return inputs, questions
    if len(inputs) < 2:
        raise UsageError("give a video and a question: vidqa ask VIDEO QUESTION (or -q QUESTION)")
    return inputs[:-1], [inputs[-1]]


def _settings(
    *,
    preset: str | None,
    method: str | None,
    keep: float | None,
    frames: int | None,
    fps: float | None,
    max_frames: int | None,
) -> tuple[CompressionSettings, SamplingSettings]:
    from vidqa.presets import DEFAULT_PRESET, load_preset
    from vidqa.settings import SamplingSettings

    if method is None and preset is None and keep is not None and keep < 1:
        method = "vidcom2"  # `--keep R` alone means the default method at R
    chosen = load_preset(preset or DEFAULT_PRESET)
    return chosen.settings(method=method, keep=keep), SamplingSettings(
        frames=frames, fps=fps, max_frames=max_frames
    )


def _load_engine(
    console: Console,
    *,
    model: str,
    device: str,
    dtype: str,
    attn: str,
    revision: str | None,
    trust_remote_code: bool,
    device_map: str | None = None,
    cache: Any = None,
) -> Engine:
    from transformers.utils import logging as hf_logging

    from vidqa.engine import Engine
    from vidqa.ui import status

    hf_logging.set_verbosity_error()  # library chatter is not for users; --debug shows tracebacks instead
    if console.quiet or not console.is_terminal:
        hf_logging.disable_progress_bar()  # download/loading bars only on an interactive terminal
    with status(console, f"loading {model}"):
        return Engine.load(
            model,
            device=device,
            dtype=dtype,
            attn=attn,
            revision=revision,
            trust_remote_code=trust_remote_code,
            device_map=device_map,
            cache=cache,
        )


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
        compression, sampling = _settings(
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
        engine = _load_engine(
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
        _fail(exc, debug=debug, console=console)
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
    from vidqa import batch

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
    from vidqa.batch import RecordFile

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
    compression: CompressionSettings,
    max_new_tokens: int,
    stream: bool,
    debug: bool = False,
) -> int:
    """Answer every item, writing each record as it completes; returns the number of failures."""
    import signal

    from vidqa import runner
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
            max_new_tokens=max_new_tokens,
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
        _settings(preset="none", method=None, keep=None, frames=frames, fps=fps, max_frames=max_frames)
        engine = _load_engine(
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
        _fail(exc, debug=debug, console=console)
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
        _, sampling = _settings(
            preset="none", method=None, keep=None, frames=frames, fps=fps, max_frames=max_frames
        )
        engine = _load_engine(
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
        _fail(exc, debug=debug, console=console)
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
        _fail(exc, debug=False)
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
        _fail(exc, debug=False)
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


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("vidqa: interrupted\n")
        sys.exit(130)
