"""The Engine end to end on the tiny checkpoints: keep-everything identity, the record, phases."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest
import torch

from tests.tiny_models import FAMILIES
from vidqa.compress.registry import build_compression
from vidqa.settings import SamplingSettings

RECORD_KEYS = {
    "video",
    "question",
    "answer",
    "error",
    "model",
    "method",
    "keep",
    "frames",
    "visual_tokens",
    "timings",
    "generated_tokens",
    "peak_memory_bytes",
    "cached",
}


@pytest.mark.parametrize("family", FAMILIES)
def test_keep_everything_is_identical_to_plain_generate(
    engines: dict, sample_clip: Path, family: str
) -> None:
    """Canary for transformers API drift: our inputs_embeds path == model.generate(**processor_outputs)."""
    engine = engines[family]
    encoded = engine.encode(sample_clip, "what happens ?", SamplingSettings(frames=4))
    with torch.inference_mode():
        stock = engine.adapter.model.generate(**encoded.batch, max_new_tokens=6, do_sample=False)
    stock_new = stock[0, encoded.batch["input_ids"].shape[1] :]
    results = list(
        engine.ask_many(
            sample_clip,
            ["what happens ?"],
            sampling=SamplingSettings(frames=4),
            compression=build_compression("none"),
            max_new_tokens=6,
            encoded=encoded,
        )
    )
    tokenizer = engine.adapter.processor.tokenizer
    assert results[0].answer == tokenizer.decode(stock_new, skip_special_tokens=True).strip()
    assert results[0].generated_tokens == len(stock_new)


@pytest.mark.parametrize("family", FAMILIES)
def test_record_schema_and_timings(engines: dict, sample_clip: Path, family: str) -> None:
    pieces: list[str] = []
    result = engines[family].ask(
        sample_clip, "what happens ?", method="none", frames=4, max_new_tokens=5, on_text=pieces.append
    )
    record = result.to_dict()
    assert set(record) >= RECORD_KEYS
    assert record["error"] is None and isinstance(record["answer"], str)
    assert "".join(pieces).strip() == record["answer"]  # streamed text is the answer
    assert record["frames"]["count"] == 4 and len(record["frames"]["times"]) == 4
    assert record["frames"]["times"] == sorted(record["frames"]["times"])
    t, m, _ = engines[family].encode(sample_clip, "q", SamplingSettings(frames=4)).visual.shape
    assert record["visual_tokens"] == {"total": t * m, "kept": t * m}
    timings = record["timings"]
    assert set(timings) == {"decode", "vision", "compress", "prefill", "generate", "total"}
    assert timings["decode"] > 0 and timings["vision"] > 0 and timings["prefill"] > 0
    assert timings["total"] >= timings["decode"] + timings["vision"] + timings["prefill"]
    assert 1 <= record["generated_tokens"] <= 5
    assert record["peak_memory_bytes"] > 0 and record["cached"] is False


def test_several_questions_encode_the_video_once(engines: dict, sample_clip: Path) -> None:
    engine = engines["qwen2_vl"]
    with patch.object(engine.adapter, "encode", wraps=engine.adapter.encode) as encode:
        results = list(
            engine.ask_many(
                sample_clip,
                ["who ?", "where ?"],
                sampling=SamplingSettings(frames=4),
                compression=build_compression("none"),
                max_new_tokens=3,
            )
        )
    assert encode.call_count == 1
    assert [r.question for r in results] == ["who ?", "where ?"]
    assert results[1].timings.decode == 0 and results[1].timings.vision == 0 and results[1].cached


def test_default_frames_follow_device_and_family(engines: dict, sample_clip: Path) -> None:
    # CPU default is 8 frames (a laptop answers in about a minute); Qwen counts are even.
    llava = engines["llava_onevision"].ask(sample_clip, "q", method="none", max_new_tokens=1)
    assert llava.to_dict()["frames"]["count"] == 8
    qwen = engines["qwen2_vl"].ask(sample_clip, "q", method="none", frames=3, max_new_tokens=1)
    assert qwen.to_dict()["frames"]["count"] == 4
