"""The JSON record: one per (video, question). Its schema is public (design.md); keep it stable.

Pure data, no torch: the CLI imports this to write records for items that failed before any model ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vidqa.compress.registry import Compression

#: Every timed phase, in pipeline order; `total` is the item's wall time.
PHASES = (
    "decode",
    "cache_read",
    "vision",
    "cache_write",
    "prompt",
    "compress",
    "prefix",
    "prefill",
    "generate",
    "prefix_write",
    "total",
)
#: Phases before the first answer token: their sum is the time to first token (TTFT).
BEFORE_FIRST_TOKEN = PHASES[: PHASES.index("generate")]
#: Phases that belong to the video, not the question: they run once per video (or not at all on a reuse).
VIDEO_PHASES = ("decode", "cache_read", "vision", "cache_write")


@dataclass
class Timings:
    """Seconds per phase, device-synchronised; a phase that did not run is 0 (`skipped` says which reused).

    decode: PyAV demux + decode + RGB conversion of the sampled frames.
    cache_read: building the cache key and reading the entries (a feature hit replaces decode and vision; a
        prefix hit also replaces compress and prefix).
    vision: the processor over the pixels (resize, normalise, expand video tokens), vision tower, projector.
    cache_write: storing fresh features in the cache (before the answer).
    prompt: templating and tokenising the question around the video's stored token layout.
    compress: choosing the kept tokens (0 for method none; once per video and setting).
    prefix: the LLM reading the prompt up to the video's last kept token (once per video and setting).
    prefill: assembling the kept inputs + the LLM reading the rest of the prompt (the question), to the
        first answer token's logits.
    generate: the remaining decode steps.
    prefix_write: storing a freshly read video prefix in the cache (after the answer, once per video).
    total: wall time of the whole item.
    """

    decode: float = 0.0
    cache_read: float = 0.0
    vision: float = 0.0
    cache_write: float = 0.0
    prompt: float = 0.0
    compress: float = 0.0
    prefix: float = 0.0
    prefill: float = 0.0
    generate: float = 0.0
    prefix_write: float = 0.0
    total: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {name: round(getattr(self, name), 6) for name in PHASES}

    @property
    def first_token(self) -> float:
        """Time to the first answer token: every phase before it (model load excluded)."""
        return sum(getattr(self, name) for name in BEFORE_FIRST_TOKEN)

    def video_phases(self) -> Timings:
        """Only the per-video phases (what the first question of a video carries)."""
        return Timings(**{name: getattr(self, name) for name in VIDEO_PHASES})

    def add(self, other: Timings) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


def decode_rate(generated_tokens: int, generate_seconds: float) -> float | None:
    """Answer tokens per second after the first: `generate` spans the n − 1 steps after the first token."""
    if generated_tokens < 2 or generate_seconds <= 0:
        return None
    return (generated_tokens - 1) / generate_seconds


@dataclass
class Result:
    video: str
    question: str
    answer: str | None = None
    error: str | None = None
    model: str | None = None
    method: str = "none"
    keep: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    frame_times: list[float] = field(default_factory=list)
    visual_total: int = 0
    visual_kept: int = 0
    timings: Timings = field(default_factory=Timings)
    generated_tokens: int = 0
    prompt_tokens: int = 0  # tokens the LLM's prompt holds after dropping (read now or reused)
    finish_reason: str | None = None  # stop, length or cancelled (None when no answer was generated)
    peak_memory_bytes: int = 0
    cached: bool = False  # the video's features came from the on-disk feature cache
    skipped: list[str] = field(default_factory=list)  # phases not run because their result was reused
    prefix: dict[str, Any] = field(default_factory=dict)  # the video prefix: tokens, reused tokens, source
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # what produced the record (resume checks it)
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
            "params": self.params,
            "frames": {"count": len(self.frame_times), "times": [round(t, 4) for t in self.frame_times]},
            "visual_tokens": {"total": self.visual_total, "kept": self.visual_kept},
            "timings": self.timings.to_dict(),
            "generated_tokens": self.generated_tokens,
            "prompt_tokens": self.prompt_tokens,
            "finish_reason": self.finish_reason,
            "peak_memory_bytes": self.peak_memory_bytes,
            "cached": self.cached,
            "skipped": self.skipped,
            "prefix": self.prefix,
            "warnings": self.warnings,
            "settings": self.settings,
        }
        record.update(self.extra)
        return record

    @classmethod
    def failure(
        cls, video: str, question: str, error: str, *, started: float | None = None,
        compression: Compression | None = None, **fields: Any,
    ) -> Result:  # fmt: skip
        """A record for an item that failed; `compression` fills in the setting it was asked under."""
        if compression is not None:
            fields.update(
                method=compression.method, keep=compression.keep, params=compression.params.model_dump()
            )
        result = cls(video=video, question=question, error=error, **fields)
        if started is not None:
            result.timings.total = time.perf_counter() - started
        return result
