"""Greedy generation with streamed text and honest timing, from inputs vidqa assembled itself.

Timing: a logits processor stamps the clock (device-synchronised) when the first step's logits exist, so
`prefill` ends exactly at the first answer token and `generate` covers the rest (it then stops stamping: one
device sync per answer, not per token). Text is streamed through transformers' `TextStreamer`, which hands
out whole words (and CJK characters as they come) and holds back incomplete multi-byte characters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TextStreamer

from vidqa.settings import GenerationSettings

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
    token_ids: torch.Tensor | None = None  # (n,) the answer's token ids


class _FirstTokenClock(LogitsProcessor):
    """Records when the first step's logits are ready (the end of prefill)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.first: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.first is None:
            self.first = self.clock.now()
        return scores


class _TextCallback(TextStreamer):
    """A `TextStreamer` that hands each finalised piece to a callback; leading whitespace is dropped."""

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_text = on_text
        self.started = False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        if text:
            self.on_text(text)


def generate_streaming(
    adapter: VideoAdapter,
    inputs: GenerateInputs,
    *,
    clock: Clock,
    start: float,
    generation: GenerationSettings,
    on_text: Callable[[str], None] | None = None,
    decode_stage: DecodeStage | None = None,
    cache: Any = None,
) -> tuple[str, GenerationStats]:
    """Greedy-decode from assembled inputs; returns the answer and its timings (from `start`).

    cache: a KV cache that already holds the start of the prompt (a fork of the video prefix, or a
    conversation's cache); `generate` then reads only the rest and extends the cache in place.
    """
    from vidqa.prefix import cache_argument, cached_length

    tokenizer = adapter.processor.tokenizer
    first_token = _FirstTokenClock(clock)
    streamer = _TextCallback(tokenizer, on_text) if on_text is not None else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    cached = cached_length(cache) if cache is not None else 0
    kwargs = inputs.generate_kwargs(cached=cached)
    if cache is not None:
        kwargs[cache_argument(adapter.model)] = cache
    hooks = inputs.hooks_installed() if not cached else contextlib.nullcontext()
    with hooks, decode_stage or contextlib.nullcontext():
        output = adapter.model.generate(
            **kwargs,
            max_new_tokens=generation.max_new_tokens,
            min_new_tokens=generation.min_new_tokens or None,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            logits_processor=LogitsProcessorList([first_token]),
            streamer=streamer,
            pad_token_id=pad_id,
        )
    end = clock.now()
    new_tokens = output[0, inputs.length :] if inputs.echoes_prompt else output[0]
    first = first_token.first if first_token.first is not None else end
    stats = GenerationStats(
        prefill=first - start,
        generate=end - first,
        tokens=int(new_tokens.shape[0]),
        extra=decode_stage.stats() if decode_stage is not None else {},
        token_ids=new_tokens,
    )
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip(), stats
