"""`vidqa eval`'s tables (rich): settings side by side overall, then accuracy per task. Renders the summary's
JSON form, so the table and `--json` can never disagree."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from vidqa.evaluation.report import OVERALL


def overall_table(summary: dict[str, Any]) -> Table:
    """One row per setting: accuracy and its 95 % interval, % of none, McNemar p, kept tokens, time."""
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, title_justify="left")
    for name in ("setting", "n", "accuracy", "95% CI", "% of none", "McNemar p", "kept tokens", "prefill",
                 "LLM time", "unparsed", "failed"):  # fmt: skip
        table.add_column(name, justify="left" if name == "setting" else "right")
    for config in summary["configs"]:
        score = config[OVERALL]
        table.add_row(
            config["label"],
            str(score["n"]),
            _number(score["accuracy"], "{:.1%}"),
            _interval(score),
            _number(score["pct_of_none"], "{:.1f} %"),
            _number(score["mcnemar_p"], "{:.3g}"),
            _tokens(score),
            _number(score["prefill_s"], "{:.3f} s"),
            _number(score["llm_s"], "{:.3f} s"),
            str(score["unparsed"]),
            str(score["failed"]),
        )
    return table


def task_table(summary: dict[str, Any]) -> Table:
    """Accuracy per task (rows) and setting (columns), with its share of `none` in parentheses."""
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("task")
    table.add_column("n", justify="right")
    for config in summary["configs"]:
        table.add_column(config["label"], justify="right")
    for task in [*summary["tasks"], OVERALL]:
        scores = [
            config[OVERALL] if task == OVERALL else config["tasks"][task] for config in summary["configs"]
        ]
        n = max((score["n"] for score in scores), default=0)
        cells = []
        for score in scores:
            cell = _number(score["accuracy"], "{:.1%}")
            if score["pct_of_none"] is not None:
                cell += f" ({score['pct_of_none']:.0f} %)"
            cells.append(cell)
        table.add_row(task, str(n), *cells)
    return table


def _interval(score: dict[str, Any]) -> str:
    if score["ci95"] is None:
        return "-"
    low, high = score["ci95"]
    return f"{low:.1%}–{high:.1%}"


def _tokens(score: dict[str, Any]) -> str:
    if score["kept_tokens"] is None:
        return "-"
    return f"{score['kept_tokens']:.0f}/{score['visual_tokens']:.0f}"


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)
