"""Everything for eyes: one stderr console, spinners, timing tables, uniqueness charts. No model code.

stdout carries data only (answers, JSON); this module writes to stderr, except `Output`, the one helper
that writes data to stdout in human or JSON form.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 32


def make_console(*, quiet: bool = False) -> Console:
    """The stderr console; quiet silences it (errors are printed by the CLI regardless)."""
    return Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=False)


@contextlib.contextmanager
def status(console: Console, message: str) -> Iterator[Callable[[str], None]]:
    """A spinner while the user waits; nothing when stderr is not a terminal (logs stay clean).

    Yields a function that changes the spinner's message.
    """
    if console.is_terminal and not console.quiet:
        with console.status(message, spinner="dots") as spinner:
            yield lambda text: spinner.update(text)
    else:
        yield lambda text: None


def say(console: Console, kind: str, message: str) -> None:
    """One unwrapped line `vidqa: <kind>: <message>` (errors, warnings): greppable, never reflowed."""
    console.print(f"vidqa: {kind}: {message}", markup=False, highlight=False, soft_wrap=True)


class Output:
    """Writes answers and records to stdout: streamed text, whole answers, JSON or JSON Lines."""

    def __init__(self, mode: str, stream: IO[str] | None = None) -> None:
        self.mode = mode  # "text" | "json" | "jsonl" | "none" (records go to a file instead)
        self.stream = stream or sys.stdout
        self._json_records: list[dict[str, Any]] = []

    def text_piece(self, piece: str) -> None:
        self.stream.write(piece)
        self.stream.flush()

    def end_answer(self) -> None:
        self.stream.write("\n")
        self.stream.flush()

    def record(self, record: dict[str, Any]) -> None:
        if self.mode == "jsonl":
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.stream.flush()
        elif self.mode == "json":
            self._json_records.append(record)

    def close(self) -> None:
        """JSON mode: one object for one item, an array for several."""
        if self.mode != "json" or not self._json_records:
            return
        payload: Any = self._json_records[0] if len(self._json_records) == 1 else self._json_records
        self.stream.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        self.stream.flush()


class BatchProgress:
    """Items done/total, failures, rate and ETA on stderr; only on a terminal and never when quiet."""

    def __init__(self, console: Console, *, total: int, enabled: bool) -> None:
        self.enabled = enabled and console.is_terminal and not console.quiet
        self.failed = 0
        self._progress: Progress | None = None
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task("answering", total=total, failed=0, rate="")
            self._progress.start()

    def advance(self, *, failed: bool) -> None:
        self.failed += failed
        if self._progress is not None:
            task = self._progress.tasks[0]
            speed = task.speed
            rate = f"{speed * 60:.1f} items/min" if speed else ""
            self._progress.update(self._task, advance=1, failed=self.failed, rate=rate)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _seconds(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _bytes(value: int) -> str:
    if value <= 0:
        return "-"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def timing_table(record: dict[str, Any]) -> Table:
    """The summary after an answer: phases, tokens, memory."""
    timings = record["timings"]
    tokens = record["visual_tokens"]
    table = Table(title=None, show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("decode", "vision", "compress", "prefill", "generate", "total"):
        table.add_column(column, justify="right")
    table.add_column("visual tokens", justify="right")
    table.add_column("answer", justify="right")
    table.add_column("peak mem", justify="right")
    generated = record["generated_tokens"]
    rate = generated / timings["generate"] if timings["generate"] > 0 and generated > 1 else 0.0
    kept = f"{tokens['kept']}/{tokens['total']}"
    if tokens["total"]:
        kept += f" ({100 * tokens['kept'] / tokens['total']:.0f} %)"
    table.add_row(
        *(
            _seconds(timings[name])
            for name in ("decode", "vision", "compress", "prefill", "generate", "total")
        ),
        kept,
        f"{generated} tok" + (f", {rate:.1f}/s" if rate else ""),
        _bytes(record["peak_memory_bytes"]),
    )
    return table


def print_summary(console: Console, record: dict[str, Any]) -> None:
    method = record["method"] if record["method"] == "none" else f"{record['method']} keep {record['keep']:g}"
    cached = " · features cached" if record.get("cached") else ""
    console.print(
        Text(f"{record['video']} · {record['frames']['count']} frames · {method}{cached}", style="dim")
    )
    console.print(timing_table(record))


def uniqueness_bars(
    times: Sequence[float],
    uniqueness: Sequence[float],
    weights: Sequence[float],
    budgets: Sequence[int],
    tokens_per_frame: int,
) -> Table:
    """One row per frame: time, a bar of relative uniqueness, softmax weight, budget k/M. Top frames bold."""
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("time", justify="right")
    table.add_column("uniqueness", justify="left")
    table.add_column("u", justify="right")
    table.add_column("weight", justify="right")
    table.add_column("budget", justify="right")
    low, high = min(uniqueness), max(uniqueness)
    span = high - low or 1.0
    top = sorted(range(len(uniqueness)), key=lambda i: uniqueness[i], reverse=True)[
        : max(1, len(uniqueness) // 8)
    ]
    for index, (t, u, w, k) in enumerate(zip(times, uniqueness, weights, budgets, strict=True)):
        filled = 1 + round((u - low) / span * (BAR_WIDTH - 1))
        style = "bold magenta" if index in top else "cyan"
        bar = Text("█" * filled, style=style) + Text("·" * (BAR_WIDTH - filled), style="dim")
        table.add_row(
            str(index),
            f"{t:.2f}s",
            bar,
            f"{u:.4f}",
            f"{w:.3f}",
            f"{k}/{tokens_per_frame}",
            style="bold" if index in top else None,
        )
    return table


def bench_table(rows: list[dict[str, Any]]) -> Table:
    """`vidqa bench`: one row per configuration, medians with min–max, speed-ups over `none`."""
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for name in (
        "config",
        "tokens",
        "decode",
        "vision",
        "compress",
        "prefill",
        "tok/s",
        "total",
        "peak mem",
        "prefill ×",
        "total ×",
    ):
        table.add_column(name, justify="left" if name == "config" else "right")

    def cell(row: dict[str, Any], name: str) -> str:
        stat = row[name]
        return f"{_seconds(stat['median'])} ({_seconds(stat['min'])}–{_seconds(stat['max'])})"

    for row in rows:
        label = "none" if row["method"] == "none" else f"{row['method']} {row['keep']:g}"
        tokens = row["visual_tokens"]
        speed = row.get("speedup") or {}
        table.add_row(
            label,
            f"{tokens['kept']}/{tokens['total']}",
            cell(row, "decode"),
            cell(row, "vision"),
            cell(row, "compress"),
            cell(row, "prefill"),
            f"{row['decode_tps']['median']:.1f}",
            cell(row, "total"),
            _bytes(int(row["peak_memory_bytes"]["median"])),
            f"{speed['prefill']:.2f}×" if speed.get("prefill") else "-",
            f"{speed['total']:.2f}×" if speed.get("total") else "-",
        )
    return table
