"""Typed run settings, validated once: which frames to sample and how to generate.

Compression settings live with the methods (`vidqa.compress.Compression`); precedence flag > preset > default
is applied by `vidqa.presets`. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vidqa.errors import UsageError


@dataclass(frozen=True)
class SamplingSettings:
    """Frames to sample: `frames` spread uniformly, or one every 1/`fps` s; `max_frames` caps either."""

    frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.frames is not None and self.fps is not None:
            raise UsageError("give either --frames or --fps, not both")
        if self.frames is not None and self.frames < 1:
            raise UsageError(f"--frames must be at least 1 (got {self.frames})")
        if self.fps is not None and not self.fps > 0:
            raise UsageError(f"--fps must be positive (got {self.fps})")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"--max-frames must be at least 1 (got {self.max_frames})")

    def with_frames(self, frames: int) -> SamplingSettings:
        return dataclasses.replace(self, frames=frames)

    def to_dict(self) -> dict[str, int | float | None]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated: at most `max_new_tokens`, at least `min_new_tokens` (benchmarks); greedy
    unless `temperature` > 0 (then sampled with `top_p`, reproducibly given a `seed`); ending early at any
    of the `stop` strings (which are not part of the answer)."""

    max_new_tokens: int = 128
    min_new_tokens: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.temperature <= 2:
            raise UsageError(f"temperature must be in [0, 2] (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1] (got {self.top_p})")
        if any(not stop for stop in self.stop):
            raise UsageError("a stop string must not be empty")
        if self.max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be at least 1 (got {self.max_new_tokens})")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise UsageError(
                f"--min-new-tokens must be in [0, {self.max_new_tokens}] (got {self.min_new_tokens})"
            )
