"""From eval records to the side-by-side table: per setting and per task, accuracy with its 95 % interval,
its share of `none`'s accuracy, McNemar's p against `none` on the same questions, kept visual tokens and
the LLM's time per question; and the divergence gate that fails a run whose compression did nothing.

Accuracy counts answered questions (failed ones are listed, not scored); an unparsed answer is wrong.
Overall accuracy is over all questions (micro average). Times are the setting's own work per question —
selection, the video prefix (shared by a video's questions, so spread over them), the question's prefill
and the answer — not decoding and the vision tower, which every setting shares (each video is encoded once).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vidqa.evaluation.stats import mcnemar_exact, wilson_interval

OVERALL = "overall"
#: Fewer paired questions than this and identical answers are plausible by chance: a warning, not a failure.
GATE_MIN_ITEMS = 10


def setting_key(method: str, keep: float, params: dict[str, Any]) -> str:
    """One compression setting as text: what tells settings apart in records and in the table."""
    listed = ",".join(f"{name}={params[name]}" for name in sorted(params))
    return f"{method}|{keep:g}|{listed}"


@dataclass
class Score:
    """One setting on one task (or overall)."""

    n: int = 0
    correct: int = 0
    failed: int = 0
    unparsed: int = 0
    kept: list[int] = field(default_factory=list)
    total_tokens: list[int] = field(default_factory=list)
    prefill: list[float] = field(default_factory=list)
    llm: list[float] = field(default_factory=list)
    pct_of_none: float | None = None
    mcnemar_p: float | None = None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        low, high = wilson_interval(self.correct, self.n)
        return {
            "accuracy": self.accuracy,
            "n": self.n,
            "correct": self.correct,
            "ci95": [low, high] if self.n else None,
            "pct_of_none": self.pct_of_none,
            "mcnemar_p": self.mcnemar_p,
            "failed": self.failed,
            "unparsed": self.unparsed,
            "kept_tokens": _mean(self.kept),
            "visual_tokens": _mean(self.total_tokens),
            "prefill_s": _mean(self.prefill),
            "llm_s": _mean(self.llm),
        }


@dataclass
class Setting:
    label: str
    method: str
    keep: float
    params: dict[str, Any]
    scores: dict[str, Score] = field(default_factory=dict)  # task → score; OVERALL too
    correct_by_item: dict[str, bool] = field(default_factory=dict)
    output_by_item: dict[str, str] = field(default_factory=dict)

    def score(self, task: str) -> Score:
        return self.scores.setdefault(task, Score())


@dataclass
class Summary:
    settings: list[Setting]
    tasks: list[str]
    unparsed: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    problems: list[str]  # the divergence gate's failures: the run must not pass
    notes: list[str]  # what the gate could not decide

    def to_dict(self) -> dict[str, Any]:
        return {
            "configs": [
                {
                    "method": s.method,
                    "keep": s.keep,
                    "params": s.params,
                    "label": s.label,
                    OVERALL: s.score(OVERALL).to_dict(),
                    "tasks": {task: s.score(task).to_dict() for task in self.tasks},
                }
                for s in self.settings
            ],
            "tasks": self.tasks,
            "unparsed": self.unparsed,
            "failed": self.failed,
            "gate": {"passed": not self.problems, "problems": self.problems, "notes": self.notes},
        }


def summarize(records: Iterable[dict[str, Any]]) -> Summary:
    """Score records (the newest per question and setting, as given) in the order settings first appear."""
    settings: dict[str, Setting] = {}
    tasks: list[str] = []
    unparsed, failed = [], []
    item_task: dict[str, str] = {}
    for record in records:
        params = record.get("params") or {}
        method, keep = str(record["method"]), float(record["keep"])
        identity = setting_key(method, keep, params)
        label = "none" if method == "none" else f"{method} {keep:g}"
        setting = settings.setdefault(identity, Setting(label, method, keep, params))
        task, item = str(record.get("task", "all")), str(record["item"])
        item_task[item] = task
        if task not in tasks:
            tasks.append(task)
        brief = {"item": item, "method": method, "keep": keep}
        for scope in (task, OVERALL):
            score = setting.score(scope)
            if record.get("error"):
                score.failed += 1
                continue
            score.n += 1
            score.correct += bool(record.get("correct"))
            score.unparsed += record.get("prediction") is None
            visual = record.get("visual_tokens") or {}
            score.kept.append(int(visual.get("kept", 0)))
            score.total_tokens.append(int(visual.get("total", 0)))
            timings = record.get("timings") or {}
            prefill = timings.get("prefix", 0.0) + timings.get("prefill", 0.0)
            score.prefill.append(prefill)
            score.llm.append(prefill + timings.get("compress", 0.0) + timings.get("generate", 0.0))
        if record.get("error"):
            failed.append({**brief, "error": record["error"]})
            continue
        setting.correct_by_item[item] = bool(record.get("correct"))
        setting.output_by_item[item] = str(record.get("output") or "")
        if record.get("prediction") is None:
            unparsed.append({**brief, "output": record.get("output")})
    ordered = [s for s in settings.values() if s.method == "none"]
    ordered += [s for s in settings.values() if s.method != "none"]
    _compare_with_none(ordered, item_task)
    problems, notes = divergence_gate(ordered)
    return Summary(ordered, tasks, unparsed, failed, problems, notes)


def _compare_with_none(settings: list[Setting], item_task: dict[str, str]) -> None:
    """Each setting's share of `none`'s accuracy and McNemar's p on the questions both answered."""
    baseline = next((s for s in settings if s.method == "none"), None)
    if baseline is None:
        return
    for setting in settings:
        if setting is baseline:
            continue
        for scope, score in setting.scores.items():
            reference = baseline.scores.get(scope)
            if reference is not None and reference.accuracy and score.accuracy is not None:
                score.pct_of_none = 100 * score.accuracy / reference.accuracy
            paired = [
                item for item in setting.correct_by_item
                if item in baseline.correct_by_item and scope in (OVERALL, item_task[item])
            ]  # fmt: skip
            if paired:
                only_this = sum(
                    setting.correct_by_item[i] and not baseline.correct_by_item[i] for i in paired
                )
                only_none = sum(
                    baseline.correct_by_item[i] and not setting.correct_by_item[i] for i in paired
                )
                score.mcnemar_p = mcnemar_exact(only_this, only_none)


