"""What every `vidqa` command shares: the Typer app, option types, settings parsing, engine loading, and
the one place (`fail`) where exceptions become a one-line message and an exit code.

Imports nothing heavy at import time (`vidqa --help` must not import torch or transformers).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from vidqa._version import __version__
from vidqa.errors import VidqaError
from vidqa.models import ALIASES

if TYPE_CHECKING:
    from rich.console import Console

    from vidqa.compress.registry import Compression
    from vidqa.engine import Engine
    from vidqa.settings import SamplingSettings

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


def fail(exc: BaseException, *, debug: bool, console: Console | None = None) -> NoReturn:
    """The one place exceptions become a one-line message on stderr and an exit code."""
    from vidqa.ui import make_console, say

    console = console or make_console()
    if debug:
        console.print_exception(show_locals=False)
    if isinstance(exc, VidqaError):
        say(console, "error", str(exc))
        raise typer.Exit(exc.exit_code) from None
    say(console, "error", unexpected_message(exc))
    raise typer.Exit(1) from None


def unexpected_message(exc: BaseException) -> str:
    from vidqa.errors import describe_error

    text = describe_error(exc)
    return text if isinstance(exc, VidqaError) else f"{text} (run with --debug for the traceback)"


def parse_settings(
    *,
    preset: str | None,
    method: str | None,
    keep: float | None,
    frames: int | None,
    fps: float | None,
    max_frames: int | None,
) -> tuple[Compression, SamplingSettings]:
    from vidqa.presets import DEFAULT_PRESET, load_preset
    from vidqa.settings import SamplingSettings

    chosen = load_preset(preset or DEFAULT_PRESET)
    return chosen.settings(method=method, keep=keep), SamplingSettings(
        frames=frames, fps=fps, max_frames=max_frames
    )


def load_engine(
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
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    from vidqa.engine import Engine
    from vidqa.ui import status

    hf_logging.set_verbosity_error()  # library chatter is not for users; --debug shows tracebacks instead
    hub_logging.set_verbosity_error()
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
