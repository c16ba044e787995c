"""The JSON record: one per (video, question). Its schema is public (design.md); keep it stable.

Pure data, no torch: the CLI imports this to write records for items that failed before any model ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

PHASES = ("decode", "vision", "compress", "prefill", "generate", "total")


@dataclass
class Timings:
    """Seconds per phase, device-synchronised.

    decode: PyAV demux + decode + RGB conversion of the sampled frames.
    vision: processor preprocessing (resize, normalise, tokenise) + vision tower + projector.
    compress: choosing the kept tokens (0 for method none).
    prefill: from visual tokens ready to the first answer token's logits (assembling inputs + LLM prefill).
    generate: the remaining decode steps. total: wall time of the whole item.
    """

    decode: float = 0.0
    vision: float = 0.0
    compress: float = 0.0
    prefill: float = 0.0
    generate: float = 0.0
    total: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {name: round(getattr(self, name), 6) for name in PHASES}


@dataclass
class Result:
    video: str
    question: str
    answer: str | None = None
    error: str | None = None
    model: str | None = None
    method: str = "none"
    keep: float = 1.0
    frame_times: list[float] = field(default_factory=list)
    visual_total: int = 0
    visual_kept: int = 0
    timings: Timings = field(default_factory=Timings)
    generated_tokens: int = 0
    peak_memory_bytes: int = 0
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    exception: BaseException | None = field(
        default=None, repr=False, compare=False
    )  # for --debug; not in JSON

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "video": self.video,
            "question": self.question,
            "answer": self.answer,
            "error": self.error,
            "model": self.model,
            "method": self.method,
            "keep": self.keep,
            "frames": {"count": len(self.frame_times), "times": [round(t, 4) for t in self.frame_times]},
            "visual_tokens": {"total": self.visual_total, "kept": self.visual_kept},
            "timings": self.timings.to_dict(),
            "generated_tokens": self.generated_tokens,
            "peak_memory_bytes": self.peak_memory_bytes,
            "cached": self.cached,
        }
        record.update(self.extra)
        return record

    @classmethod
    def failure(
        cls, video: str, question: str, error: str, *, started: float | None = None, **fields: Any
    ) -> Result:
        result = cls(video=video, question=question, error=error, **fields)
        if started is not None:
            result.timings.total = time.perf_counter() - started
        return result
