"""Renderings for eyes (stderr): timing tables, per-frame charts, the bench table, progress. No model code.

Everything here builds rich renderables or draws on a given console; `vidqa.cli.output.Reporter` decides
where they go and whether `--quiet` hides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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

from vidqa.record import BEFORE_FIRST_TOKEN, PHASES, decode_rate

if TYPE_CHECKING:
    from vidqa.engine import InspectReport

BAR_WIDTH = 32


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


def seconds(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def size(value: float) -> str:
    if value <= 0:
        return "-"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def timing_table(record: dict[str, Any]) -> Table:
    """The summary after an answer: the phases that ran, tokens, memory."""
    timings = record["timings"]
    shown = [name for name in PHASES if timings[name] > 0 or name in ("prefill", "generate", "total")]
    table = Table(title=None, show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in (*shown, "first token", "visual tokens", "answer", "peak mem"):
        table.add_column(column.replace("_", " "), justify="right")
    tokens = record["visual_tokens"]
    kept = f"{tokens['kept']}/{tokens['total']}"
    if tokens["total"]:
        kept += f" ({100 * tokens['kept'] / tokens['total']:.0f} %)"
    generated = record["generated_tokens"]
    rate = decode_rate(generated, timings["generate"])
    table.add_row(
        *(seconds(timings[name]) for name in shown),
        seconds(sum(timings[name] for name in BEFORE_FIRST_TOKEN)),
        kept,
        f"{generated} tok" + (f", {rate:.1f}/s" if rate else ""),
        size(record["peak_memory_bytes"]),
    )
    return table


def print_summary(console: Console, record: dict[str, Any]) -> None:
    method = record["method"] if record["method"] == "none" else f"{record['method']} keep {record['keep']:g}"
    reused = f" · reused: {', '.join(record['skipped'])}" if record.get("skipped") else ""
    cached = " (features from the cache)" if record.get("cached") else ""
    console.print(
        Text(
            f"{record['video']} · {record['frames']['count']} frames · {method}{reused}{cached}", style="dim"
        )
    )
    console.print(timing_table(record))


def frame_chart(report: InspectReport) -> Table:
    """One row per frame: time, a bar of the method's headline score, every score, budget k/M."""
    name, headline = report.headline
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("time", justify="right")
    table.add_column(name, justify="left")
    for score in report.scores:
        table.add_column(score, justify="right")
    table.add_column("kept", justify="right")
    low, high = min(headline), max(headline)
    span = high - low or 1.0
    top = set(top_frames(headline))
    for index, time_s in enumerate(report.frame_times):
        filled = 1 + round((headline[index] - low) / span * (BAR_WIDTH - 1))
        style = "bold magenta" if index in top else "cyan"
        bar = Text("█" * filled, style=style) + Text("·" * (BAR_WIDTH - filled), style="dim")
        table.add_row(
            str(index),
            f"{time_s:.2f}s",
            bar,
            *(f"{values[index]:.4f}" for values in report.scores.values()),
            f"{report.budgets[index]}/{report.tokens_per_frame}",
            style="bold" if index in top else None,
        )
    return table


def top_frames(values: Sequence[float]) -> list[int]:
    """The highest eighth of the frames (at least one): highlighted in charts and contact sheets."""
    return sorted(range(len(values)), key=lambda i: values[i], reverse=True)[: max(1, len(values) // 8)]


def bench_table(rows: list[dict[str, Any]]) -> Table:
    """`vidqa bench`: one row per setting, medians with min–max, speed-ups over `none`."""
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    columns = ("config", "tokens", "decode", "vision", "compress", "prefill", "tok/s", "total", "peak mem")
    for name in (*columns, "prefill ×", "total ×"):
        table.add_column(name, justify="left" if name == "config" else "right")

    def cell(row: dict[str, Any], name: str) -> str:
        stat = row[name]
        return f"{seconds(stat['median'])} ({seconds(stat['min'])}–{seconds(stat['max'])})"

    for row in rows:
        tokens = row["visual_tokens"]
        speed = row.get("speedup") or {}
        table.add_row(
            row["label"],
            f"{tokens['kept']}/{tokens['total']}",
            *(cell(row, name) for name in ("decode", "vision", "compress", "prefill")),
            f"{row['decode_tps']['median']:.1f}",
            cell(row, "total"),
            size(row["peak_memory_bytes"]["median"]),
            f"{speed['prefill']:.2f}×" if speed.get("prefill") else "-",
            f"{speed['total']:.2f}×" if speed.get("total") else "-",
        )
    return table
