"""Random-weight checkpoints with the REAL shapes of the models vidqa targets, built offline for benchmarks.

Owns the recipes (config + processor + tokenizer + chat template) for four buildable names and the factory
`build_checkpoint`, which writes a folder `vidqa.Engine.load(folder)` loads with no network:

- `llava-ov-0.5b`  llava-hf/llava-onevision-qwen2-0.5b-ov-hf shapes (SigLIP-so400m 26 layers + Qwen2-0.5B).
- `llava-ov-7b`    llava-hf/llava-onevision-qwen2-7b-ov-hf shapes (SigLIP-so400m 26 layers + Qwen2-7B).
- `qwen2.5-vl-7b`  Qwen/Qwen2.5-VL-7B-Instruct shapes (32-block windowed ViT + Qwen2.5-7B with M-RoPE).
- `qwen3-vl-8b`    Qwen/Qwen3-VL-8B-Instruct shapes (27-block ViT with deepstack + Qwen3-8B text).
- `llava-ov-cpu`   the CPU benchmark model: LLaVA-OneVision with the REAL video geometry (SigLIP at 384 px,
                   patch 14 -> 27x27 patches -> bilinear pooling to 14x14 = 196 tokens per frame, the real
                   processor settings, token ids and 152000-entry vocabulary) but a small vision tower
                   (2 layers, width 256) and an 8-layer, 512-wide Qwen2 LLM.

Why random weights of real shapes: latency and memory depend on shapes, not on what the weights learned,
and vidqa's tests and benchmarks must never download weights. Answers are gibberish; timings are real.
Why `llava-ov-cpu` shrinks the vision tower: SigLIP-so400m costs ~0.6 TFLOP per 384 px frame (~9 TFLOP
for 16 frames, over a minute on two cores) and compression cannot change it, so at full size it would
bury the LLM phases the benchmark is about. Two layers of width 256 keep everything that shapes the
pipeline — 729 patches per frame, the pooling to 196, the processor's resize and normalisation, the
projector into the LLM width — at ~50 GFLOP for 16 frames. The LLM is the issue's CPU target: 8 layers,
width 512 (8 heads of 64 as in Qwen2-0.5B, 2 KV heads for GQA, MLP 2816 = 5.5x, close to
Qwen2-0.5B's 5.43x), with Qwen2's real 152000-entry LLaVA vocabulary so the LM head costs what it does.

The tokenizer is word level (no BPE files to download) but places every special token at its REAL id
(`<video>` = 151647 for LLaVA-OV, `<|video_pad|>` = 151656 for Qwen2.5-VL, ...), so configs keep their
published token ids. Text costs about as many tokens as with the real tokenizer: one per word.

Where each value comes from (checked with the search tool; "verified" = read in the named source):
- SigLIP-so400m tower of LLaVA-OV (hidden 1152, MLP 4304, 16 heads, 26 layers = 27 minus the dropped last,
  patch 14, 384 px, no head): verified in transformers'
  `models/llava_onevision/convert_llava_onevision_weights_to_hf.py`, which also gives `num_image_tokens`
  729, `vision_feature_select_strategy` "full", the image/video processors loaded from
  google/siglip-so400m-patch14-384 (mean = std = 0.5 per its model card; bicubic, 384x384: transformers'
  LlavaOnevision processor defaults), and the vocabulary rule "Qwen2 vocab + 2 (<image>, <video>),
  padded to a multiple of 64": 151936 -> 152000 (0.5B), 152064 -> 152128 (7B). These two vocab sizes
  are DERIVED from that rule, not read from the hub config.json (not in the search corpus); FastVLM's
  LLaVA-style Qwen2-7B config in transformers also uses 152128.
- Token ids 151646 (<image>) / 151647 (<video>), projector gelu, feature layer -1, anyres_max_9 and the
  36 grid pinpoints: transformers 5 LlavaOnevisionConfig / LlavaOnevisionImageProcessor defaults.
- Qwen2-0.5B (896 wide, MLP 4864, 24 layers, 14 heads, 2 KV heads, rope theta 1e6, rms eps 1e-6, tied
  embeddings): verified from a copy of Qwen/Qwen2-0.5B's config.json (rwth-i6/i6_experiments,
  qwen2_configs.py). max_position_embeddings 32768 is the -Instruct value (unverified; no compute effect).
- Qwen2-7B (3584 wide, MLP 18944, 28 layers, 28 heads, 4 KV heads, theta 1e6, max positions 32768,
  untied): verified from a printed Qwen/Qwen2-7B-Instruct config (Retruth/deontic, nlp_models/qwen2).
- Qwen2.5-VL-7B-Instruct, every field used below (text 3584/18944/28 layers/28 heads/4 KV heads, vocab
  152064, theta 1e6, mrope_section [16, 24, 24], max positions 128000; vision depth 32, width 1280, MLP
  3420, 16 heads, out 3584, patch 14, merge 2, temporal patch 2, window 112, full-attention blocks
  [7, 15, 23, 31], tokens_per_second 2; token ids 151643/151645/151652/151653/151655/151656): verified in
  two verbatim copies of its config.json found by the search tool (a loader embedding it as
  QWEN2_5_VL_CONFIG_JSON, and a training log). Video pixel bounds 128*28*28 .. 768*28*28 are qwen-vl-utils'
  VIDEO_MIN/MAX_PIXELS (verified in its docs) and transformers' Qwen2VLVideoProcessor defaults; the image
  processor bounds 3136 .. 12845056 are the hub preprocessor_config.json values (from memory; unverified).

- Qwen3-VL-8B-Instruct (text 4096/12288/36 layers/32 heads/8 KV heads/head_dim 128, vocab 151936, rope theta
  5e6 with interleaved mrope_section [24, 20, 20], max positions 262144, untied; vision depth 27, width 1152,
  MLP 4304, 16 heads, patch 16, merge 2, temporal patch 2, out 4096, deepstack [8, 16, 24], 2304 position
  embeddings; token ids 151652/151653/151655/151656; image pixels 65536 .. 16777216, video pixels
  4096 .. 25165824 over the whole clip): from two verbatim copies of its config.json and its processor
  files, cross-checked against GGUF metadata and an exact parameter count of 8.767 B from the upstream
  tensors (research notes of this session; the official files were not readable directly).

Every recipe also has a `tiny` variant (`build_model(name, tiny=True)`): the same processor, geometry, token
ids and vocabulary, with a 4-layer, 64-wide LLM and a 1–2 layer, 32-wide vision tower, so scripts that need
the real pipeline (benchmarks/gpu_check.py --dry-run) run in seconds on a CPU.

CLI: `python -m benchmarks.real_shapes NAME OUT_DIR [--dtype D] [--device cuda] [--seed N]`.
The 7B shapes are meant for a GPU (~16 GB of bf16 weights); on a CPU build them on `meta` only
(`build_on_meta`) to inspect shapes and parameter counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import (
    GenerationConfig,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

# --- token ids of the real tokenizers -----------------------------------------------------------------
ENDOFTEXT, IM_START, IM_END = 151643, 151644, 151645  # Qwen2 / Qwen2.5 special tokens
LLAVA_IMAGE, LLAVA_VIDEO = 151646, 151647  # appended by the LLaVA-OV conversion after Qwen2's 151646 tokens
QWEN_VISION_START, QWEN_VISION_END, QWEN_IMAGE_PAD, QWEN_VIDEO_PAD = 151652, 151653, 151655, 151656
UNK = "<unk>"
# Plain words the chat templates and common questions use; everything else becomes <unk> (one token).
WORDS = (UNK, "system", "user", "assistant", "You", "are", "a", "helpful", "assistant.", "what", "happens?")
WORDS += ("describe", "the", "video", "in", "one", "sentence.", "is", "there", "?", "what", "happens")

# --- LLaVA-OneVision geometry (SigLIP-so400m-patch14-384) ---------------------------------------------
SIGLIP_IMAGE, SIGLIP_PATCH = 384, 14
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
NUM_IMAGE_TOKENS = (SIGLIP_IMAGE // SIGLIP_PATCH) ** 2  # 729 patches per 384 px frame
PINPOINTS = [[384 * a, 384 * b] for a in range(1, 7) for b in range(1, 7)]  # anyres_max_9's 36 grids

# --- Qwen2.5-VL pixel bounds --------------------------------------------------------------------------
QWEN_IMAGE_PIXELS = (3136, 12845056)  # hub preprocessor_config.json min/max_pixels
QWEN_VIDEO_PIXELS = (128 * 28 * 28, 768 * 28 * 28)  # qwen-vl-utils VIDEO_MIN/MAX_PIXELS

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'video' %}<video>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_CHAT_TEMPLATE = (  # Qwen3-VL's template writes no default system prompt
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class Recipe:
    """One buildable checkpoint: its config, its processor, and what it is for."""

    name: str
    hub_id: str | None  # the checkpoint whose shapes it copies (None: a scaled benchmark model)
    config: Callable[[], PretrainedConfig]
    processor: Callable[[PreTrainedTokenizerFast], ProcessorMixin]
    model_class: type[PreTrainedModel]
    default_dtype: str  # what the real checkpoint ships in (bf16 on GPU); the CPU model uses float32
    gpu_sized: bool  # ~16 GB of weights: build on a GPU, or on `meta` only
    tiny: Callable[[], PretrainedConfig]  # the same geometry with a tiny LLM and vision tower (dry runs)
    tokenizer: Callable[[], PreTrainedTokenizerFast]  # word level, every special token at its real id


# --- tokenizer ----------------------------------------------------------------------------------------
def build_tokenizer(
    specials: dict[int, str],
    *,
    eos: int = IM_END,
    pad: int = ENDOFTEXT,
    size: int | None = None,
    named: dict[str, str] | None = None,
    bos: int | None = None,
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with every special token at its real id; other ids are filler words.

    `named` gives the tokenizer attributes some processors read (Gemma 4's `image_token`, InternVL's
    `start_image_token`, ...); `size` pads the vocabulary to the model's.
    """
    size = max(size or 0, max(specials) + 1)
    free = (i for i in range(size) if i not in specials)
    vocab = {word: next(free) for word in dict.fromkeys(WORDS)}
    vocab.update({f"w{i}": i for i in free})  # filler for every id left
    vocab.update({token: token_id for token_id, token in specials.items()})
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Special tokens are matched before pre-tokenization, so "<video>\nwhat" splits correctly.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials.values()])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        eos_token=specials[eos],
        pad_token=specials[pad],
        bos_token=specials[bos] if bos is not None else None,
        extra_special_tokens=named or {},
    )


