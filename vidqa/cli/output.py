"""The one output sink of a command: data on stdout, everything for eyes on stderr.

`Reporter` owns both streams. stdout carries answers (streamed or whole), JSON or JSON Lines; stderr carries
spinners, progress, timing tables and charts, which `--quiet` silences, and one-line errors and warnings,
which nothing silences. `--json` collects records and prints them when the run ends, however it ends (an
interruption prints what finished). A closed stdout (`vidqa … | head -1`) raises `StdoutClosed`, which the
commands turn into an immediate, silent stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any, Literal

from rich.console import Console

Mode = Literal["text", "json", "jsonl", "none"]


class StdoutClosed(BrokenPipeError):
    """stdout's reader went away: nothing more can be delivered, so the run stops at once."""


class Reporter:
    """stdout for data, stderr for eyes (quiet-aware) and problems (always)."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        mode: Mode = "text",
        single: bool = False,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
    ) -> None:
        self.mode = mode
        self.single = single  # --json: one object (one named video, one question) rather than an array
        self.stdout = stdout or sys.stdout
        stderr = stderr or sys.stderr
        self.console = Console(file=stderr, quiet=quiet, highlight=False, soft_wrap=False)  # eyes
        self.problems = Console(file=stderr, highlight=False, soft_wrap=True)  # errors and warnings
        self._records: list[dict[str, Any]] = []
        self._mid_line = False  # a streamed answer has not ended its line yet

    # -- stderr ---------------------------------------------------------------------------------------
    @property
    def quiet(self) -> bool:
        return self.console.quiet

    def error(self, message: str) -> None:
        self._say("error", message)

    def warning(self, message: str) -> None:
        self._say("warning", message)

    def note(self, kind: str, message: str) -> None:
        """A one-line note for eyes (hidden by --quiet), e.g. 'resuming: …'."""
        if not self.quiet:
            self._say(kind, message)

    def _say(self, kind: str, message: str) -> None:
        """One unwrapped line `vidqa: <kind>: <message>`: greppable, never reflowed, never styled."""
        self.end_line()
        self.problems.print(f"vidqa: {kind}: {message}", markup=False, highlight=False, soft_wrap=True)

    def show(self, renderable: Any) -> None:
        """A table or chart for eyes."""
        self.console.print(renderable)

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[Callable[[str], None]]:
        """A spinner while the user waits; nothing when quiet or when stderr is not a terminal."""
        if self.console.is_terminal and not self.quiet:
            with self.console.status(message, spinner="dots") as spinner:
                yield lambda text: spinner.update(text)
        else:
            yield lambda text: None

    # -- stdout ---------------------------------------------------------------------------------------
    def text(self, piece: str) -> None:
        """A piece of answer text, flushed at once (streaming)."""
        self._write(piece)
        self._mid_line = not piece.endswith("\n")

    def end_line(self) -> None:
        """End a streamed answer's line (also after a failure mid-answer, so the next one starts clean)."""
        if self._mid_line:
            self._mid_line = False
            self._write("\n")

    def record(self, record: dict[str, Any]) -> None:
        if self.mode == "jsonl":
            self._write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.mode == "json":
            self._records.append(record)

    def data(self, payload: Any) -> None:
        """One JSON document (inspect, bench, cache info, …)."""
        self._write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")

    def close(self) -> None:
        """--json: print what finished, as one object for a single named item, else an array."""
        if self.mode != "json":
            return
        records, self._records = self._records, []
        if self.single and len(records) == 1:
            self.data(records[0])
        elif records or not self.single:
            self.data(records)

    def _write(self, text: str) -> None:
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
            raise StdoutClosed from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush does not complain about the closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