def divergence_gate(settings: list[Setting]) -> tuple[list[str], list[str]]:
    """Fail a run whose compressed settings answer byte for byte as `none` on every question (compression
    silently not applied), or whose answers are all empty."""
    problems: list[str] = []
    notes: list[str] = []
    for setting in settings:
        outputs = setting.output_by_item
        if outputs and not any(text.strip() for text in outputs.values()):
            problems.append(f"{setting.label}: every answer is empty ({len(outputs)} questions)")
    baseline = next((s for s in settings if s.method == "none"), None)
    compressed = [s for s in settings if s.method != "none" and s.keep < 1]
    if baseline is None:
        if compressed:
            notes.append("no `none` setting: the check that compression changed the answers did not run")
        return problems, notes
    for setting in compressed:
        paired = [item for item in setting.output_by_item if item in baseline.output_by_item]
        if not paired or any(setting.output_by_item[i] != baseline.output_by_item[i] for i in paired):
            continue
        message = f"{setting.label} answered exactly as none on all {len(paired)} questions"
        if len(paired) >= GATE_MIN_ITEMS:
            problems.append(f"{message}: compression was not applied")
        else:
            notes.append(f"{message} (too few to tell whether compression was applied)")
    return problems, notes


def _mean(values: list[float] | list[int]) -> float | None:
    return statistics.fmean(values) if values else None
