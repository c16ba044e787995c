"""Questions about one encoded video under one compression setting: the unit every entry point runs.

`Session.ask` is vidqa's one item pipeline, used by `Engine.ask`, the batch runner, `chat`, `bench` and
everything above them. It reads top to bottom as the phases of a question:

    prompt (tokenise the question) → compress (once per session) → prefix (once per session) → prefill
    → generate

The video's own phases (decode or cache read, vision, cache write) happened when the video was encoded; the
session's first answer carries their timings, so summing a video's records counts each phase once. The
selection and the video prefix (the LLM's cache up to the video's last kept token, `vidqa.prefix`) are
computed on the first question, or read from the on-disk cache, and reused by every later one: a second
question costs only its own tokens.

A session is also a conversation: `ask(..., follow_up=True)` puts the earlier turns (`history`) in the
prompt, in the chat template's multi-turn form, and continues from the previous answer's cache where the
model's cache can be cut back exactly (attention-only models); otherwise from the video prefix.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from vidqa.compress.base import Selection
from vidqa.compress.registry import needs_saliency
from vidqa.errors import CacheError, PromptTooLongError, UsageError
from vidqa.generation import generate_streaming
from vidqa.memory import peak_bytes, reset_peak
from vidqa.models.base import Turn, VisualTokens
from vidqa.prefix import (
    UnsupportedCache,
    VideoPrefix,
    cache_entry,
    cached_length,
    croppable,
    prefix_end,
    read_prefix,
    restore_cache,
)
from vidqa.record import Result, Timings
from vidqa.settings import GenerationSettings

if TYPE_CHECKING:
    from transformers import Cache

    from vidqa.compress.registry import Compression
    from vidqa.encoding import VideoEncoding
    from vidqa.engine import Engine
    from vidqa.models.base import GenerateInputs, Prompt

TextCallback = Callable[[str], None]
KEEP_MASK = "keep_mask"


@dataclass
class _Conversation:
    """The cache after the last follow-up answer and the token ids it holds (1-D, same length)."""

    cache: Cache
    token_ids: torch.Tensor


class Session:
    """One video (already encoded) and one compression setting; `ask` answers a question about it."""

    def __init__(
        self,
        engine: Engine,
        encoding: VideoEncoding,
        compression: Compression,
        *,
        settings: dict[str, Any] | None = None,
        keep_prefix: bool = True,
    ) -> None:
        """keep_prefix=False: nothing will reuse the video prefix (one question, no disk cache), so each
        question is read by the LLM in one piece, without keeping a cache (a little faster on a CPU)."""
        compression.impl.validate_model(engine.adapter.model, compression.params)
        self.engine = engine
        self.encoding = encoding
        self.compression = compression.for_video(*encoding.visual.shape[:2])  # a token budget becomes a ratio
        wanted = needs_saliency(self.compression)
        if wanted and (encoding.visual.saliency is None or encoding.visual.saliency_mode != wanted):
            engine.add_saliency(encoding, wanted)  # an encoding made for another method (e.g. in `chat`)
        self._visual: VisualTokens | None = None  # the features the LLM reads (a merging method's values in)
        self.settings = settings or {}  # the run's settings, copied into every record
        self.keep_prefix = keep_prefix
        self.history: list[Turn] = []  # the conversation so far (follow-up questions only)
        self._selection: Selection | None = None
        self._prefix: VideoPrefix | None = None
        self._prefix_source = ""  # how the prefix was obtained: "read" (by the LLM, here) or "disk"
        self._prefix_uses = 0
        self._looked_up = False  # the on-disk cache was asked for this session's prefix
        self._unstored_key: str | None = None  # where to store the prefix after the answer (a disk miss)
        self._conversation: _Conversation | None = None

    @property
    def selection(self) -> Selection:
        """Which visual tokens reach the LLM (question-independent, computed on first use)."""
        if self._selection is None:
            inputs = self.engine.selection_inputs(self.encoding)
            self._selection = self.compression.select(self.encoding.visual.features, inputs)
        return self._selection

    @property
    def visual(self) -> VisualTokens:
        """The visual tokens the LLM reads: the encoding's, with a merging method's replacement features
        written into its kept tokens' slots (positions unchanged; Qwen3-VL's deepstack levels are not merged,
        only selected)."""
        if self._visual is None:
            self._visual = with_replacements(self.encoding.visual, self.selection)
        return self._visual

    def reset(self) -> None:
        """Forget the conversation (the video, its selection and prefix stay)."""
        self.history.clear()
        self._conversation = None

    @torch.inference_mode()
    def ask(
        self,
        question: str,
        *,
        generation: GenerationSettings | None = None,
        on_text: TextCallback | None = None,
        follow_up: bool = False,
        history: Sequence[Turn] | None = None,
        system: str | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Result:
        """Answer one question: prompt → compress → prefix → prefill → generate, each phase timed.

        follow_up: the question continues the session's conversation (`self.history`) and is added to it.
        history: the question is a turn of a conversation whose earlier turns (possibly none) are these,
        leaving the session's own untouched (a server receives the whole conversation with every request).
        Either way the previous answer's cache is kept and continued from where the prompts agree.
        system: a system message before the video's turn.
        should_stop: polled after every generated token; True ends the answer there.
        """
        generation = generation or GenerationSettings()
        question = question.strip()
        if not question:
            raise UsageError("the question is empty")
        engine, adapter, clock = self.engine, self.engine.adapter, self.engine.clock
        started = time.perf_counter()
        first = self.encoding.fresh  # the video's first question carries its phases
        timings, skipped = self._video_phases()
        warnings = list(self.encoding.warnings)

        turns = self.history if follow_up else (history or ())
        conversing = follow_up or history is not None
        mark = clock.now()
        prompt = adapter.prompt(question, self.encoding.layout, turns, system=system)
        timings.prompt = clock.now() - mark

        if not self._looked_up:
            self._looked_up = True
            self._read_stored_prefix(prompt, timings)
        selection, timings.compress = self._timed_selection(skipped)
        t, m, _ = self.encoding.visual.shape
        keep_mask = None if selection.kept == t * m else selection.mask(m)

        mark = clock.now()  # prefill: assembling, forking the cache and reading the question, less `prefix`
        inputs = adapter.assemble(prompt, self.visual, keep_mask)
        _check_context(adapter, inputs.length, generation.max_new_tokens)
        cache, reuse = self._cache_for(prompt, inputs, timings, skipped, warnings, follow_up=conversing)
        decode_stage = self.compression.decode_stage(adapter.model, inputs.visual_positions)
        self._conversation = None  # the cache is being extended: it is whole again only if the answer ends
        answer, stats = generate_streaming(
            adapter, inputs, clock=clock, start=mark, generation=generation, on_text=on_text,
            decode_stage=decode_stage, cache=cache, should_stop=should_stop,
        )  # fmt: skip
        timings.prefill, timings.generate = stats.prefill - timings.prefix, stats.generate
        if conversing and stats.finish_reason != "cancelled":  # a cut-off answer is not part of the talk
            if follow_up:
                self.history.append(Turn(question, answer))
            self._keep_conversation(cache, inputs, stats.token_ids)
        timings.prefix_write = self._store_prefix(warnings)
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
            prompt_tokens=inputs.length,
            finish_reason=stats.finish_reason,
            peak_memory_bytes=peak_bytes(engine.device),
            cached=self.encoding.cached,
            skipped=skipped,
            prefix=reuse,
            warnings=warnings,
            settings=self.settings,
            extra={**stats.extra, **self._selection_facts()},
        )

    def _selection_facts(self) -> dict[str, Any]:
        """The record's `tokens` (the budget asked for; its `keep` is the ratio it came to) and, for FastVID,
        the variant that ran and its segments."""
        facts: dict[str, Any] = {}
        if self.compression.tokens is not None:
            facts["tokens"] = self.compression.tokens
        segments = getattr(self._selection, "segments", None)
        if segments:
            facts["fastvid"] = {"variant": self._selection.variant, "segments": list(segments)}  # type: ignore[union-attr]
        return facts

    # -- the video's phases and the selection ------------------------------------------------------------
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

    # -- the video prefix ---------------------------------------------------------------------------------
    def _cache_for(
        self,
        prompt: Prompt,
        inputs: GenerateInputs,
        timings: Timings,
        skipped: list[str],
        warnings: list[str],
        *,
        follow_up: bool,
    ) -> tuple[Cache | None, dict[str, Any]]:
        """The cache this question starts from (None: read the whole prompt), and what the record says."""
        length = inputs.length - (int(prompt["input_ids"].shape[1]) - self._prefix_end(prompt))
        if not self.keep_prefix and self._prefix is None and not follow_up:
            return None, {"tokens": length, "reused_tokens": 0, "source": "none"}
        if self._prefix is not None and not self._prefix.starts(inputs):
            warnings.append("the prompt differs before the video's end: its prefix was read again")
            self._prefix, self._unstored_key = None, None
        if self._prefix is None:
            mark = self.engine.clock.now()
            self._prefix = read_prefix(self.engine.adapter, inputs, length)
            timings.prefix = self.engine.clock.now() - mark
            self._prefix_source, self._prefix_uses = "read", 0
        source = self._prefix_source if self._prefix_uses == 0 else "memory"
        self._prefix_uses += 1
        if source != "read":
            skipped.append("prefix")
        record = {"tokens": length, "reused_tokens": 0 if source == "read" else length}
        conversation = self._conversation if follow_up else None
        if conversation is not None:
            common = _common_length(conversation.token_ids, inputs.token_ids[0])
            if length < common < inputs.length:
                _crop(conversation.cache, common)
                return conversation.cache, {**record, "reused_tokens": common, "source": "conversation"}
        return self._prefix.fork(), {**record, "source": source}

    def _prefix_end(self, prompt: Prompt) -> int:
        return prefix_end(prompt["input_ids"], self.engine.adapter.video_token_id)

    def _keep_conversation(
        self, cache: Cache, inputs: GenerateInputs, answer_ids: torch.Tensor | None
    ) -> None:
        """Keep the cache a follow-up continues from, when it can be cut back exactly to a common start."""
        if answer_ids is None or not croppable(cache):
            return
        ids = torch.cat([inputs.token_ids[0], answer_ids.to(inputs.token_ids.device)])
        self._conversation = _Conversation(cache, ids[: cached_length(cache)])

    def _stored_key(self, prompt: Prompt) -> str | None:
        """The on-disk key of this session's prefix (None without a cache or a feature key)."""
        if self.engine.cache is None or self.encoding.key is None:
            return None
        ids = prompt["input_ids"][0, : self._prefix_end(prompt)]
        return self.engine.prefix_key(self.encoding.key, self.compression, ids)

    def _read_stored_prefix(self, prompt: Prompt, timings: Timings) -> None:
        """A prefix entry on disk gives both the selection and the prefix cache; on a miss, remember where
        to store the prefix once it is read."""
        key = self._stored_key(prompt)
        if key is None or self.engine.cache is None:
            return
        mark = self.engine.clock.now()
        entry = self.engine.cache.get(key)
        restored = restore_cache(self.engine.adapter.model, *entry) if entry is not None else None
        timings.cache_read += self.engine.clock.now() - mark
        if entry is None or restored is None:
            self._unstored_key = key
            return
        self._prefix, self._prefix_source, self._prefix_uses = restored, "disk", 0
        self._selection = Selection.from_mask(entry[0][KEEP_MASK].to(self.encoding.visual.features.device))

    def _store_prefix(self, warnings: list[str]) -> float:
        """Write a prefix read in this session to the on-disk cache, once; returns the seconds it took."""
        key, self._unstored_key = self._unstored_key, None
        if key is None or self._prefix is None or self._prefix_source != "read" or self.engine.cache is None:
            return 0.0
        start = time.perf_counter()
        try:
            tensors, meta = cache_entry(self._prefix)
            tensors[KEEP_MASK] = self.selection.mask(self.encoding.visual.shape[1])
            self.engine.cache.put(key, tensors, {"kind": "prefix", **meta})
        except (CacheError, UnsupportedCache) as exc:
            warnings.append(f"video prefix not cached: {exc}")
        return time.perf_counter() - start


