"""Tiny random-weight checkpoints of the newer VideoLLM families: Qwen3.5, Gemma 4, InternVL, SmolVLM.

Owns `BUILDERS` (family -> builder of a fresh model and processor) and `build_recent_checkpoint`, the
counterpart of `tests.tiny_models.build_tiny_checkpoint` for these four families. As there, every piece is a
real transformers class (tokenizer, processor, video processor, chat template, model) shrunk to ~100k
parameters, so API drift between transformers releases shows up in tests that never download weights. Each
builder sets `model.generation_config` (greedy, eos/pad ids inside the vocabulary) and draws its weights from
the torch RNG, so it is deterministic under an outer `torch.manual_seed`.

Tokenizers are byte-level BPE without merges (the 256 byte symbols plus each family's special tokens), so
every prompt, including the timestamps and frame labels the processors write, round-trips exactly. Qwen3.5
needs this: `AutoTokenizer` always rebuilds a byte-level `Qwen3_5Tokenizer` for `qwen3_5`.

Initializer ranges are per family (`*_INIT`): with the 0.02 default, tiny text stacks answer the same whatever
the video, and Gemma 4's vision tower (position table initialised to ones) barely sees the pixels. With the
chosen values the greedy answer to an 8-frame clip changes when the frames are re-noised
(`tiny_frames(8, seed=1)`) or reversed, for weight seeds 0-7 in every family and for at least 14 of the seeds
0-15 (a tiny random model cannot promise it for every seed).

Geometry for 64x64 frames:
- qwen3_5: Qwen3-VL processor, patch 4, merge 2, temporal patch 2; the per-frame cap (16 merged tokens)
  resizes 64x64 to 32x32 -> 16 `<|video_pad|>` per temporal patch of 2 frames, each patch written as
  `<t seconds><|vision_start|>...<|vision_end|>` inside the template's own vision_start/end. Text: 4 layers,
  linear / full / linear / full attention (Gated DeltaNet; gated softmax attention with interleaved M-RoPE
  over a quarter of the head dim); no deepstack.
- gemma4: the video processor always resizes a frame to fill `max_soft_tokens` (70, the smallest value it
  accepts) after k x k pooling: 64x64 -> 96x96, patch 4 -> 24x24 patches, k = 3 -> 64 `<|video|>` per frame,
  each frame written as `mm:ss <|image>...<image|>`, frames joined by spaces. Text: 4 layers, sliding / full /
  sliding / full (window 128, shorter than the prompt), per-layer embeddings (PLE, as E2B/E4B), a frame's soft
  tokens attend to each other bidirectionally, no KV sharing. No audio tower, but the processor still needs
  the audio feature extractor.
- internvl: frames resized to 32x32, patch 4 -> 8x8, pixel shuffle 0.5 -> 16 `<IMG_CONTEXT>` per frame, each
  frame written as `FrameN: <img>...</img>`, frames separated by newlines; no timestamps. Text: qwen3,
  2 layers.
- smolvlm: frames resized to 32x32, patch 4 -> 8x8, pixel shuffle 2 -> 16 `<image>` per frame; an intro
  sentence, then per frame `\\nFrame from mm:ss:<fake_token_around_image><global-img>...
  <fake_token_around_image>`. Text: llama, 2 layers. `SmolVLMProcessor` needs the `num2words` package, and for
  a video its `apply_chat_template` uses its built-in template instead of the checkpoint's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    Gemma4AudioFeatureExtractor,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4ImageProcessor,
    Gemma4Processor,
    Gemma4VideoProcessor,
    GenerationConfig,
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen3_5Config,
    Qwen3_5ForConditionalGeneration,
    Qwen3_5MoeConfig,
    Qwen3_5MoeForConditionalGeneration,
    Qwen3_5Tokenizer,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
    SmolVLMVideoProcessor,
)

from tests.tiny_models import (
    FAMILIES,
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    KV_HEADS,
    QWEN3_FRAME_TOKENS,
    QWEN3_MAX_VIDEO_PIXELS,
    QWEN_CHAT_TEMPLATE,
    QWEN_MAX_PIXELS,
    QWEN_MERGE,
    QWEN_MIN_PIXELS,
    QWEN_PATCH,
    QWEN_TEMPORAL_PATCH,
)

RECENT_FAMILIES = ("qwen3_5", "qwen3_5_moe", "gemma4", "internvl", "smolvlm")
ALL_FAMILIES = (*FAMILIES, *RECENT_FAMILIES)  # every family vidqa supports, old and new

# A builder returns a fresh (model, processor); weights come from the caller's torch RNG state.
Builder = Callable[[], tuple[PreTrainedModel, ProcessorMixin]]

HEAD_DIM = HIDDEN // HEADS
VISION_LAYERS = 2
PAD_TOKEN = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# Qwen3.5: hybrid text stack (Gated DeltaNet layers carry no positions), full-attention layers at 1 and 3 so a
# decode-time method can score at one full-attention layer and act at a later one.
QWEN3_5_LAYER_TYPES = ["linear_attention", "full_attention", "linear_attention", "full_attention"]
QWEN3_5_HEAD_DIM = 32  # x partial_rotary_factor 0.25 -> 8 rotary dims -> M-RoPE sections sum to 4
QWEN3_5_ROTARY_FACTOR = 0.25
QWEN3_5_MROPE_SECTION = [2, 1, 1]
QWEN3_5_LINEAR_HEAD_DIM = 8
QWEN3_5_LINEAR_KEY_HEADS = 2
QWEN3_5_LINEAR_VALUE_HEADS = 4
QWEN3_5_POSITION_EMBEDDINGS = 64  # the vision tower's learned 8x8 grid, interpolated to each frame's patches
QWEN3_5_TEXT_INIT = 0.15
QWEN3_5_VISION_INIT = 0.1
#: Qwen3.5-MoE: a handful of small experts, two routed per token, plus the shared expert
QWEN3_5_MOE = {
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
}
QWEN3_5_SPECIALS = (
    PAD_TOKEN,
    IM_START,
    IM_END,
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Gemma 4: patches of GEMMA_PATCH pixels, pooled GEMMA_POOL x GEMMA_POOL into soft tokens.
GEMMA_PATCH = 4
GEMMA_POOL = 3
GEMMA_SOFT_TOKENS = 70  # the smallest budget Gemma4VideoProcessor accepts
GEMMA_LAYER_TYPES = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]
GEMMA_SLIDING_WINDOW = 128  # shorter than an 8-frame prompt (612 tokens), so the window really masks
GEMMA_GLOBAL_HEAD_DIM = 16  # full-attention layers have their own head_dim (512 by default)
GEMMA_PLE_DIM = 8  # per-layer embeddings (hidden_size_per_layer_input), as in E2B/E4B
GEMMA_POSITION_TABLE = 256  # 2-D patch positions per axis; a 64x64 frame uses 24
GEMMA_LOGIT_SOFTCAP = 30.0
GEMMA_TEXT_INIT = 0.05  # Gemma scales token embeddings by sqrt(hidden)
GEMMA_VISION_INIT = 0.2  # vision tower and the multimodal embedder (top-level initializer_range)
GEMMA_BOS, GEMMA_EOS, GEMMA_PAD = "<bos>", "<eos>", "<pad>"
GEMMA_TURN_START, GEMMA_TURN_END = "<|turn>", "<turn|>"
GEMMA_VIDEO_TOKEN = "<|video|>"  # Gemma4Processor adds it itself; in the vocabulary its id stays < vocab_size
# Gemma4Processor reads these named tokens from the tokenizer (validate_inputs needs boa/eoa, audio or not).
GEMMA_NAMED_TOKENS = {
    "image_token": "<|image|>",
    "boi_token": "<|image>",
    "eoi_token": "<image|>",
    "audio_token": "<|audio|>",
    "boa_token": "<|audio>",
    "eoa_token": "<audio|>",
}
GEMMA_SPECIALS = (
    GEMMA_PAD,
    GEMMA_EOS,
    GEMMA_BOS,
    GEMMA_TURN_START,
    GEMMA_TURN_END,
    GEMMA_VIDEO_TOKEN,
    *GEMMA_NAMED_TOKENS.values(),
)

# InternVL and SmolVLM: a square frame of VISION_SIDE pixels in VISION_PATCH patches, then a 2x pixel shuffle
# -> (32 / 4 / 2)^2 = 16 tokens per frame.
VISION_SIDE = 32
VISION_PATCH = 4
PIXEL_SHUFFLE = 2
FRAME_TOKENS = (VISION_SIDE // VISION_PATCH // PIXEL_SHUFFLE) ** 2
INTERNVL_TEXT_LAYERS = 2
INTERNVL_TEXT_INIT = 0.2
INTERNVL_VISION_INIT = 0.1
INTERNVL_TIE_EMBEDDINGS = False  # tied, the tiny model mostly repeats one token whatever the video
# InternVLProcessor reads these named tokens (and their ids) from the tokenizer.
INTERNVL_NAMED_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
INTERNVL_SPECIALS = (PAD_TOKEN, IM_START, IM_END, *INTERNVL_NAMED_TOKENS.values())

SMOLVLM_TEXT_LAYERS = 2
SMOLVLM_TEXT_INIT = 0.2
SMOLVLM_VISION_INIT = 0.1
SMOLVLM_EOS = "<end_of_utterance>"
# SmolVLMProcessor's default token names, which its built-in video template and prompt expansion write.
SMOLVLM_SPECIALS = (
    PAD_TOKEN,
    IM_START,
    SMOLVLM_EOS,
    "<fake_token_around_image>",
    "<global-img>",
    "<image>",
    "<video>",
)

GEMMA_CHAT_TEMPLATE = (
    "<bos>{% for message in messages %}"
    "<|turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|video|>{% elif part['type'] == 'image' %}<|image|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<turn|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|turn>model\n{% endif %}"
)
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>\n{% elif part['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Only used for image-only and text-only conversations: SmolVLMProcessor swaps in its own template for videos.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>{% elif part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


# ----------------------------------------------------------------------------------------------------------
# Tokenizers


def _byte_vocab(specials: Sequence[str]) -> dict[str, int]:
    """The 256 ByteLevel symbols, then the special tokens: every string encodes, one token per byte."""
    symbols = [*sorted(pre_tokenizers.ByteLevel.alphabet()), *specials]
    return {symbol: i for i, symbol in enumerate(symbols)}


def _mark_special(tok: PreTrainedTokenizerBase, specials: Sequence[str]) -> None:
    """Match the specials before byte-level splitting; they already have ids in the vocabulary."""
    tok.add_tokens([AddedToken(s, special=True, normalized=False) for s in specials], special_tokens=True)


def _generic_byte_tokenizer(
    specials: Sequence[str], *, eos: str, pad: str, named: dict[str, str] | None = None, **extra: Any
) -> PreTrainedTokenizerFast:
    """A byte-level BPE saved as a plain `tokenizer.json` (what Gemma 4 and SmolVLM load back)."""
    backend = Tokenizer(models.BPE(vocab=_byte_vocab(specials), merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=eos, pad_token=pad, extra_special_tokens=named or {}, **extra
    )


def special_id(tok: PreTrainedTokenizerBase, token: str) -> int:
    """The id of a token that must be in the vocabulary: a typo must fail, not become some other id."""
    vocab = tok.get_vocab()
    if token not in vocab:
        raise ValueError(f"{token!r} is not in the tiny vocabulary")
    return int(vocab[token])


def _greedy(tok: PreTrainedTokenizerBase, eos: Sequence[str], pad: str) -> GenerationConfig:
    """Greedy decoding with eos/pad ids inside the tiny vocabulary, so generate() never warns."""
    eos_ids = [special_id(tok, token) for token in eos]
    return GenerationConfig(
        eos_token_id=eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        pad_token_id=special_id(tok, pad),
        do_sample=False,
    )


def _text_config(
    tok: PreTrainedTokenizerBase, *, layers: int, init_range: float, **extra: Any
) -> dict[str, Any]:
    """The tiny decoder sizes shared by the families; `extra` adds or overrides per family."""
    return {
        "vocab_size": len(tok),
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 2048,
        "initializer_range": init_range,
        **extra,
    }


# ----------------------------------------------------------------------------------------------------------
# Qwen3.5


def _qwen3_5_tokenizer() -> Qwen3_5Tokenizer:
    tok = Qwen3_5Tokenizer(
        vocab=_byte_vocab(QWEN3_5_SPECIALS), merges=[], eos_token=IM_END, pad_token=PAD_TOKEN
    )
    _mark_special(tok, QWEN3_5_SPECIALS)
    return tok


def _qwen3_5(moe: bool = False) -> tuple[PreTrainedModel, ProcessorMixin]:
    tok = _qwen3_5_tokenizer()
    config_class = Qwen3_5MoeConfig if moe else Qwen3_5Config
    experts = QWEN3_5_MOE if moe else {}
    config = config_class(
        text_config=_text_config(
            tok,
            layers=len(QWEN3_5_LAYER_TYPES),
            init_range=QWEN3_5_TEXT_INIT,
            head_dim=QWEN3_5_HEAD_DIM,
            layer_types=QWEN3_5_LAYER_TYPES,
            linear_key_head_dim=QWEN3_5_LINEAR_HEAD_DIM,
            linear_value_head_dim=QWEN3_5_LINEAR_HEAD_DIM,
            linear_num_key_heads=QWEN3_5_LINEAR_KEY_HEADS,
            linear_num_value_heads=QWEN3_5_LINEAR_VALUE_HEADS,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": QWEN3_5_ROTARY_FACTOR,
                "mrope_section": QWEN3_5_MROPE_SECTION,
                "mrope_interleaved": True,
            },
            pad_token_id=special_id(tok, PAD_TOKEN),
            eos_token_id=special_id(tok, IM_END),
            **experts,
        ),
        vision_config={
            "depth": VISION_LAYERS,
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_heads": HEADS,
            "out_hidden_size": HIDDEN,
            "num_position_embeddings": QWEN3_5_POSITION_EMBEDDINGS,
            "patch_size": QWEN_PATCH,
            "temporal_patch_size": QWEN_TEMPORAL_PATCH,
            "spatial_merge_size": QWEN_MERGE,
            "initializer_range": QWEN3_5_VISION_INIT,
        },
        image_token_id=special_id(tok, "<|image_pad|>"),
        video_token_id=special_id(tok, "<|video_pad|>"),
        vision_start_token_id=special_id(tok, "<|vision_start|>"),
        vision_end_token_id=special_id(tok, "<|vision_end|>"),
    )
    image_processor = Qwen2VLImageProcessor(
        patch_size=QWEN_PATCH,
        temporal_patch_size=QWEN_TEMPORAL_PATCH,
        merge_size=QWEN_MERGE,
        size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS},
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
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=video_processor,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    model = (Qwen3_5MoeForConditionalGeneration if moe else Qwen3_5ForConditionalGeneration)(config)
    model.generation_config = _greedy(tok, [IM_END], PAD_TOKEN)
    return model, processor


# ----------------------------------------------------------------------------------------------------------
# Gemma 4


def _gemma4() -> tuple[PreTrainedModel, ProcessorMixin]:
    tok = _generic_byte_tokenizer(
        GEMMA_SPECIALS, eos=GEMMA_EOS, pad=GEMMA_PAD, named=GEMMA_NAMED_TOKENS, bos_token=GEMMA_BOS
    )
    config = Gemma4Config(
        text_config=_text_config(
            tok,
            layers=len(GEMMA_LAYER_TYPES),
            init_range=GEMMA_TEXT_INIT,
            head_dim=HEAD_DIM,
            global_head_dim=GEMMA_GLOBAL_HEAD_DIM,
            layer_types=GEMMA_LAYER_TYPES,
            sliding_window=GEMMA_SLIDING_WINDOW,
            hidden_size_per_layer_input=GEMMA_PLE_DIM,
            vocab_size_per_layer_input=len(tok),
            use_bidirectional_attention="vision",
            final_logit_softcapping=GEMMA_LOGIT_SOFTCAP,
            pad_token_id=special_id(tok, GEMMA_PAD),
            eos_token_id=special_id(tok, GEMMA_EOS),
            bos_token_id=special_id(tok, GEMMA_BOS),
        ),
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": VISION_LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": HEADS,
            "head_dim": HEAD_DIM,
            "patch_size": GEMMA_PATCH,
            "pooling_kernel_size": GEMMA_POOL,
            "position_embedding_size": GEMMA_POSITION_TABLE,
            "initializer_range": GEMMA_VISION_INIT,
        },
        audio_config=None,
        image_token_id=special_id(tok, GEMMA_NAMED_TOKENS["image_token"]),
        video_token_id=special_id(tok, GEMMA_VIDEO_TOKEN),
        audio_token_id=special_id(tok, GEMMA_NAMED_TOKENS["audio_token"]),
        boi_token_id=special_id(tok, GEMMA_NAMED_TOKENS["boi_token"]),
        eoi_token_id=special_id(tok, GEMMA_NAMED_TOKENS["eoi_token"]),
        boa_token_id=special_id(tok, GEMMA_NAMED_TOKENS["boa_token"]),
        eoa_token_index=special_id(tok, GEMMA_NAMED_TOKENS["eoa_token"]),
        initializer_range=GEMMA_VISION_INIT,
    )
    patch_kwargs = {
        "patch_size": GEMMA_PATCH,
        "pooling_kernel_size": GEMMA_POOL,
        "max_soft_tokens": GEMMA_SOFT_TOKENS,
    }
    processor = Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=Gemma4ImageProcessor(**patch_kwargs),
        tokenizer=tok,
        video_processor=Gemma4VideoProcessor(**patch_kwargs),
        chat_template=GEMMA_CHAT_TEMPLATE,
        image_seq_length=GEMMA_SOFT_TOKENS,
    )
    model = Gemma4ForConditionalGeneration(config)
    model.generation_config = _greedy(tok, [GEMMA_TURN_END, GEMMA_EOS], GEMMA_PAD)
    return model, processor


# ----------------------------------------------------------------------------------------------------------
# InternVL


def _internvl() -> tuple[PreTrainedModel, ProcessorMixin]:
    tok = Qwen2Tokenizer(
        vocab=_byte_vocab(INTERNVL_SPECIALS),
        merges=[],
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        extra_special_tokens=INTERNVL_NAMED_TOKENS,
    )
    _mark_special(tok, INTERNVL_SPECIALS)
    config = InternVLConfig(
        text_config=_text_config(
            tok,
            layers=INTERNVL_TEXT_LAYERS,
            init_range=INTERNVL_TEXT_INIT,
            model_type="qwen3",
            head_dim=HEAD_DIM,
            pad_token_id=special_id(tok, PAD_TOKEN),
            eos_token_id=special_id(tok, IM_END),
            bos_token_id=None,
        ),
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": VISION_LAYERS,
            "num_attention_heads": HEADS,
            "image_size": [VISION_SIDE, VISION_SIDE],
            "patch_size": [VISION_PATCH, VISION_PATCH],
            "initializer_range": INTERNVL_VISION_INIT,
        },
        image_token_id=special_id(tok, INTERNVL_NAMED_TOKENS["context_image_token"]),
        image_seq_length=FRAME_TOKENS,
        downsample_ratio=1 / PIXEL_SHUFFLE,
        tie_word_embeddings=INTERNVL_TIE_EMBEDDINGS,
    )
    side = {"height": VISION_SIDE, "width": VISION_SIDE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=side, crop_to_patches=False),
        tokenizer=tok,
        video_processor=InternVLVideoProcessor(size=side),
        image_seq_length=FRAME_TOKENS,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    model = InternVLForConditionalGeneration(config)
    model.generation_config = _greedy(tok, [IM_END], PAD_TOKEN)
    return model, processor


# ----------------------------------------------------------------------------------------------------------
# SmolVLM


def _smolvlm() -> tuple[PreTrainedModel, ProcessorMixin]:
    tok = _generic_byte_tokenizer(SMOLVLM_SPECIALS, eos=SMOLVLM_EOS, pad=PAD_TOKEN)
    config = SmolVLMConfig(
        text_config=_text_config(
            tok,
            layers=SMOLVLM_TEXT_LAYERS,
            init_range=SMOLVLM_TEXT_INIT,
            model_type="llama",
            head_dim=HEAD_DIM,
            pad_token_id=special_id(tok, PAD_TOKEN),
            eos_token_id=special_id(tok, SMOLVLM_EOS),
            bos_token_id=None,
        ),
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": VISION_LAYERS,
            "num_attention_heads": HEADS,
            "image_size": VISION_SIDE,
            "patch_size": VISION_PATCH,
            "initializer_range": SMOLVLM_VISION_INIT,
        },
        image_token_id=special_id(tok, "<image>"),
        scale_factor=PIXEL_SHUFFLE,
        pad_token_id=special_id(tok, PAD_TOKEN),  # deprecated top-level copy; the default is off-vocab
    )
    edge = {"longest_edge": VISION_SIDE}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=edge, max_image_size=edge, do_image_splitting=False),
        tokenizer=tok,
        video_processor=SmolVLMVideoProcessor(size=edge, max_image_size=edge),
        image_seq_len=FRAME_TOKENS,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    model = SmolVLMForConditionalGeneration(config)
    model.generation_config = _greedy(tok, [SMOLVLM_EOS], PAD_TOKEN)
    return model, processor


BUILDERS: dict[str, Builder] = {
    "qwen3_5": _qwen3_5,
    "qwen3_5_moe": lambda: _qwen3_5(moe=True),
    "gemma4": _gemma4,
    "internvl": _internvl,
    "smolvlm": _smolvlm,
}


def build_recent_checkpoint(family: str, out_dir: Path, *, seed: int = 0) -> Path:
    """Write a loadable checkpoint (model, processor, tokenizer, chat template) for `family` into out_dir.

    The same seed gives bit-identical weights; the global torch RNG is left untouched.
    """
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; expected one of {RECENT_FAMILIES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = BUILDERS[family]()
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
