"""Checks that the tiny offline checkpoints behave like the real families through the public transformers API.

These tests also pin the transformers surfaces vidqa builds on (placeholder counts, `get_video_features`,
`get_rope_index`, deepstack), so a transformers release that moves them fails here first.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import huggingface_hub.constants as hf_constants
import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, BatchFeature

from tests.tiny_models import (
    FAMILIES,
    LLAVA_FRAME_SIDE,
    LLAVA_PATCH,
    QWEN_MAX_PIXELS,
    QWEN_MERGE,
    QWEN_PATCH,
    QWEN_TEMPORAL_PATCH,
    build_tiny_checkpoint,
    build_tokenizer,
    tiny_frames,
    token_id,
    video_metadata,
)

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
NUM_FRAMES = 4
# {family: (processor, model)}, loaded once per module for read-only tests.
Loaded = dict[str, tuple[Any, torch.nn.Module]]
MESSAGES = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what happens?"}]}]


def load(directory: Path) -> tuple[Any, torch.nn.Module]:
    """Processor and eval-mode model from a checkpoint directory."""
    processor = AutoProcessor.from_pretrained(directory)
    model = AutoModelForImageTextToText.from_pretrained(directory).eval()
    return processor, model


def video_inputs(processor: Any, frames: np.ndarray) -> BatchFeature:
    """Processor output for the standard one-video question, frames pre-sampled by the caller."""
    prompt = processor.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    meta = video_metadata(len(frames), height=frames.shape[1], width=frames.shape[2])
    return processor(
        text=[prompt], videos=[frames], video_metadata=[meta], do_sample_frames=False, return_tensors="pt"
    )


def expected_video_tokens(family: str, num_frames: int) -> int:
    """Placeholder count implied by the tiny geometry (independent of the processor's own arithmetic)."""
    if family == "llava_onevision":
        per_frame = math.ceil(LLAVA_FRAME_SIDE // LLAVA_PATCH / 2) ** 2  # pooled to ceil(P/2)^2
        return num_frames * per_frame + 1  # + image_newline
    side = math.isqrt(QWEN_MAX_PIXELS) // QWEN_PATCH  # 64x64 frames shrink to 32x32 -> 8x8 patches
    return (num_frames // QWEN_TEMPORAL_PATCH) * side * side // QWEN_MERGE**2


class _Records(logging.Handler):
    """Collects log records: transformers' loggers do not propagate to pytest's caplog."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints: dict[str, Path]) -> Loaded:
    """Each family loaded once for the read-only tests of this module."""
    return {family: load(path) for family, path in tiny_checkpoints.items()}


def test_environment_is_offline_and_hermetic(hermetic_hf_env: Path) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert hf_constants.HF_HUB_OFFLINE
    assert Path(os.environ["HF_HOME"]) == hermetic_hf_env
    assert Path(hf_constants.HF_HOME) == hermetic_hf_env


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_is_small(family: str, tiny_checkpoints: dict[str, Path]) -> None:
    directory = tiny_checkpoints[family]
    size = sum(f.stat().st_size for f in directory.iterdir())
    assert size < 1_000_000
    processor, model = load(directory)
    assert model.config.model_type == family
    assert sum(p.numel() for p in model.parameters()) < 200_000
    assert model.generation_config.eos_token_id == processor.tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == processor.tokenizer.pad_token_id


@pytest.mark.parametrize("family", FAMILIES)
def test_load_process_generate_without_warnings(family: str, tiny_checkpoints: dict[str, Path]) -> None:
    """Token ids inside the vocab, explicit eos/pad and processor options keep transformers quiet."""
    logging.Logger.warning_once.cache_clear()  # transformers' once-only warnings may have fired earlier
    handler = _Records()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    try:
        processor, model = load(tiny_checkpoints[family])
        model.generate(**video_inputs(processor, tiny_frames(NUM_FRAMES)), max_new_tokens=2, do_sample=False)
    finally:
        hf_logger.removeHandler(handler)
    assert [r.getMessage() for r in handler.records] == []


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_template_renders_video_question(family: str, loaded: Loaded) -> None:
    processor, _ = loaded[family]
    prompt = processor.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt.count(processor.video_token) == 1
    assert "what happens?" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = processor.tokenizer(prompt)["input_ids"]
    assert processor.tokenizer.convert_tokens_to_ids("what") in ids


@pytest.mark.parametrize("family", FAMILIES)
def test_video_placeholders_match_geometry(family: str, loaded: Loaded) -> None:
    processor, model = loaded[family]
    inputs = video_inputs(processor, tiny_frames(NUM_FRAMES))
    count = int((inputs["input_ids"] == model.config.video_token_id).sum())
    assert count == expected_video_tokens(family, NUM_FRAMES)
    if family in QWEN_FAMILIES:
        grid = inputs["video_grid_thw"].tolist()
        assert grid == [[NUM_FRAMES // QWEN_TEMPORAL_PATCH, 8, 8]]
        assert count == inputs["video_grid_thw"].prod() // QWEN_MERGE**2
        assert int((inputs["mm_token_type_ids"] == 2).sum()) == count
    else:
        assert tuple(inputs["pixel_values_videos"].shape) == (
            1,
            NUM_FRAMES,
            3,
            LLAVA_FRAME_SIDE,
            LLAVA_FRAME_SIDE,
        )


def test_qwen3_prompt_has_one_timestamp_per_temporal_patch(
    loaded: Loaded,
) -> None:
    processor, _ = loaded["qwen3_vl"]
    inputs = video_inputs(processor, tiny_frames(2 * NUM_FRAMES))
    tokens = processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    temporal_patches = NUM_FRAMES
    # The per-frame cap keeps 8 frames at the same 8x8 patch grid as 4 frames.
    assert inputs["video_grid_thw"].tolist() == [[temporal_patches, 8, 8]]
    assert tokens.count("seconds>") == temporal_patches
    assert tokens.count("<|vision_start|>") == temporal_patches + 1  # chat template's own + one per patch


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_greedy_shape(family: str, loaded: Loaded) -> None:
    processor, model = loaded[family]
    inputs = video_inputs(processor, tiny_frames(NUM_FRAMES))
    prompt_len = inputs["input_ids"].shape[1]
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    new = out[0, prompt_len:]
    assert out.shape[0] == 1
    assert torch.equal(out[0, :prompt_len], inputs["input_ids"][0])
    assert 1 <= new.numel() <= 5
    if new.numel() < 5:
        assert int(new[-1]) == model.generation_config.eos_token_id
    assert int(new.max()) < model.config.text_config.vocab_size


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_is_deterministic_across_loads(family: str, tiny_checkpoints: dict[str, Path]) -> None:
    outputs = []
    for _ in range(2):
        processor, model = load(tiny_checkpoints[family])
        inputs = video_inputs(processor, tiny_frames(NUM_FRAMES))
        with torch.no_grad():
            logits = model(**inputs).logits
        tokens = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        outputs.append((logits, tokens))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert torch.equal(outputs[0][1], outputs[1][1])


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_depend_on_the_video(family: str, loaded: Loaded) -> None:
    processor, model = loaded[family]
    with torch.no_grad():
        a = model(**video_inputs(processor, tiny_frames(NUM_FRAMES, seed=0))).logits[0, -1]
        b = model(**video_inputs(processor, tiny_frames(NUM_FRAMES, seed=1))).logits[0, -1]
    assert not torch.allclose(a, b)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    first = build_tiny_checkpoint("qwen2_vl", tmp_path / "a", seed=3)
    again = build_tiny_checkpoint("qwen2_vl", tmp_path / "b", seed=3)
    other = build_tiny_checkpoint("qwen2_vl", tmp_path / "c", seed=4)
    weights = [(d / "model.safetensors").read_bytes() for d in (first, again, other)]
    assert weights[0] == weights[1]
    assert weights[0] != weights[2]


def test_unknown_family_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_checkpoint("llama", tmp_path)


def test_token_id_refuses_words_outside_the_vocabulary() -> None:
    tokenizer = build_tokenizer()
    assert token_id(tokenizer, "<|video_pad|>") != tokenizer.unk_token_id
    with pytest.raises(ValueError, match="not in the tiny vocabulary"):
        token_id(tokenizer, "<|vid_pad|>")


def test_tiny_frames_are_deterministic_and_vary() -> None:
    frames = tiny_frames(3, height=20, width=30, seed=5)
    assert frames.dtype == np.uint8
    assert frames.shape == (3, 20, 30, 3)
    assert np.array_equal(frames, tiny_frames(3, height=20, width=30, seed=5))
    assert not np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames, tiny_frames(3, height=20, width=30, seed=6))


def test_video_metadata_describes_presampled_frames() -> None:
    meta = video_metadata(4, fps=2.0)
    assert (meta.total_num_frames, meta.fps, meta.width, meta.height) == (4, 2.0, 64, 64)
    assert meta.duration == 2.0
    assert meta.frames_indices == [0, 1, 2, 3]
    sparse = video_metadata(2, fps=10.0, total_num_frames=50, frames_indices=[0, 25])
    assert sparse.duration == 5.0
    assert sparse.timestamps == [0.0, 2.5]
    with pytest.raises(ValueError):
        video_metadata(3, frames_indices=[0, 1])


# --- API surface the vidqa adapters rely on -------------------------------------------------------------
def _flat(features: Any) -> torch.Tensor:
    """Concatenate per-video feature splits (tuple in 5.x Qwen) or pass a tensor through."""
    return torch.cat(list(features)) if isinstance(features, (list, tuple)) else features


def _merged_llava(model: Any, inputs: BatchFeature) -> tuple[torch.Tensor, dict[str, Any]]:
    """Video features scattered into the embeddings by hand, plus the forward kwargs for the LM."""
    inner = model.model
    out = inner.get_video_features(
        inputs["pixel_values_videos"],
        vision_feature_layer=model.config.vision_feature_layer,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
    )
    feats = out.pooler_output  # (B, T·M [+1], D): the newline is appended here since 5.2x, by forward before
    pooled = expected_video_tokens("llava_onevision", NUM_FRAMES) - 1
    assert feats.shape[1] in (pooled, pooled + 1)
    if feats.shape[1] == pooled:
        feats = torch.cat([feats, inner.image_newline[None, None].expand(feats.shape[0], 1, -1)], dim=1)
    return feats.flatten(0, 1), {"position_ids": torch.arange(inputs["input_ids"].shape[1])[None]}


def _merged_qwen(model: Any, inputs: BatchFeature) -> tuple[torch.Tensor, dict[str, Any]]:
    inner = model.model
    out = inner.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"], return_dict=True)
    rope_kwargs = {"video_grid_thw": inputs["video_grid_thw"], "attention_mask": inputs["attention_mask"]}
    if "second_per_grid_ts" in inputs:
        rope_kwargs["second_per_grid_ts"] = inputs["second_per_grid_ts"]
    position_ids, _deltas = inner.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], **rope_kwargs
    )
    assert tuple(position_ids.shape) == (3, *inputs["input_ids"].shape)
    extra: dict[str, Any] = {"position_ids": position_ids}
    if getattr(out, "deepstack_features", None) is not None:
        extra["deepstack_visual_embeds"] = [_flat(level) for level in out.deepstack_features]
    return _flat(out.pooler_output), extra


@pytest.mark.parametrize("family", FAMILIES)
def test_manual_feature_merge_reproduces_forward(family: str, loaded: Loaded) -> None:
    """The hook-free path (features -> masked_scatter -> LM) gives the same logits as forward()."""
    processor, model = loaded[family]
    inputs = video_inputs(processor, tiny_frames(NUM_FRAMES))
    ids = inputs["input_ids"]
    video_mask = ids == model.config.video_token_id  # (B, L)
    with torch.no_grad():
        merge = _merged_llava if family == "llava_onevision" else _merged_qwen
        feats, extra = merge(model, inputs)  # feats: (N_video_tokens, D)
        assert feats.shape == (int(video_mask.sum()), model.config.text_config.hidden_size)
        embeds = model.get_input_embeddings()(ids).masked_scatter(video_mask[..., None], feats)
        deepstack = extra.pop("deepstack_visual_embeds", None)
        if deepstack is not None:
            assert len(deepstack) == len(model.config.vision_config.deepstack_visual_indexes)
            extra.update(visual_pos_masks=video_mask, deepstack_visual_embeds=deepstack)
        hidden = model.model.language_model(
            inputs_embeds=embeds, attention_mask=inputs["attention_mask"], **extra
        ).last_hidden_state
        manual = model.lm_head(hidden)
        reference = model(**inputs).logits
    torch.testing.assert_close(manual, reference)
