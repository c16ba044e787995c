"""Questions about one encoded video under one compression setting: the unit every entry point runs.

`Session.ask` is vidqa's one item pipeline, used by `Engine.ask`, the batch runner, `bench` and everything
above them. It reads top to bottom as the phases of a question:

    prompt (tokenise the question) → compress (once per session) → prefill → generate

The video's own phases (decode or cache read, vision, cache write) happened when the video was encoded; the
session's first answer carries their timings, so summing a video's records counts each phase once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from vidqa.errors import UsageError
from vidqa.generation import generate_streaming
from vidqa.memory import peak_bytes, reset_peak
from vidqa.record import Result, Timings
from vidqa.settings import GenerationSettings

if TYPE_CHECKING:
    from vidqa.compress.base import Selection
    from vidqa.compress.registry import Compression
    from vidqa.encoding import VideoEncoding
    from vidqa.engine import Engine

TextCallback = Callable[[str], None]


class Session:
    """One video (already encoded) and one compression setting; `ask` answers a question about it."""

    def __init__(
        self,
        engine: Engine,
        encoding: VideoEncoding,
        compression: Compression,
        *,
        settings: dict[str, Any] | None = None,
    ) -> None:
        compression.impl.validate_model(engine.adapter.model, compression.params)
        self.engine = engine
        self.encoding = encoding
        self.compression = compression
        self.settings = settings or {}  # the run's settings, copied into every record
        self._selection: Selection | None = None

    @property
    def selection(self) -> Selection:
        """Which visual tokens reach the LLM (question-independent, computed on first use)."""
        if self._selection is None:
            self._selection = self.compression.select(self.encoding.visual.features)
        return self._selection

    @torch.inference_mode()
    def ask(
        self,
        question: str,
        *,
        generation: GenerationSettings | None = None,
        on_text: TextCallback | None = None,
    ) -> Result:
        """Answer one question: prompt → compress → prefill → generate, each phase timed."""
        generation = generation or GenerationSettings()
        question = question.strip()
        if not question:
            raise UsageError("the question is empty")
        engine, adapter, clock = self.engine, self.engine.adapter, self.engine.clock
        started = time.perf_counter()
        first = self.encoding.fresh  # the video's first question carries its phases
        timings, skipped = self._video_phases()

        mark = clock.now()
        prompt = adapter.prompt(question, self.encoding.layout)
        timings.prompt = clock.now() - mark

        selection, timings.compress = self._timed_selection(skipped)
        t, m, _ = self.encoding.visual.shape
        keep_mask = None if selection.kept == t * m else selection.mask(m)

        mark = clock.now()
        inputs = adapter.assemble(prompt, self.encoding.visual, keep_mask)
        decode_stage = self.compression.decode_stage(adapter.model, inputs.visual_positions)
        answer, stats = generate_streaming(
            adapter, inputs, clock=clock, start=mark, generation=generation, on_text=on_text,
            decode_stage=decode_stage,
        )  # fmt: skip
        timings.prefill, timings.generate = stats.prefill, stats.generate
        timings.total = time.perf_counter() - started + (self.encoding.timings.total if first else 0.0)
        return Result(
            video=self.encoding.video,
            question=question,
            answer=answer,
            model=engine.model_name,
            method=self.compression.method,
            keep=self.compression.keep,
            params=self.compression.params.model_dump(),
            frame_times=list(self.encoding.times),
            visual_total=t * m,
            visual_kept=selection.kept,
            timings=timings,
            generated_tokens=stats.tokens,
            peak_memory_bytes=peak_bytes(engine.device),
            cached=self.encoding.cached,
            skipped=skipped,
            warnings=list(self.encoding.warnings),
            settings=self.settings,
            extra=stats.extra,
        )

    def _video_phases(self) -> tuple[Timings, list[str]]:
        """The video's phase timings for its first question (its memory peak was reset before the vision
        tower ran); for later questions none, a fresh memory peak, and decode and vision named as skipped."""
        encoding = self.encoding
        if encoding.fresh:
            encoding.fresh = False
            return encoding.timings.video_phases(), ["decode", "vision"] if encoding.cached else []
        reset_peak(self.engine.device)
        return Timings(), ["decode", "vision"]

    def _timed_selection(self, skipped: list[str]) -> tuple[Selection, float]:
        if self._selection is not None:
            skipped.append("compress")
            return self._selection, 0.0
        mark = self.engine.clock.now()
        selection = self.selection
        return selection, self.engine.clock.now() - mark