def _qwen_specials() -> dict[int, str]:
    return {ENDOFTEXT: "<|endoftext|>", IM_START: "<|im_start|>", IM_END: "<|im_end|>"}


def llava_tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer({**_qwen_specials(), LLAVA_IMAGE: "<image>", LLAVA_VIDEO: "<video>"})


def qwen_vl_tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer(
        {
            **_qwen_specials(),
            QWEN_VISION_START: "<|vision_start|>",
            QWEN_VISION_END: "<|vision_end|>",
            QWEN_IMAGE_PAD: "<|image_pad|>",
            QWEN_VIDEO_PAD: "<|video_pad|>",
        }
    )


# --- configs ------------------------------------------------------------------------------------------
def qwen2_text(
    *,
    vocab: int,
    hidden: int,
    mlp: int,
    layers: int,
    heads: int,
    kv_heads: int,
    tied: bool,
    max_positions: int = 32768,
) -> dict[str, Any]:
    """A Qwen2 decoder config (rope theta 1e6, RMS eps 1e-6, silu: shared by every Qwen2 size)."""
    return dict(
        model_type="qwen2",
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        hidden_act="silu",
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=tied,
        use_sliding_window=False,
        bos_token_id=ENDOFTEXT,
        eos_token_id=IM_END,
        pad_token_id=ENDOFTEXT,
    )


