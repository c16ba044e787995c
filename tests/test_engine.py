"""The Engine end to end on the tiny checkpoints: keep-everything identity, the record, phases, reuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import torch

from tests.tiny_recent import ALL_FAMILIES
from vidqa.compress.registry import build_compression
from vidqa.record import PHASES
from vidqa.settings import GenerationSettings, SamplingSettings

RECORD_KEYS = {
    "video",
    "question",
    "answer",
    "error",
    "model",
    "method",
    "keep",
    "params",
    "frames",
    "visual_tokens",
    "timings",
    "generated_tokens",
    "peak_memory_bytes",
    "cached",
    "skipped",
    "warnings",
    "settings",
}
QUESTIONS = ("what happens?", "video shows the a", "what 12 happens? the video")


def stock_answer(engine: Any, video: Path, question: str, frames: int, max_new_tokens: int = 6) -> list[int]:
    """The model's own generate on the processor's outputs for this question (pixels processed afresh)."""
    adapter = engine.adapter
    clip = engine.decode(video, SamplingSettings(frames=frames))
    batch = adapter._process(adapter.chat_text(question), clip)
    batch.pop("text_replacement_offsets")
    with torch.inference_mode():
        out = adapter.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, batch["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_keep_everything_is_identical_to_plain_generate(
    engines: dict, sample_clip: Path, family: str
) -> None:
    """Canary for transformers API drift: our inputs_embeds path == model.generate(**processor_outputs),
    for every question of a session (only the first one's video was processed with the question)."""
    engine = engines[family]
    tokenizer = engine.adapter.processor.tokenizer
    results = list(
        engine.ask_many(
            sample_clip,
            list(QUESTIONS),
            sampling=SamplingSettings(frames=4),
            compression=build_compression("none"),
            generation=GenerationSettings(max_new_tokens=6),
        )
    )
    for question, result in zip(QUESTIONS, results, strict=True):
        stock = stock_answer(engine, sample_clip, question, frames=4)
        assert result.answer == tokenizer.decode(stock, skip_special_tokens=True).strip(), question
        assert result.generated_tokens == len(stock)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_prompt_ids_equal_the_processors_for_any_question(
    engines: dict, sample_clip: Path, family: str
) -> None:
    """Only the question is tokenised, yet the ids are exactly what the processor makes from the pixels."""
    engine = engines[family]
    adapter = engine.adapter
    encoding = engine.encode_video(sample_clip, SamplingSettings(frames=4))
    clip = engine.decode(sample_clip, SamplingSettings(frames=4))
    for question in (*QUESTIONS, "?", "the the the the the the the the the"):
        expected = adapter._process(adapter.chat_text(question), clip)
        prompt = adapter.prompt(question, encoding.layout)
        for name in ("input_ids", "attention_mask", "mm_token_type_ids", "video_grid_thw"):
            if name in expected:
                assert torch.equal(prompt[name], expected[name]), (question, name)
    # every family's video expansion ends at a special token: only the text after it is tokenised per question
    assert adapter._prompt_heads and all(head.split for head in adapter._prompt_heads.values())


@pytest.mark.parametrize("family", ALL_FAMILIES)
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
    t, m, _ = engines[family].encode_video(sample_clip, SamplingSettings(frames=4)).visual.shape
    assert record["visual_tokens"] == {"total": t * m, "kept": t * m}
    timings = record["timings"]
    assert tuple(timings) == PHASES
    assert (
        timings["decode"] > 0 and timings["vision"] > 0 and timings["prompt"] > 0 and timings["prefill"] > 0
    )
    assert timings["cache_read"] == timings["cache_write"] == 0  # no cache on this engine
    ran = sum(value for name, value in timings.items() if name != "total")
    assert timings["total"] >= ran
    assert 1 <= record["generated_tokens"] <= 5
    assert record["peak_memory_bytes"] > 0 and record["cached"] is False and record["skipped"] == []
    settings = record["settings"]
    assert settings["model"].startswith("folder:") and settings["sampling"]["frames"] == 4
    assert settings["dtype"] == "float32" and settings["max_new_tokens"] == 5


def test_several_questions_encode_the_video_once(engines: dict, sample_clip: Path) -> None:
    engine = engines["qwen2_vl"]
    adapter = engine.adapter
    with (
        patch.object(adapter, "encode", wraps=adapter.encode) as encode,
        patch.object(adapter, "_process", wraps=adapter._process) as pixels,
        patch.object(engine, "decode", wraps=engine.decode) as decode,
    ):
        results = list(
            engine.ask_many(
                sample_clip,
                ["who ?", "where ?", "when ?"],
                sampling=SamplingSettings(frames=4),
                compression=build_compression("vidcom2", keep=0.5),
                generation=GenerationSettings(max_new_tokens=3),
            )
        )
    assert encode.call_count == decode.call_count == 1
    assert pixels.call_count == 1  # the processor never runs over the pixels again
    assert [r.question for r in results] == ["who ?", "where ?", "when ?"]
    for later in results[1:]:
        assert later.timings.decode == later.timings.vision == later.timings.compress == 0
        assert later.timings.prefix == 0 and later.prefix["source"] == "memory"
        assert later.skipped == ["decode", "vision", "compress", "prefix"] and not later.cached
        assert later.timings.prompt > 0 and later.timings.prefill > 0
    assert results[0].skipped == [] and results[0].timings.compress > 0 and results[0].timings.prefix > 0
    assert results[0].prefix["source"] == "read" and results[0].prefix["reused_tokens"] == 0


def test_default_frames_follow_device_and_family(engines: dict, sample_clip: Path) -> None:
    # CPU default is 8 frames (a laptop answers in about a minute); Qwen counts are even.
    llava = engines["llava_onevision"].ask(sample_clip, "q", method="none", max_new_tokens=1)
    assert llava.to_dict()["frames"]["count"] == 8
    qwen = engines["qwen2_vl"].ask(sample_clip, "q", method="none", frames=3, max_new_tokens=1)
    assert qwen.to_dict()["frames"]["count"] == 4


def test_fps_and_max_frames_reach_the_decoder(engines: dict, sample_clip: Path) -> None:
    engine = engines["llava_onevision"]
    by_fps = engine.ask(sample_clip, "q", method="none", fps=1.0, max_new_tokens=1)
    assert by_fps.to_dict()["frames"]["count"] == 4  # a 4 s clip at 1 fps
    capped = engine.ask(sample_clip, "q", method="none", fps=10.0, max_frames=3, max_new_tokens=1)
    assert capped.to_dict()["frames"]["count"] == 3
    assert capped.settings["sampling"] == {"frames": None, "fps": 10.0, "max_frames": 3}


def test_a_question_holding_the_placeholder_is_refused(engines: dict, sample_clip: Path) -> None:
    from vidqa.errors import UsageError

    with pytest.raises(UsageError, match="placeholder"):
        engines["llava_onevision"].ask(sample_clip, "what is <video> ?", method="none", frames=2)
