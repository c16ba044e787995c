"""Tiny random-weight checkpoints of every model family vidqa supports, built offline for tests.

Owns the factory `build_tiny_checkpoint` plus helpers for frames and video metadata. Tests must never
download weights, yet they need the real transformers classes (processor, video processor, tokenizer,
chat template, model) so API drift between transformers releases shows up. Each checkpoint is a directory
of well under a megabyte that `AutoProcessor` / `AutoModelForImageTextToText` load in milliseconds.

Geometry (verified by tests/test_tiny_models.py):
- llava_onevision: frames resized to 32x32, SigLIP patch 8 -> 4x4 patches, bilinear pooling to 2x2 ->
  4 tokens per frame; `<video>` expands to T*4 + 1 tokens (the +1 is the model's `image_newline`).
- qwen2_vl / qwen2_5_vl: patch 4, merge 2, temporal patch 2; a 64x64 frame is resized to 32x32 (max pixels
  1024) -> grid (T/2, 8, 8) -> 16 tokens per temporal patch.
- qwen3_vl: same patch/merge; the per-frame cap (16 merged tokens) resizes 64x64 to 32x32 -> 16 tokens per
  temporal patch, each temporal patch preceded by a text timestamp `<t seconds>`; deepstack at vision
  layers 0 and 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import (
    GenerationConfig,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)
from transformers.video_utils import VideoMetadata

FAMILIES = ("llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl")

PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
UNK_TOKEN = "<unk>"
# Every placeholder any supported processor looks up; one shared vocabulary keeps ids equal across families.
SPECIAL_TOKENS = (
    PAD_TOKEN,
    "<|im_start|>",
    EOS_TOKEN,
    UNK_TOKEN,
    "<image>",
    "<video>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Plain words: the chat roles, the test question, and Qwen3-VL's timestamp suffix ("<0.5 seconds>" splits
# into "<0.5" (unknown) and "seconds>"). The rest only fills the vocabulary so generation has choices.
WORDS = ("system", "user", "assistant", "what", "happens?", "seconds>", "the", "a", "video", "shows")
VOCAB_SIZE = 128

TEXT_LAYERS = 2
HIDDEN = 32
HEADS = 4
KV_HEADS = 2
INTERMEDIATE = 64

# LLaVA-OneVision: frames are resized to FRAME_SIDE square, SigLIP patches of PATCH pixels.
LLAVA_FRAME_SIDE = 64  # 8x8 patches pooled to 4x4: 16 tokens per frame
LLAVA_PATCH = 8
# Qwen families: spatial patch, spatial merge, temporal patch, and per-frame pixel bounds.
QWEN_PATCH = 4
QWEN_MERGE = 2
QWEN_TEMPORAL_PATCH = 2
QWEN_MIN_PIXELS = 16 * 16
QWEN_MAX_PIXELS = 32 * 32
# Qwen3-VL bounds the whole clip's pixels; the per-frame cap (in merged tokens) keeps frames at 32x32.
QWEN3_FRAME_TOKENS = QWEN_MAX_PIXELS // (QWEN_PATCH * QWEN_MERGE) ** 2
QWEN3_MAX_VIDEO_PIXELS = QWEN_MAX_PIXELS * 768

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>\n{% elif part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose special tokens match what the real processors look up."""
    tokens = [*SPECIAL_TOKENS, *WORDS]
    tokens += [f"w{i}" for i in range(VOCAB_SIZE - len(tokens))]
    backend = Tokenizer(models.WordLevel({tok: i for i, tok in enumerate(tokens)}, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Special tokens are matched before pre-tokenization, so "<|vision_end|>what" splits correctly.
    backend.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=UNK_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )


def token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of a token that must be in the vocabulary: a typo must not silently become the unknown id."""
    found = int(tokenizer.convert_tokens_to_ids([token])[0])
    if token != UNK_TOKEN and found == tokenizer.unk_token_id:
        raise ValueError(f"{token!r} is not in the tiny vocabulary")
    return found


def _text_config(tok: PreTrainedTokenizerFast, *, with_bos_eos: bool = True, **extra: Any) -> dict[str, Any]:
    """The tiny decoder shared by every family (Qwen2-style blocks).

    Token ids must lie inside the tiny vocabulary: the Qwen2/2.5-VL defaults (151643...) make the config
    validator warn. Qwen3-VL's text config has no bos/eos fields (`with_bos_eos=False`).
    """
    if with_bos_eos:
        extra.update(bos_token_id=None, eos_token_id=token_id(tok, EOS_TOKEN))
    return dict(
        pad_token_id=token_id(tok, PAD_TOKEN),
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=1024,
        **extra,
    )


def _mrope_parameters(**extra: Any) -> dict[str, Any]:
    """M-RoPE over (t, h, w) frequency bands; the sections must sum to head_dim / 2 (= 4 here)."""
    section = [2, 1, 1]
    if sum(section) != HIDDEN // HEADS // 2:
        raise ValueError(f"mrope_section {section} must sum to head_dim / 2")
    return {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section, **extra}


def _llava_onevision(tok: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, ProcessorMixin]:
    config = LlavaOnevisionConfig(
        text_config=_text_config(tok, model_type="qwen2"),
        vision_config=dict(
            model_type="siglip_vision_model",
            image_size=LLAVA_FRAME_SIDE,
            patch_size=LLAVA_PATCH,
            hidden_size=HIDDEN,
            intermediate_size=INTERMEDIATE,
            num_hidden_layers=2,
            num_attention_heads=HEADS,
            vision_use_head=False,
        ),
        image_token_index=token_id(tok, "<image>"),
        video_token_index=token_id(tok, "<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[LLAVA_FRAME_SIDE, LLAVA_FRAME_SIDE]],
    )
    side = {"height": LLAVA_FRAME_SIDE, "width": LLAVA_FRAME_SIDE}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=side, image_grid_pinpoints=[[LLAVA_FRAME_SIDE, LLAVA_FRAME_SIDE]]
        ),
        tokenizer=tok,
        video_processor=LlavaOnevisionVideoProcessor(size=side),
        num_image_tokens=(LLAVA_FRAME_SIDE // LLAVA_PATCH) ** 2,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return LlavaOnevisionForConditionalGeneration(config), processor


def _qwen_token_ids(tok: PreTrainedTokenizerFast) -> dict[str, int]:
    return dict(
        image_token_id=token_id(tok, "<|image_pad|>"),
        video_token_id=token_id(tok, "<|video_pad|>"),
        vision_start_token_id=token_id(tok, "<|vision_start|>"),
        vision_end_token_id=token_id(tok, "<|vision_end|>"),
    )


def _qwen_patch_kwargs() -> dict[str, int]:
    return dict(patch_size=QWEN_PATCH, temporal_patch_size=QWEN_TEMPORAL_PATCH, spatial_merge_size=QWEN_MERGE)


def _qwen_image_processor() -> Qwen2VLImageProcessor:
    return Qwen2VLImageProcessor(
        patch_size=QWEN_PATCH,
        temporal_patch_size=QWEN_TEMPORAL_PATCH,
        merge_size=QWEN_MERGE,
        size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS},
    )


def _qwen2_video_processor() -> Qwen2VLVideoProcessor:
    return Qwen2VLVideoProcessor(
        patch_size=QWEN_PATCH,
        temporal_patch_size=QWEN_TEMPORAL_PATCH,
        merge_size=QWEN_MERGE,
        size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS},
        # Explicit, so 5.2x does not warn; the per-frame bound is then just longest_edge.
        cap_pixels_per_frame=False,
    )


def _qwen2_vl(tok: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, ProcessorMixin]:
    config = Qwen2VLConfig(
        text_config=_text_config(tok, rope_parameters=_mrope_parameters()),
        vision_config=dict(
            depth=2,
            embed_dim=HIDDEN,
            hidden_size=HIDDEN,
            num_heads=HEADS,
            mlp_ratio=2,
            **_qwen_patch_kwargs(),
        ),
        **_qwen_token_ids(tok),
    )
    processor = Qwen2VLProcessor(
        image_processor=_qwen_image_processor(),
        tokenizer=tok,
        video_processor=_qwen2_video_processor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return Qwen2VLForConditionalGeneration(config), processor


def _qwen2_5_vl(tok: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, ProcessorMixin]:
    config = Qwen2_5_VLConfig(
        text_config=_text_config(tok, rope_parameters=_mrope_parameters()),
        vision_config=dict(
            depth=2,
            hidden_size=HIDDEN,
            intermediate_size=INTERMEDIATE,
            num_heads=HEADS,
            out_hidden_size=HIDDEN,
            # window of 16 px = 2x2 merged tokens; layer 1 attends globally, layer 0 within windows.
            window_size=16,
            fullatt_block_indexes=[1],
            tokens_per_second=2,
            **_qwen_patch_kwargs(),
        ),
        **_qwen_token_ids(tok),
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=_qwen_image_processor(),
        tokenizer=tok,
        video_processor=_qwen2_video_processor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _qwen3_vl(tok: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, ProcessorMixin]:
    config = Qwen3VLConfig(
        text_config=_text_config(
            tok,
            with_bos_eos=False,
            head_dim=HIDDEN // HEADS,
            rope_parameters=_mrope_parameters(mrope_interleaved=True),
        ),
        vision_config=dict(
            depth=2,
            hidden_size=HIDDEN,
            intermediate_size=INTERMEDIATE,
            num_heads=HEADS,
            out_hidden_size=HIDDEN,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0, 1],
            **_qwen_patch_kwargs(),
        ),
        **_qwen_token_ids(tok),
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=QWEN_PATCH,
        temporal_patch_size=QWEN_TEMPORAL_PATCH,
        merge_size=QWEN_MERGE,
        size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN3_MAX_VIDEO_PIXELS},
        cap_pixels_per_frame=True,
        max_video_tokens=QWEN3_FRAME_TOKENS,
    )
    processor = Qwen3VLProcessor(
        image_processor=_qwen_image_processor(),
        tokenizer=tok,
        video_processor=video_processor,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return Qwen3VLForConditionalGeneration(config), processor


_BUILDERS = {
    "llava_onevision": _llava_onevision,
    "qwen2_vl": _qwen2_vl,
    "qwen2_5_vl": _qwen2_5_vl,
    "qwen3_vl": _qwen3_vl,
}


def _generation_config(tok: PreTrainedTokenizerFast) -> GenerationConfig:
    """Greedy decoding that stops at <|im_end|> and pads with <|endoftext|>, so generate() never warns."""
    return GenerationConfig(
        eos_token_id=token_id(tok, EOS_TOKEN), pad_token_id=token_id(tok, PAD_TOKEN), do_sample=False
    )


def build_tiny_checkpoint(family: str, out_dir: Path, *, seed: int = 0) -> Path:
    """Write a loadable checkpoint (model, processor, tokenizer, chat template) for `family` into out_dir.

    The same seed gives bit-identical weights; the global torch RNG is left untouched.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = _BUILDERS[family](tok)
    model.generation_config = _generation_config(tok)
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def tiny_frames(num_frames: int, height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """Deterministic uint8 frames (T, H, W, 3): a smooth gradient plus noise, shifted per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        base = np.stack([xx * 4 + t * 40, yy * 4 + t * 25, (xx + yy) * 2 + t * 60], axis=-1)
        noise = rng.integers(0, 48, size=(height, width, 3))
        frames[t] = ((base + noise) % 256).astype(np.uint8)
    return frames


def video_metadata(
    num_frames: int,
    fps: float = 2.0,
    *,
    height: int = 64,
    width: int = 64,
    total_num_frames: int | None = None,
    frames_indices: list[int] | None = None,
) -> VideoMetadata:
    """Metadata for frames already sampled by the caller (`do_sample_frames=False`).

    By default the frames are the whole clip, consecutive at `fps`; pass `total_num_frames` and
    `frames_indices` to describe a sparse sample of a longer source.
    """
    total = num_frames if total_num_frames is None else total_num_frames
    indices = list(range(num_frames)) if frames_indices is None else list(frames_indices)
    if len(indices) != num_frames:
        raise ValueError(f"frames_indices has {len(indices)} entries for {num_frames} frames")
    return VideoMetadata(
        total_num_frames=total,
        fps=fps,
        width=width,
        height=height,
        duration=total / fps,
        frames_indices=indices,
    )