def siglip_vision(
    *, hidden: int = 1152, mlp: int = 4304, layers: int = 26, heads: int = 16
) -> dict[str, Any]:
    """SigLIP-so400m-patch14-384 as LLaVA-OV uses it (last layer dropped, no pooling head)."""
    return dict(
        model_type="siglip_vision_model",
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=SIGLIP_IMAGE,
        patch_size=SIGLIP_PATCH,
        vision_use_head=False,
    )


def llava_onevision_config(text: dict[str, Any], vision: dict[str, Any]) -> LlavaOnevisionConfig:
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=LLAVA_IMAGE,
        video_token_index=LLAVA_VIDEO,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=PINPOINTS,
        tie_word_embeddings=bool(text["tie_word_embeddings"]),
    )


def llava_ov_05b_config() -> LlavaOnevisionConfig:
    text = qwen2_text(vocab=152000, hidden=896, mlp=4864, layers=24, heads=14, kv_heads=2, tied=True)
    return llava_onevision_config(text, siglip_vision())


def llava_ov_7b_config() -> LlavaOnevisionConfig:
    text = qwen2_text(vocab=152128, hidden=3584, mlp=18944, layers=28, heads=28, kv_heads=4, tied=False)
    return llava_onevision_config(text, siglip_vision())


def llava_ov_cpu_config() -> LlavaOnevisionConfig:
    text = qwen2_text(vocab=152000, hidden=512, mlp=2816, layers=8, heads=8, kv_heads=2, tied=True)
    return llava_onevision_config(text, siglip_vision(hidden=256, mlp=1024, layers=2, heads=4))


