"""The `vidqa` command: parses and validates, calls the library, hands results to `ui`.

Imports nothing heavy at import time (`vidqa --help` must not import torch or transformers): the engine is
imported inside the commands that need it. Errors are translated to one-line messages and exit codes in one
place, `_fail`; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys
import time
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
        )


@app.command()
def ask(
    inputs: Annotated[
        list[str],
        typer.Argument(help="VIDEO... then QUESTION (or give questions with -q).", show_default=False),
    ],
    question: Annotated[
        list[str] | None, typer.Option("--question", "-q", help="A question (repeatable).")
    ] = None,
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
    revision: RevisionOpt = None,
    trust_remote_code: RemoteCodeOpt = False,
    json_output: JsonOpt = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON record per line on stdout, as each finishes.")
    ] = False,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print each answer only when complete.")
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Answer QUESTION about each VIDEO; the answer streams to stdout, timings go to stderr."""
    from vidqa.ui import Output, make_console

    console = make_console(quiet=quiet)
    try:
        if json_output and jsonl:
            raise UsageError("--json and --jsonl are exclusive")
        if max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be at least 1 (got {max_new_tokens})")
        videos, questions = _split_inputs(inputs, question)
        compression, sampling = _settings(
            preset=preset, method=method, keep=keep, frames=frames, fps=fps, max_frames=max_frames
        )
        engine = _load_engine(
            console,
            model=model,
            device=device,
            dtype=dtype,
            attn=attn,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )
    except Exception as exc:
        _fail(exc, debug=debug)
    output = Output("json" if json_output else "jsonl" if jsonl else "text")
    failures = 0
    for video in videos:
        for record in _ask_video(
            engine,
            console,
            output,
            video,
            questions,
            sampling=sampling,
            compression=compression,
            max_new_tokens=max_new_tokens,
            stream=not no_stream,
            debug=debug,
        ):
            failures += record["error"] is not None
            output.record(record)
    output.close()
    raise typer.Exit(1 if failures else 0)


def _ask_video(
    engine: Engine,
    console: Console,
    output: Any,
    video: str,
    questions: list[str],
    *,
    sampling: SamplingSettings,
    compression: CompressionSettings,
    max_new_tokens: int,
    stream: bool,
    debug: bool,
) -> list[dict[str, Any]]:
    """All questions about one video; a failure becomes records with `error` set, never an abort."""
    from vidqa.record import Result
    from vidqa.ui import print_summary, say, status

    text_mode = output.mode == "text"
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        with status(console, f"reading {video} and encoding frames"):
            encoded = engine.encode(video, questions[0], sampling)
        on_text = output.text_piece if (text_mode and stream) else None
        for index, result in enumerate(
            engine.ask_many(
                video,
                questions,
                sampling=sampling,
                compression=compression,
                max_new_tokens=max_new_tokens,
                on_text=on_text,
                encoded=encoded,
            )
        ):
            if index == 0:
                result.timings.total = time.perf_counter() - started
            if text_mode:
                if len(questions) > 1:
                    console.print(f"[dim]Q: {result.question}[/dim]")
                if not stream:
                    output.text_piece(result.answer or "")
                output.end_answer()
                print_summary(console, result.to_dict())
            records.append(result.to_dict())
        for warning in encoded.clip.warnings:
            say(console, "warning", f"{video}: {warning}")
    except Exception as exc:
        if debug:
            console.print_exception(show_locals=False)
        message = _unexpected(exc)
        say(console, "error", message)
        done = {record["question"] for record in records}
        records.extend(
            Result.failure(
                video,
                q,
                message,
                started=started,
                model=engine.model_name,
                method=compression.method,
                keep=compression.effective_keep,
            ).to_dict()
            for q in questions
            if q not in done
        )
    return records


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
