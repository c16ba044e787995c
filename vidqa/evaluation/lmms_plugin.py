"""`lmms-eval --model vidqa --model_args pretrained=...,method=vidcom2,keep=0.25 --tasks mvbench`: every
lmms-eval video task answered by vidqa's engine (a chat model in lmms-eval's terms).

model_args: `pretrained` (alias, hub id or folder; default vidqa's default model), `method`, `keep`,
`preset`, any method parameter by name (`layer=3`), `frames` / `fps` / `max_frames`, `device`, `dtype`,
`attn`, `revision`, `cache_dir` (the on-disk feature and prefix cache; off by default), `records` (a JSONL
file that gets vidqa's record per sample: kept visual tokens, timings). lmms-eval's own arguments
(`batch_size`, …) are accepted; vidqa answers one request at a time. Per-sample token counts go to
lmms-eval's logs: input tokens are the prompt after dropping, so they show what compression kept.
"""

from __future__ import annotations

import logging
from typing import Any

from lmms_eval.api.instance import GenerationResult, TokenCounts
from lmms_eval.api.model import lmms

from vidqa.evaluation.lmms_requests import Answerer, ChatRequest, generation_from, unpack_messages
from vidqa.models import DEFAULT_MODEL

log = logging.getLogger("vidqa.lmms_eval")

#: lmms-eval passes these to every model; vidqa has no use for them.
_LMMS_EVAL_ARGS = {
    "batch_size",
    "max_batch_size",
    "device_map",
    "max_length",
    "use_cache",
    "trust_remote_code",
}


class VidqaLMM(lmms):
    """lmms-eval's chat-model interface over a vidqa Engine and one compression setting."""

    is_simple = False

    def __init__(
        self,
        pretrained: str = DEFAULT_MODEL,
        method: str | None = None,
        keep: float | None = None,
        preset: str | None = None,
        frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        attn: str = "auto",
        revision: str | None = None,
        cache_dir: str | None = None,
        records: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from vidqa.cache import FeatureCache
        from vidqa.engine import Engine
        from vidqa.presets import DEFAULT_PRESET, load_preset
        from vidqa.records import RecordFile
        from vidqa.settings import SamplingSettings

        chosen = load_preset(preset or DEFAULT_PRESET)
        method_fields = set(chosen.settings(method=method).impl.Params.model_fields)
        params = {name: value for name, value in kwargs.items() if name in method_fields}
        ignored = sorted(set(kwargs) - set(params) - _LMMS_EVAL_ARGS)
        if ignored:
            raise TypeError(f"vidqa: unknown model_args {', '.join(ignored)}")
        compression = chosen.settings(method=method, keep=keep, params=params)
        sampling = SamplingSettings(frames=frames, fps=fps, max_frames=max_frames)
        cache = FeatureCache(cache_dir) if cache_dir else None
        engine = Engine.load(
            str(pretrained), device=device, dtype=dtype, attn=attn, revision=revision, cache=cache
        )
        self.answerer = Answerer(
            engine, compression, sampling, records=RecordFile(records) if records else None
        )
        log.info("vidqa: %s with %s", engine.model_name, compression.label)

    def generate_until(self, requests: list[Any]) -> list[GenerationResult]:
        unpacked = [self._unpack(request) for request in requests]
        answers = self.answerer.answer_all(unpacked)
        return [
            GenerationResult(
                text=text,
                token_counts=TokenCounts(
                    input_tokens=result.prompt_tokens, output_tokens=result.generated_tokens
                ),
            )
            for text, result in answers
        ]

    def _unpack(self, request: Any) -> ChatRequest:
        _context, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
        generation = generation_from(gen_kwargs)
        try:
            messages = doc_to_messages(self.task_dict[task][split][doc_id])
            video, text, system = unpack_messages(messages)
        except Exception as exc:  # this sample cannot be asked: it gets an empty answer and its record
            return ChatRequest(None, "", None, generation, task, doc_id, error=str(exc))
        return ChatRequest(video, text, system, generation, task, doc_id)

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        raise NotImplementedError("vidqa generates answers; log-likelihood tasks are not supported")

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        raise NotImplementedError("vidqa answers single-turn requests; multi-round tasks are not supported")