def qwen25_vl_7b_config() -> Qwen2_5_VLConfig:
    text = qwen2_text(
        vocab=152064,
        hidden=3584,
        mlp=18944,
        layers=28,
        heads=28,
        kv_heads=4,
        tied=False,
        max_positions=128000,
    )
    text.pop("model_type")
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=3584,
            hidden_act="silu",
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
            tokens_per_second=2,
            in_channels=3,
        ),
        image_token_id=QWEN_IMAGE_PAD,
        video_token_id=QWEN_VIDEO_PAD,
        vision_start_token_id=QWEN_VISION_START,
        vision_end_token_id=QWEN_VISION_END,
        tie_word_embeddings=False,
    )


def qwen3_vl_8b_config() -> Qwen3VLConfig:
    text = dict(
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        hidden_act="silu",
        max_position_embeddings=262144,
        rms_norm_eps=1e-6,
        rope_parameters={
            "rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
        tie_word_embeddings=False,
        eos_token_id=IM_END,
        pad_token_id=ENDOFTEXT,
    )  # fmt: skip
    vision = dict(
        depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16, spatial_merge_size=2,
        temporal_patch_size=2, out_hidden_size=4096, deepstack_visual_indexes=[8, 16, 24],
        num_position_embeddings=2304, hidden_act="gelu_pytorch_tanh", in_channels=3,
    )  # fmt: skip
    return _qwen3_vl(text, vision)


def _qwen3_vl(text: dict[str, Any], vision: dict[str, Any]) -> Qwen3VLConfig:
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=QWEN_IMAGE_PAD,
        video_token_id=QWEN_VIDEO_PAD,
        vision_start_token_id=QWEN_VISION_START,
        vision_end_token_id=QWEN_VISION_END,
        tie_word_embeddings=bool(text["tie_word_embeddings"]),
    )


# --- tiny variants: real geometry and token ids, toy widths ------------------------------------------------
TINY_TEXT = dict(hidden=64, mlp=128, layers=4, heads=4, kv_heads=2)  # DyCoke's default L = 3 fits 4 layers
TINY_MROPE = [2, 3, 3]  # sums to head_dim / 2 = 8


def tiny_llava(vocab: int) -> LlavaOnevisionConfig:
    text = qwen2_text(vocab=vocab, tied=True, **TINY_TEXT)
    return llava_onevision_config(text, siglip_vision(hidden=32, mlp=64, layers=1, heads=2))


def tiny_qwen25_vl() -> Qwen2_5_VLConfig:
    config = qwen25_vl_7b_config()
    text = qwen2_text(vocab=152064, tied=False, **TINY_TEXT)
    text.pop("model_type")
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": TINY_MROPE}
    vision = config.vision_config.to_dict()
    vision.update(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  fullatt_block_indexes=[1])  # fmt: skip
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_ids(), tie_word_embeddings=False)


def tiny_qwen3_vl() -> Qwen3VLConfig:
    text = qwen3_vl_8b_config().text_config.to_dict()
    text.update(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16)  # fmt: skip
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": TINY_MROPE}
    vision = qwen3_vl_8b_config().vision_config.to_dict()
    vision.update(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  deepstack_visual_indexes=[0, 1])  # fmt: skip
    return _qwen3_vl(text, vision)


