"""`vidqa chat VIDEO`: a conversation about one video, each question costing only its own tokens.

The video is decoded, encoded, compressed and read by the LLM once (`Engine.session`); every question is a
follow-up (`Session.ask(..., follow_up=True)`) that sees the conversation so far. On a terminal answers
stream and a line of timings follows each; Ctrl-C stops the current answer (the conversation stays as it
was), Ctrl-D ends the chat. Without a terminal, questions are read line by line from stdin and each answer
is one JSON record on stdout, so a chat scripts like `ask --jsonl`. Lines starting with `/` are commands in
both modes (`/help` lists them).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from vidqa.errors import UsageError, VidqaError, describe_error
from vidqa.models import DEFAULT_MODEL
from vidqa.record import BEFORE_FIRST_TOKEN, decode_rate

if TYPE_CHECKING:
    from vidqa.compress.registry import Compression
    from vidqa.engine import Engine
    from vidqa.session import Session
    from vidqa.settings import GenerationSettings

PROMPT = "› "
HELP = """commands:
  /timings            the last answer's phases (what ran, what was reused)
  /reset              start over: forget the conversation (the video stays encoded)
  /method NAME        switch method (none, vidcom2, dycoke, …): re-selects and re-reads the video prefix
  /keep R             share of visual tokens to keep (1 = no compression): likewise
  /param NAME=VALUE   set one method parameter: likewise
  /history            the conversation so far
  /help               this list
  /quit               end the chat (also Ctrl-D; Ctrl-C stops an answer)"""


@app.command()
def chat(
    video: Annotated[
        str, typer.Argument(metavar="VIDEO", help="The video to talk about.", show_default=False)
    ],
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
    ] = 256,
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
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Talk about VIDEO: follow-up questions see the conversation; each costs only its own tokens.

    On a terminal answers stream; without one, questions are read line by line from stdin and each answer is
    a JSON record on stdout. Lines starting with / are commands (/help).
    """
    from vidqa.settings import GenerationSettings

    interactive = sys.stdin.isatty()
    reporter = Reporter(quiet=quiet, mode="text" if interactive else "jsonl")
    failures = 0
    try:
        with sigterm_as_interrupt():
            compression = compression_from_flags(
                preset=preset, method=method, keep=keep, params=param, tokens=tokens
            )
            sampling = sampling_from_flags(frames=frames, fps=fps, max_frames=max_frames)
            generation = GenerationSettings(max_new_tokens=max_new_tokens)
            options = ModelOptions(
                model=model, device=device, dtype=dtype, attn=attn, device_map=device_map, revision=revision,
                trust_remote_code=trust_remote_code,
            )  # fmt: skip
            cache = CacheOptions(directory=cache_dir, disabled=no_cache, size=cache_size, full_hash=full_hash)
            engine = load_engine(reporter, options, cache=cache.open(), full_hash=full_hash)
            engine.validate(compression)
            with reporter.status(f"reading {video}"):
                session = engine.session(video, compression, sampling=sampling, generation=generation)
            for warning in session.encoding.warnings:
                reporter.warning(f"{video}: {warning}")
            state = ChatState(engine, session, generation, params=list(param or []))
            lines = _terminal_lines(reporter) if interactive else _stdin_lines()
            failures = converse(state, reporter, lines, interactive=interactive, debug=debug)
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc, reporter, debug=debug)
    raise typer.Exit(1 if failures else 0)


@dataclass
class ChatState:
    """The conversation: the session (video + setting + history), how it was set, and the last record."""

    engine: Engine
    session: Session
    generation: GenerationSettings
    params: list[str] = field(default_factory=list)  # -p NAME=VALUE flags in force
    last: dict[str, Any] | None = None

    @property
    def compression(self) -> Compression:
        return self.session.compression

    def resettle(
        self, *, method: str | None = None, keep: float | None = None, param: str | None = None
    ) -> str:
        """A new compression setting for the same encoded video, conversation kept; returns its label."""
        params = list(self.params)
        if param is not None:
            name = param.split("=", 1)[0]
            params = [p for p in params if p.split("=", 1)[0] != name] + [param]
        current = self.compression
        target = method or current.method
        new_keep = keep if keep is not None else (current.keep if target == current.method else None)
        compression = compression_from_flags(preset=None, method=target, keep=new_keep, params=params)
        self.engine.validate(compression)
        history = list(self.session.history)
        self.session = self.engine.session(self.session.encoding, compression, generation=self.generation)
        self.session.history.extend(history)
        self.params = params
        return compression.label


def converse(
    state: ChatState, reporter: Reporter, lines: Iterator[str], *, interactive: bool, debug: bool
) -> int:
    """Answer each question line, run each command line; returns how many questions failed."""
    if interactive:
        _banner(state, reporter)
    failures = 0
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if not _command(state, reporter, text):
                break
            continue
        record = _answer(state, reporter, text, interactive=interactive, debug=debug)
        if record is None:
            continue
        if record["error"] is not None:
            failures += 1
        elif interactive and not reporter.quiet:
            _after_answer(reporter, record)
        state.last = record
        reporter.record(record)
    return failures


