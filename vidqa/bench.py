"""`vidqa bench`: the same video and question through several compression settings, side by side.

Settings run interleaved — every round runs each setting once, in turn — after one warm-up run of each, so
drift (thermal, caches, other load) hits them all alike. Every run is the whole item, decode to last token,
cold (the engine must have no feature cache), and `min_new_tokens` forces equal answer lengths so decode speed
compares fairly. Reported: medians with the min–max spread, and each setting's speed-up over `none`. `prefill`
here is the LLM reading the whole prompt (the record's `prefix` + `prefill`: every run is a first question).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidqa.compress.registry import Compression, build_compression, get_method
from vidqa.errors import UsageError
from vidqa.record import PHASES, decode_rate
from vidqa.settings import GenerationSettings, SamplingSettings


def configurations(
    methods: list[str],
    keeps: list[float],
    *,
    params: Mapping[str, Any] | None = None,
    extra: list[Compression] | None = None,
) -> tuple[list[Compression], list[str]]:
    """Method × keep grid (+ `extra` settings, e.g. presets), with `none` first as the baseline.

    `params` apply to every method that has a parameter of that name. A keep a method cannot reach is
    skipped with a note (DyCoke below 0.25); keep 1 is `none`.
    """
    params = dict(params or {})
    configs: list[Compression] = []
    skipped: list[str] = []
    used: set[str] = set()
    for method in methods:
        impl = get_method(method)  # an unknown name is a usage error
        own = {name: value for name, value in params.items() if name in impl.Params.model_fields}
        used |= set(own)
        if method == "none":
            configs.append(build_compression("none"))
            continue
        for keep in keeps:
            if keep >= 1.0:
                continue
            try:
                configs.append(build_compression(method, keep=keep, params=own))
            except UsageError as exc:
                skipped.append(f"{method} at keep {keep:g} ({exc})")
    if set(params) - used:
        raise UsageError(f"-p {', '.join(sorted(set(params) - used))}: no benchmarked method has it")
    configs += extra or []
    if not configs:
        raise UsageError("no configuration to run: check --methods and --keep")
    baseline = build_compression("none")
    return [baseline, *dict.fromkeys(c for c in configs if c != baseline)], skipped


@dataclass
class ConfigStats:
    config: Compression
    runs: list[dict[str, Any]] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        if name == "decode_tps":
            rates = (decode_rate(r["generated_tokens"], r["timings"]["generate"]) for r in self.runs)
            return [rate for rate in rates if rate is not None]
        if name == "peak_memory_bytes":
            return [float(r["peak_memory_bytes"]) for r in self.runs]
        if name == "prefill":  # a cold run's whole prompt: the video prefix, then the question
            return [r["timings"]["prefix"] + r["timings"]["prefill"] for r in self.runs]
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
            **self.config.to_dict(),
            "label": self.config.label,
            "visual_tokens": last["visual_tokens"],
            "generated_tokens": last["generated_tokens"],
            "repeats": len(self.runs),
        }
        for name in (*PHASES, "decode_tps", "peak_memory_bytes"):
            low, high = self.spread(name)
            out[name] = {"median": self.median(name), "min": low, "max": high}
        out["speedup"] = {
            name: baseline.median(name) / self.median(name)
            if baseline is not None and self.median(name) > 0
            else None
            for name in ("prefill", "total")
        }
        return out


def run_bench(
    engine: Any,
    video: str | Path,
    question: str,
    configs: list[Compression],
    *,
    sampling: SamplingSettings,
    generation: GenerationSettings,
    repeat: int = 3,
    on_progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Warm up once per setting, then `repeat` interleaved rounds; one summary per setting, with speed-ups
    over the `none` setting when there is one."""
    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1 (got {repeat})")
    if engine.cache is not None:
        raise UsageError("bench times cold items: load the engine without a feature cache")
    for config in configs:
        engine.validate(config)
    stats = [ConfigStats(config) for config in configs]
    for round_index in range(repeat + 1):  # round 0 is the warm-up
        for entry in stats:
            if on_progress:
                name = "warm-up" if round_index == 0 else f"round {round_index}/{repeat}"
                on_progress(f"{name}: {entry.config.label}")
            session = engine.session(
                video, entry.config, sampling=sampling, generation=generation, keep_prefix=False
            )
            result = session.ask(question, generation=generation)
            if round_index > 0:
                entry.runs.append(result.to_dict())
    baseline = next((entry for entry in stats if entry.config.method == "none"), None)
    return [entry.summary(baseline) for entry in stats]