def with_replacements(visual: VisualTokens, selection: Selection) -> VisualTokens:
    """`visual` with `selection.values` written over its anchor tokens (a copy; itself when none)."""
    if selection.values is None or selection.anchor is None or selection.values.shape[0] == 0:
        return visual
    t, m, d = visual.shape
    kept = selection.mask(m).flatten().nonzero(as_tuple=True)[0]  # flat positions, in kept-token order
    features = visual.features.clone()
    features.view(t * m, d)[kept[selection.anchor.to(kept.device)]] = selection.values.to(features)
    return dataclasses.replace(visual, features=features)


def _check_context(adapter: Any, prompt_tokens: int, max_new_tokens: int) -> None:
    """Refuse a prompt the model cannot read with room for the answer (its position limit)."""
    limit = getattr(adapter.model.config.get_text_config(), "max_position_embeddings", None)
    if limit and prompt_tokens + max_new_tokens > int(limit):
        raise PromptTooLongError(
            f"the prompt has {prompt_tokens} tokens after dropping; with {max_new_tokens} answer tokens that "
            f"exceeds the model's context of {limit} tokens: use fewer frames, a smaller keep or a shorter "
            "conversation"
        )


def _common_length(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading elements two 1-D tensors share."""
    n = min(a.shape[0], b.shape[0])
    differ = (a[:n].to(b.device) != b[:n]).nonzero()
    return int(differ[0]) if differ.numel() else n


def _crop(cache: Cache, length: int) -> None:
    """Cut an attention-only cache (see `croppable`) back to its first `length` positions."""
    for layer in cache.layers:
        if layer.keys is not None and layer.keys.shape[-2] > length:
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]
