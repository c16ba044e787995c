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
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TextStreamer,
)

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
    finish_reason: str = "stop"  # stop (end of answer or a stop string), length, or cancelled


class _FirstTokenClock(LogitsProcessor):
    """Records when the first step's logits are ready (the end of prefill)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.first: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.first is None:
            self.first = self.clock.now()
        return scores


class _Cancelled(StoppingCriteria):
    """Ends generation after the current step once `should_stop()` says so (a client went away)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop
        self.fired = False

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        self.fired = self.fired or bool(self.should_stop())
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


class _StopStrings(StoppingCriteria):
    """Ends generation once the answer's text holds a stop string. Matches on decoded text (not on token
    pieces), so it works with any tokenizer; only the answer's last tokens are decoded each step."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], answer_start: int) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.answer_start = answer_start
        self.window = max(len(stop) for stop in stops) + 8  # tokens: each decodes to at least one character

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        tail = input_ids[0, self.answer_start :][-self.window :]
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        hit = first_stop(text, self.stops) is not None
        return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)


class _TextCallback(TextStreamer):
    """A `TextStreamer` that hands each finalised piece to a callback; leading whitespace is dropped, and
    with stop strings, text that could be the start of one is held back until it is known not to be (the
    stop string itself is never handed out)."""

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None], stops: tuple[str, ...] = ()) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_text = on_text
        self.started = False
        self.stops = stops
        self.pending = ""
        self.stopped = False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        if self.stopped:
            return
        if self.stops:
            text = self._hold_back(text, stream_end)
        if text:
            self.on_text(text)

    def _hold_back(self, text: str, stream_end: bool) -> str:
        self.pending += text
        cut = first_stop(self.pending, self.stops)
        if cut is not None:
            self.stopped = True
            out, self.pending = self.pending[:cut], ""
            return out
        keep = 0 if stream_end else max(len(stop) for stop in self.stops) - 1
        split = max(len(self.pending) - keep, 0)
        out, self.pending = self.pending[:split], self.pending[split:]
        return out


def first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the earliest stop string starts in `text`, or None."""
    found = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return min(found) if found else None


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
    should_stop: Callable[[], bool] | None = None,
) -> tuple[str, GenerationStats]:
    """Decode from assembled inputs (greedy unless `generation.temperature` > 0); returns the answer and its
    timings (from `start`).

    cache: a KV cache that already holds the start of the prompt (a fork of the video prefix, or a
    conversation's cache); `generate` then reads only the rest and extends the cache in place.
    should_stop: polled after every step; True ends the answer there (finish reason "cancelled").
    """
    from vidqa.prefix import cache_argument, cached_length

    tokenizer = adapter.processor.tokenizer
    first_token = _FirstTokenClock(clock)
    stops = tuple(generation.stop)
    streamer = _TextCallback(tokenizer, on_text, stops) if on_text is not None else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    cached = cached_length(cache) if cache is not None else 0
    kwargs = inputs.generate_kwargs(cached=cached)
    if cache is not None:
        kwargs[cache_argument(adapter.model)] = cache
    cancelled = _Cancelled(should_stop) if should_stop is not None else None
    criteria: list[StoppingCriteria] = [cancelled] if cancelled is not None else []
    if stops:
        criteria.append(_StopStrings(tokenizer, stops, inputs.length if inputs.echoes_prompt else 0))
    hooks = inputs.hooks_installed() if not cached else contextlib.nullcontext()
    with hooks, decode_stage or contextlib.nullcontext(), _seeded(generation, adapter.device):
        output = adapter.model.generate(
            **kwargs,
            **_sampling(generation),
            max_new_tokens=generation.max_new_tokens,
            min_new_tokens=generation.min_new_tokens or None,
            logits_processor=LogitsProcessorList([first_token]),
            stopping_criteria=StoppingCriteriaList(criteria),
            streamer=streamer,
            pad_token_id=pad_id,
        )
    end = clock.now()
    new_tokens = output[0, inputs.length :] if inputs.echoes_prompt else output[0]
    text = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
    cut = first_stop(text, stops) if stops else None
    first = first_token.first if first_token.first is not None else end
    stats = GenerationStats(
        prefill=first - start,
        generate=end - first,
        tokens=int(new_tokens.shape[0]),
        extra=decode_stage.stats() if decode_stage is not None else {},
        token_ids=new_tokens,
        finish_reason=_finish_reason(adapter, new_tokens, generation, cut is not None, cancelled),
    )
    return (text if cut is None else text[:cut].rstrip()), stats


def _sampling(generation: GenerationSettings) -> dict[str, Any]:
    if generation.temperature == 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {
        "do_sample": True,
        "temperature": generation.temperature,
        "top_p": generation.top_p,
        "top_k": None,
    }


@contextlib.contextmanager
def _seeded(generation: GenerationSettings, device: torch.device) -> Any:
    """A seeded sampling run draws from its own RNG state; the process's global state is left as it was."""
    if generation.seed is None or generation.temperature == 0:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(generation.seed)
        yield


def _finish_reason(
    adapter: VideoAdapter,
    new_tokens: torch.Tensor,
    generation: GenerationSettings,
    stop_string: bool,
    cancelled: _Cancelled | None,
) -> str:
    if cancelled is not None and cancelled.fired:
        return "cancelled"
    eos = adapter.model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if stop_string or (new_tokens.numel() and int(new_tokens[-1]) in eos_ids):
        return "stop"
    return "length" if new_tokens.numel() >= generation.max_new_tokens else "stop"