def _qwen_ids() -> dict[str, int]:
    return dict(
        image_token_id=QWEN_IMAGE_PAD,
        video_token_id=QWEN_VIDEO_PAD,
        vision_start_token_id=QWEN_VISION_START,
        vision_end_token_id=QWEN_VISION_END,
    )


# --- processors ---------------------------------------------------------------------------------------
def llava_onevision_processor(tok: PreTrainedTokenizerFast) -> LlavaOnevisionProcessor:
    side = {"height": SIGLIP_IMAGE, "width": SIGLIP_IMAGE}
    norm = dict(image_mean=list(SIGLIP_MEAN), image_std=list(SIGLIP_STD))
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=side, image_grid_pinpoints=PINPOINTS, **norm),
        video_processor=LlavaOnevisionVideoProcessor(size=side, **norm),
        tokenizer=tok,
        num_image_tokens=NUM_IMAGE_TOKENS,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_CHAT_TEMPLATE,
    )


def qwen25_vl_processor(tok: PreTrainedTokenizerFast) -> Qwen2_5_VLProcessor:
    geometry = dict(patch_size=14, temporal_patch_size=2, merge_size=2)
    image_min, image_max = QWEN_IMAGE_PIXELS
    video_min, video_max = QWEN_VIDEO_PIXELS
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": image_min, "longest_edge": image_max}, **geometry
        ),
        video_processor=Qwen2VLVideoProcessor(
            size={"shortest_edge": video_min, "longest_edge": video_max},
            cap_pixels_per_frame=False,
            **geometry,
        ),
        tokenizer=tok,
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def qwen3_vl_processor(tok: PreTrainedTokenizerFast) -> Qwen3VLProcessor:
    geometry = dict(patch_size=16, temporal_patch_size=2, merge_size=2)
    norm = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": 65536, "longest_edge": 16777216}, **geometry, **norm
        ),
        video_processor=Qwen3VLVideoProcessor(
            size={"shortest_edge": 4096, "longest_edge": 25165824}, **geometry, **norm
        ),
        tokenizer=tok,
        chat_template=QWEN3_CHAT_TEMPLATE,
    )


RECIPES: dict[str, Recipe] = {
    "llava-ov-0.5b": Recipe(
        "llava-ov-0.5b",
        "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
        llava_ov_05b_config,
        lambda tok: llava_onevision_processor(tok),
        LlavaOnevisionForConditionalGeneration,
        "bfloat16",
        gpu_sized=False,
        tiny=lambda: tiny_llava(152000),
        tokenizer=llava_tokenizer,
    ),
    "llava-ov-7b": Recipe(
        "llava-ov-7b",
        "llava-hf/llava-onevision-qwen2-7b-ov-hf",
        llava_ov_7b_config,
        lambda tok: llava_onevision_processor(tok),
        LlavaOnevisionForConditionalGeneration,
        "bfloat16",
        gpu_sized=True,
        tiny=lambda: tiny_llava(152128),
        tokenizer=llava_tokenizer,
    ),
    "qwen2.5-vl-7b": Recipe(
        "qwen2.5-vl-7b",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        qwen25_vl_7b_config,
        lambda tok: qwen25_vl_processor(tok),
        Qwen2_5_VLForConditionalGeneration,
        "bfloat16",
        gpu_sized=True,
        tiny=tiny_qwen25_vl,
        tokenizer=qwen_vl_tokenizer,
    ),
    "qwen3-vl-8b": Recipe(
        "qwen3-vl-8b",
        "Qwen/Qwen3-VL-8B-Instruct",
        qwen3_vl_8b_config,
        lambda tok: qwen3_vl_processor(tok),
        Qwen3VLForConditionalGeneration,
        "bfloat16",
        gpu_sized=True,
        tiny=tiny_qwen3_vl,
        tokenizer=qwen_vl_tokenizer,
    ),
    "llava-ov-cpu": Recipe(
        "llava-ov-cpu",
        None,
        llava_ov_cpu_config,
        lambda tok: llava_onevision_processor(tok),
        LlavaOnevisionForConditionalGeneration,
        "float32",
        gpu_sized=False,
        tiny=lambda: tiny_llava(152000),
        tokenizer=llava_tokenizer,
    ),
}


