"""Greedy generation with streamed text and honest timing, from inputs vidqa assembled itself.

Timing: a logits processor stamps the clock (device-synchronised) each time the model has produced a step's
logits, so `prefill` ends exactly when the first answer token's logits exist, and `generate` covers the rest.
Text is streamed through a `BaseStreamer` that decodes the ids so far and hands out only the new characters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.streamers import BaseStreamer

if TYPE_CHECKING:
    from vidqa.models.base import GenerateInputs, VideoAdapter


class Clock(Protocol):
    def now(self) -> float: ...


class DecodeStage(Protocol):
    """A decode-time method (DyCoke stage 2): a context manager active during generate, with figures."""

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> Any: ...
    def stats(self) -> dict[str, Any]: ...


@dataclass
class GenerationStats:
    prefill: float
    generate: float
    tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


class _StepClock(LogitsProcessor):
    """Records when each step's logits are ready (called once per generated token)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.times: list[float] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.times.append(self.clock.now())
        return scores


class _TextStream(BaseStreamer):
    """Hands each newly decoded piece of answer text to `on_text` (skipping the prompt put)."""

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None]) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.ids: list[int] = []
        self.emitted = 0
        self.saw_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self.saw_prompt:  # generate first puts the prompt ids (empty when given inputs_embeds)
            self.saw_prompt = True
            return
        self.ids.extend(int(v) for v in value.flatten())
        self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)

    def _emit(self, *, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
            return
        if len(text) > self.emitted:
            piece = text[self.emitted :]
            if self.emitted == 0:
                piece = piece.lstrip()
            self.emitted = len(text)
            if piece:
                self.on_text(piece)


def generate_streaming(
    adapter: VideoAdapter,
    inputs: GenerateInputs,
    *,
    clock: Clock,
    start: float,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    on_text: Callable[[str], None] | None = None,
    decode_stage: DecodeStage | None = None,
) -> tuple[str, GenerationStats]:
    """Greedy-decode from assembled inputs; returns the answer and its timings (from `start`)."""
    tokenizer = adapter.processor.tokenizer
    step_clock = _StepClock(clock)
    streamer = _TextStream(tokenizer, on_text) if on_text is not None else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with inputs.hooks_installed(), decode_stage or contextlib.nullcontext():
        output = adapter.model.generate(
            **inputs.generate_kwargs(),
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens or None,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            logits_processor=LogitsProcessorList([step_clock]),
            streamer=streamer,
            pad_token_id=pad_id,
        )
    end = clock.now()
    new_tokens = output[0]  # generate returns only new tokens when given inputs_embeds alone
    first = step_clock.times[0] if step_clock.times else end
    stats = GenerationStats(
        prefill=first - start,
        generate=end - first,
        tokens=int(new_tokens.shape[0]),
        extra=decode_stage.stats() if decode_stage is not None else {},
    )
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip(), stats
