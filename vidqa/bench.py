"""`vidqa bench`: the same video and question through several configurations, side by side.

Configurations (method × keep) run interleaved — every repeat runs each configuration once, in turn — after
one warm-up run of each, so drift (thermal, caches, other load) hits them all alike. Every run is the whole
item, decode to last token, with the feature cache off, and `min_new_tokens` forces equal answer lengths
so decode speed compares fairly. Reported: medians with the min–max spread, and each configuration's
speed-up over `none`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidqa.compress.registry import build_compression, method_names
from vidqa.errors import UsageError
from vidqa.settings import GenerationSettings, SamplingSettings

METRICS = ("decode", "vision", "compress", "prefill", "generate", "total")


@dataclass(frozen=True)
class BenchConfig:
    method: str
    keep: float

    @property
    def label(self) -> str:
        return "none" if self.method == "none" else f"{self.method} {self.keep:g}"


def configurations(methods: list[str], keeps: list[float]) -> tuple[list[BenchConfig], list[str]]:
    """Method × keep grid: `none` once (keep 1), DyCoke only where keep ≥ 0.25; skipped ones explained."""
    configs: list[BenchConfig] = []
    skipped: list[str] = []
    for method in methods:
        if method == "none":
            configs.append(BenchConfig("none", 1.0))
            continue
        for keep in keeps:
            if keep >= 1.0:
                continue  # keep 1 is `none`
            try:
                build_compression(method, keep=keep)
            except UsageError as exc:
                if method not in method_names():
                    raise
                skipped.append(f"{method} at keep {keep:g} ({exc})")
                continue
            configs.append(BenchConfig(method, keep))
    if not configs:
        raise UsageError("no configuration to run: check --methods and --keep")
    if all(c.method != "none" for c in configs):
        configs.insert(0, BenchConfig("none", 1.0))  # the baseline for speed-ups
    return list(dict.fromkeys(configs)), skipped


@dataclass
class ConfigStats:
    config: BenchConfig
    runs: list[dict[str, Any]] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        if name == "decode_tps":
            return [
                (r["generated_tokens"] - 1) / r["timings"]["generate"]
                for r in self.runs
                if r["timings"]["generate"] > 0 and r["generated_tokens"] > 1
            ]
        if name == "peak_memory_bytes":
            return [float(r["peak_memory_bytes"]) for r in self.runs]
        return [r["timings"][name] for r in self.runs]

    def median(self, name: str) -> float:
        values = self.values(name)
        return statistics.median(values) if values else 0.0

    def spread(self, name: str) -> tuple[float, float]:
        values = self.values(name)
        return (min(values), max(values)) if values else (0.0, 0.0)

    def summary(self, baseline: ConfigStats | None) -> dict[str, Any]:
        last = self.runs[-1]
        out: dict[str, Any] = {
            "method": self.config.method,
            "keep": self.config.keep,
            "visual_tokens": last["visual_tokens"],
            "generated_tokens": last["generated_tokens"],
            "repeats": len(self.runs),
        }
        for name in (*METRICS, "decode_tps", "peak_memory_bytes"):
            low, high = self.spread(name)
            out[name] = {"median": self.median(name), "min": low, "max": high}
        if baseline is not None:
            out["speedup"] = {
                name: baseline.median(name) / self.median(name) if self.median(name) > 0 else None
                for name in ("prefill", "total")
            }
        return out


def run_bench(
    engine: Any,
    video: str | Path,
    question: str,
    configs: list[BenchConfig],
    *,
    sampling: SamplingSettings,
    repeat: int = 3,
    max_new_tokens: int = 32,
    min_new_tokens: int | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Warm up once per configuration, then `repeat` interleaved rounds; one summary per configuration."""
    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1 (got {repeat})")
    min_new = max_new_tokens if min_new_tokens is None else min_new_tokens
    stats = [ConfigStats(config) for config in configs]
    for round_index in range(repeat + 1):  # round 0 is the warm-up
        for entry in stats:
            if on_progress:
                name = "warm-up" if round_index == 0 else f"round {round_index}/{repeat}"
                on_progress(f"{name}: {entry.config.label}")
            compression = build_compression(entry.config.method, keep=entry.config.keep)
            generation = GenerationSettings(max_new_tokens=max_new_tokens, min_new_tokens=min_new)
            session = engine.session(video, compression, sampling=sampling, generation=generation)
            result = session.ask(question, generation=generation)
            if round_index > 0:
                entry.runs.append(result.to_dict())
    baseline = next((s for s in stats if s.config.method == "none"), None)
    return [s.summary(baseline) for s in stats]