def all_recipes() -> dict[str, Recipe]:
    """These recipes and the newer families' (benchmarks/recent_shapes.py)."""
    from benchmarks.recent_shapes import RECENT_RECIPES

    return {**RECIPES, **RECENT_RECIPES}


def names() -> tuple[str, ...]:
    return tuple(all_recipes())


def recipe(name: str) -> Recipe:
    recipes = all_recipes()
    if name not in recipes:
        raise ValueError(f"unknown real-shape model {name!r}; choose one of {', '.join(recipes)}")
    return recipes[name]


def tokenizer_for(name: str) -> PreTrainedTokenizerFast:
    return recipe(name).tokenizer()


# --- building -----------------------------------------------------------------------------------------
def build_on_meta(name: str) -> PreTrainedModel:
    """The model with its real parameter shapes on the `meta` device: no memory, no weights (milliseconds)."""
    rec = recipe(name)
    with torch.device("meta"):
        return rec.model_class(rec.config())


def parameter_count(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"not a floating-point torch dtype: {name!r}")
    return dtype


def build_model(
    name: str, *, dtype: str | None = None, device: str = "cpu", seed: int = 0, tiny: bool = False
) -> PreTrainedModel:
    """Random weights of the recipe's shapes (or its tiny variant), made directly on `device` in `dtype`.

    The same seed gives the same weights on the same device; the global RNG is left untouched.
    """
    rec = recipe(name)
    make_config = rec.tiny if tiny else rec.config
    torch_dtype = _dtype(dtype or rec.default_dtype)
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=devices, device_type=torch.device(device).type):
        torch.manual_seed(seed)
        torch.set_default_dtype(torch_dtype)  # initialise in the target dtype: no float32 copy of 7B
        try:
            with torch.device(device):
                model = rec.model_class(make_config())
        finally:
            torch.set_default_dtype(previous)
    return model.eval()


def generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    """Greedy decoding that stops at the tokenizer's end token and pads with its pad token."""
    return GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )


def build_checkpoint(
    name: str,
    out_dir: str | Path,
    *,
    dtype: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    allow_cpu: bool = False,
) -> Path:
    """Write a loadable checkpoint folder (safetensors weights, config, processor, tokenizer, template).

    The 7B shapes refuse a CPU build unless `allow_cpu` (minutes of random init and ~16 GB of RAM).
    """
    rec = recipe(name)
    if rec.gpu_sized and torch.device(device).type == "cpu" and not allow_cpu:
        raise ValueError(
            f"{name} has ~8B parameters (~16 GB in bf16): build it with --device cuda, or on 'meta' "
            f"with build_on_meta() to inspect shapes (--allow-cpu forces a CPU build)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(name, dtype=dtype, device=device, seed=seed)
    tokenizer = tokenizer_for(name)
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(out, safe_serialization=True)
    rec.processor(tokenizer).save_pretrained(out)
    return out


def ensure_checkpoint(
    name: str, work_dir: str | Path, *, dtype: str | None = None, device: str = "cpu"
) -> Path:
    """The checkpoint folder for `name` under `work_dir`, built once and reused (keyed by name and dtype)."""
    rec = recipe(name)
    folder = Path(work_dir) / f"{name}-{dtype or rec.default_dtype}"
    if not (folder / "config.json").exists() or not any(folder.glob("*.safetensors")):
        build_checkpoint(name, folder, dtype=dtype, device=device)
    return folder


# --- CLI ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write a random-weight checkpoint folder of real shapes.")
    parser.add_argument("name", choices=names())
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--dtype", default=None, help="weights dtype (default: float32 for llava-ov-cpu, else bf16)"
    )
    parser.add_argument(
        "--device", default="cpu", help="where to initialise the weights (cuda for the 7B shapes)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-cpu", action="store_true", help="build a 7B shape on the CPU anyway")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        out = build_checkpoint(
            args.name,
            args.out_dir,
            dtype=args.dtype,
            device=args.device,
            seed=args.seed,
            allow_cpu=args.allow_cpu,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    params = parameter_count(build_on_meta(args.name))
    print(f"{args.name}: {params / 1e6:.1f}M parameters -> {out} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