def _answer(
    state: ChatState, reporter: Reporter, question: str, *, interactive: bool, debug: bool
) -> dict[str, Any] | None:
    """One follow-up question; None when Ctrl-C stopped it (the conversation is then unchanged)."""
    from vidqa.record import Result

    turn = len(state.session.history) + 1
    try:
        result = state.session.ask(
            question,
            generation=state.generation,
            on_text=reporter.text if interactive else None,
            follow_up=True,
        )
    except KeyboardInterrupt:
        if not interactive:
            raise
        reporter.end_line()
        reporter.note("stopped", "answer interrupted; the conversation is as before this question")
        return None
    except Exception as exc:  # one bad question must not end the chat
        if debug:
            reporter.problems.print_exception(show_locals=False)
        message = str(exc) if isinstance(exc, VidqaError) else describe_error(exc)
        reporter.end_line()
        reporter.error(f"{state.session.encoding.video}: {message}")
        result = Result.failure(
            state.session.encoding.video, question, message, model=state.engine.model_name
        )
    reporter.end_line()
    return {**result.to_dict(), "turn": turn}


def _command(state: ChatState, reporter: Reporter, text: str) -> bool:
    """Run one /command; False ends the chat."""
    from vidqa.ui import print_summary

    try:
        name, *args = shlex.split(text)
    except ValueError as exc:
        reporter.error(f"cannot read the command: {exc}")
        return True
    name = name.lower()
    try:
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/help":
            reporter.problems.print(HELP, markup=False, highlight=False)
        elif name == "/timings":
            if state.last is None:
                reporter.note("timings", "no answer yet")
            else:
                print_summary(reporter.problems, state.last)
        elif name == "/reset":
            state.session.reset()
            reporter.problems.print("conversation cleared", markup=False)
        elif name == "/history":
            for index, turn in enumerate(state.session.history, start=1):
                reporter.problems.print(f"{index}. {turn.question}\n   {turn.answer}", markup=False)
        elif name in ("/method", "/keep", "/param"):
            _change_setting(state, reporter, name, args)
        else:
            reporter.error(f"unknown command {name}: /help lists them")
    except UsageError as exc:
        reporter.error(str(exc))
    return True


def _change_setting(state: ChatState, reporter: Reporter, name: str, args: list[str]) -> None:
    if len(args) != 1:
        raise UsageError(f"{name} takes one value: {name} {'R' if name == '/keep' else 'VALUE'}")
    (value,) = args
    if name == "/method":
        label = state.resettle(method=value)
    elif name == "/param":
        label = state.resettle(param=value)
    else:
        try:
            keep = float(value)
        except ValueError:
            raise UsageError(f"/keep needs a number between 0 and 1, got {value!r}") from None
        label = state.resettle(keep=keep)
    reporter.problems.print(f"now {label}; the next question re-reads the video prefix", markup=False)


def _banner(state: ChatState, reporter: Reporter) -> None:
    encoding = state.session.encoding
    t, m, _ = encoding.visual.shape
    reporter.note(
        "chat",
        f"{encoding.video} · {len(encoding.times)} frames, {t * m} visual tokens · "
        f"{state.compression.label} · {state.engine.model_name}. Ask a question; /help for commands, "
        "Ctrl-D to quit.",
    )


def _after_answer(reporter: Reporter, record: dict[str, Any]) -> None:
    from rich.text import Text

    from vidqa.ui import seconds

    timings = record["timings"]
    first = sum(timings[name] for name in BEFORE_FIRST_TOKEN)
    rate = decode_rate(record["generated_tokens"], timings["generate"])
    reused = record["prefix"].get("reused_tokens", 0)
    parts = [
        f"first token {seconds(first)}",
        f"{record['generated_tokens']} tokens" + (f", {rate:.1f}/s" if rate else ""),
        f"{reused} prompt tokens reused" if reused else "video read",
    ]
    reporter.console.print(Text(" · ".join(parts), style="dim"))


def _terminal_lines(reporter: Reporter) -> Iterator[str]:
    """Lines typed at the prompt, with line editing where readline exists; Ctrl-C clears the line, Ctrl-D
    ends."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - importing it gives input() line editing and history
    read: Callable[[str], str] = input
    while True:
        try:
            yield read(PROMPT)
        except KeyboardInterrupt:
            reporter.end_line()
            reporter.problems.print("\n(Ctrl-D or /quit ends the chat)", markup=False)
        except EOFError:
            reporter.problems.print("", markup=False)
            return


def _stdin_lines() -> Iterator[str]:
    yield from sys.stdin
