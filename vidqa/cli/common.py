"""What every `vidqa` command shares: the Typer app, engine loading, and the one place (`fail`) where
exceptions become a one-line message and an exit code.

Imports nothing heavy at import time (`vidqa --help` must not import torch or transformers).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from vidqa._version import __version__
from vidqa.cli.output import Reporter, StdoutClosed
from vidqa.errors import VidqaError, describe_error

if TYPE_CHECKING:
    from vidqa.cache import FeatureCache
    from vidqa.cli.options import ModelOptions
    from vidqa.engine import Engine

app = typer.Typer(
    name="vidqa",
    help="Ask questions about videos with open VideoLLMs, fast: redundant visual tokens are dropped "
    "(VidCom², DyCoke) before the language model sees them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

#: Exit codes: 0 all succeeded, 1 some item failed, 2 usage error, 130 Ctrl-C, 141 stdout closed, 143 SIGTERM.
EXIT_INTERRUPTED = 130
EXIT_STDOUT_CLOSED = 141
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, like Ctrl-C (schedulers and timeouts send it)."""


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


def fail(exc: BaseException, reporter: Reporter, *, debug: bool) -> NoReturn:
    """The one place exceptions become a one-line message on stderr (even under --quiet) and an exit code."""
    if isinstance(exc, typer.Exit):
        raise exc
    if isinstance(exc, StdoutClosed):
        raise typer.Exit(EXIT_STDOUT_CLOSED) from None
    if isinstance(exc, KeyboardInterrupt):
        detail = f": {exc.args[0]}" if exc.args else ""
        reporter.error(f"interrupted{' (SIGTERM)' if isinstance(exc, Terminated) else ''}{detail}")
        raise typer.Exit(EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED) from None
    if debug:
        reporter.problems.print_exception(show_locals=False)
    if isinstance(exc, VidqaError):
        reporter.error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    reporter.error(f"{describe_error(exc)} (run with --debug for the traceback)")
    raise typer.Exit(1) from None


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM stops it like Ctrl-C (as `Terminated`, exit 143)."""

    def terminate(_signum: int, _frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def load_engine(reporter: Reporter, options: ModelOptions, *, cache: FeatureCache | None = None,
                full_hash: bool = False) -> Engine:  # fmt: skip
    """Load the model behind a spinner; library chatter (warnings, retries) is not shown."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    from vidqa.engine import Engine

    hf_logging.set_verbosity_error()  # --debug shows tracebacks instead
    hub_logging.set_verbosity_error()
    if reporter.quiet or not reporter.console.is_terminal:
        hf_logging.disable_progress_bar()  # download/loading bars only on an interactive terminal
    with reporter.status(f"loading {options.model}"):
        return Engine.load(
            options.model,
            device=options.device,
            dtype=options.dtype,
            attn=options.attn,
            revision=options.revision,
            trust_remote_code=options.trust_remote_code,
            device_map=options.device_map,
            cache=cache,
            full_hash=full_hash,
        )
