"""Real-shape recipes of the newer families: Qwen3.5, Gemma 4, InternVL3.5 (HF format), SmolVLM2, Qwen3-VL-2B.

Registered into `benchmarks.real_shapes` (see its doc for how checkpoints are built and why random weights).
Where each value comes from (research notes of this session; the official config files were not readable
directly, so every value was read in verbatim copies and cross-checked, and the parameter counts the configs
give were compared with published counts):

- Qwen3.5-0.8B / 2B / 9B: text 1024/3584/24 layers/8 heads/2 KV heads, 2048/6144/24/8/2, 4096/12288/32/16/4;
  head_dim 256, one full-attention layer in four (the rest Gated DeltaNet: 16 key heads of 128, 16 or 32
  value heads of 128, conv kernel 4), partial rotary 0.25 with interleaved mrope [11, 11, 10], theta 1e7,
  vocab 248320; vision 12/768/3072/12 heads (0.8B), 24/1024/4096/16 (2B), 27/1152/4304/16 (9B), patch 16,
  merge 2, no deepstack; ids image 248056, video 248057, vision start/end 248053/248054. The 0.8B config
  gives 0.853 B parameters, matching a published count. The processor is Qwen3-VL's.
- Gemma-4-E2B / E4B: from the transformers conversion script's variant table (hidden 1536/2560, 35/42 layers,
  sliding:full 4:1 / 5:1, 8 heads, 1/2 KV heads, MLP 4× hidden (E2B double-wide), per-layer inputs of 256,
  KV shared across the last 20/18 layers, vocab 262144; the on-device vision tower: 768 wide, 16 layers,
  12 heads, patch 16, 3×3 pooling); the audio tower is left out (video never uses it). The E2B config
  gives 5.10 B parameters with the audio tower, the published "5.1B with embeddings".
- InternVL3.5-2B / 8B (HF): InternViT-300M (1024 wide, 24 layers, 16 heads, 448 px, patch 14, pixel shuffle
  0.5 → 256 tokens per frame), image token 151671 (read in a copy of the 1B config); LLM Qwen3-1.7B
  (2048/6144/28 layers/16 heads/8 KV) and Qwen3-8B (4096/12288/36/32/8) — the LLM sizes follow the model
  cards' "built on Qwen3-1.7B/8B" and are not read from the HF-format files.
- SmolVLM2-2.2B: SigLIP-so400m at 384 px (1152 wide, 27 layers, patch 14), pixel shuffle 3 → 81 tokens per
  frame, image token 49190, vocab 49280; LLM SmolLM2-1.7B (2048/8192/24 layers/32 heads) as its card names
  it (the exact file values unread). The config gives 2.247 B parameters, the published "2.2B".
- Qwen3-VL-2B-Instruct: text 2048/6144/28/16 heads/8 KV/head_dim 128, tied; vision 24/1024/4096/16, out
  2048, deepstack [5, 11, 17] (exact match with the published 2.128 B parameters).
"""

from __future__ import annotations

from typing import Any

from transformers import (
    Gemma4AudioFeatureExtractor,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4ImageProcessor,
    Gemma4Processor,
    Gemma4VideoProcessor,
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen3_5Config,
    Qwen3_5ForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
    SmolVLMVideoProcessor,
)

from benchmarks.real_shapes import (
    QWEN3_CHAT_TEMPLATE,
    TINY_MROPE,
    Recipe,
    build_tokenizer,
    qwen3_vl_processor,
    qwen_vl_tokenizer,
)

# --- Qwen3.5 ------------------------------------------------------------------------------------------------
Q35_END_OF_TEXT, Q35_IM_START, Q35_IM_END = 248044, 248045, 248046
Q35_VISION_START, Q35_VISION_END, Q35_IMAGE, Q35_VIDEO = 248053, 248054, 248056, 248057


def qwen3_5_tokenizer() -> PreTrainedTokenizerFast:
    specials = {
        Q35_END_OF_TEXT: "<|endoftext|>",
        Q35_IM_START: "<|im_start|>",
        Q35_IM_END: "<|im_end|>",
        Q35_VISION_START: "<|vision_start|>",
        Q35_VISION_END: "<|vision_end|>",
        Q35_IMAGE: "<|image_pad|>",
        Q35_VIDEO: "<|video_pad|>",
    }
    return build_tokenizer(specials, eos=Q35_IM_END, pad=Q35_END_OF_TEXT, size=248320)


def _qwen3_5(text: dict[str, Any], vision: dict[str, Any]) -> Qwen3_5Config:
    layers = int(text["num_hidden_layers"])
    text = {
        "vocab_size": 248320,
        "head_dim": 256,
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_num_key_heads": 16,
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6,
        "eos_token_id": Q35_IM_END,
        "pad_token_id": Q35_END_OF_TEXT,
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"]
        * (layers // 4),
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000000.0,
            "mrope_section": [11, 11, 10],
            "mrope_interleaved": True,
            "partial_rotary_factor": 0.25,
        },
        **text,
    }
    vision = {
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 2304,
        "hidden_act": "gelu_pytorch_tanh",
        **vision,
    }
    return Qwen3_5Config(
        text_config=text,
        vision_config=vision,
        image_token_id=Q35_IMAGE,
        video_token_id=Q35_VIDEO,
        vision_start_token_id=Q35_VISION_START,
        vision_end_token_id=Q35_VISION_END,
        tie_word_embeddings=bool(text["tie_word_embeddings"]),
    )


def qwen3_5_0_8b() -> Qwen3_5Config:
    return _qwen3_5(
        dict(
            hidden_size=1024,
            intermediate_size=3584,
            num_hidden_layers=24,
            num_attention_heads=8,
            num_key_value_heads=2,
            linear_num_value_heads=16,
            tie_word_embeddings=True,
        ),
        dict(depth=12, hidden_size=768, intermediate_size=3072, num_heads=12, out_hidden_size=1024),
    )


def qwen3_5_2b() -> Qwen3_5Config:
    return _qwen3_5(
        dict(
            hidden_size=2048,
            intermediate_size=6144,
            num_hidden_layers=24,
            num_attention_heads=8,
            num_key_value_heads=2,
            linear_num_value_heads=16,
            tie_word_embeddings=True,
        ),
        dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048),
    )


def qwen3_5_9b() -> Qwen3_5Config:
    return _qwen3_5(
        dict(
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=32,
            num_attention_heads=16,
            num_key_value_heads=4,
            linear_num_value_heads=32,
            tie_word_embeddings=False,
        ),
        dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096),
    )


def tiny_qwen3_5() -> Qwen3_5Config:
    config = _qwen3_5(
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=16,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            linear_num_key_heads=2,
            linear_num_value_heads=2,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            tie_word_embeddings=True,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000000.0,
                "mrope_section": TINY_MROPE,
                "mrope_interleaved": True,
                "partial_rotary_factor": 1.0,
            },
        ),
        dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64),
    )
    return config


def qwen3_5_processor(tok: PreTrainedTokenizerFast) -> Any:
    return qwen3_vl_processor(tok)


# --- Qwen3-VL-2B --------------------------------------------------------------------------------------------
def qwen3_vl_2b() -> Qwen3VLConfig:
    from benchmarks.real_shapes import _qwen3_vl, qwen3_vl_8b_config

    text = qwen3_vl_8b_config().text_config.to_dict()
    text.update(
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=True,
    )
    vision = qwen3_vl_8b_config().vision_config.to_dict()
    vision.update(
        depth=24,
        hidden_size=1024,
        intermediate_size=4096,
        num_heads=16,
        out_hidden_size=2048,
        deepstack_visual_indexes=[5, 11, 17],
    )
    return _qwen3_vl(text, vision)


# --- Gemma 4 ------------------------------------------------------------------------------------------------
GEMMA_PAD, GEMMA_EOS, GEMMA_BOS = 0, 1, 2
GEMMA_TURN_START, GEMMA_TURN_END = 105, 106
GEMMA_BOI, GEMMA_IMAGE, GEMMA_EOI, GEMMA_AUDIO, GEMMA_EOA, GEMMA_VIDEO = (
    255999,
    258880,
    258882,
    258881,
    258883,
    258884,
)
GEMMA_BOA = 256000
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|turn>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|video|>{% elif part['type'] == 'image' %}<|image|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<turn|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|turn>model\n{% endif %}"
)


def gemma4_tokenizer() -> PreTrainedTokenizerFast:
    specials = {
        GEMMA_PAD: "<pad>",
        GEMMA_EOS: "<eos>",
        GEMMA_BOS: "<bos>",
        GEMMA_TURN_START: "<|turn>",
        GEMMA_TURN_END: "<turn|>",
        GEMMA_BOI: "<|image>",
        GEMMA_IMAGE: "<|image|>",
        GEMMA_EOI: "<image|>",
        GEMMA_AUDIO: "<|audio|>",
        GEMMA_BOA: "<|audio>",
        GEMMA_EOA: "<audio|>",
        GEMMA_VIDEO: "<|video|>",
    }
    named = {
        "image_token": "<|image|>",
        "boi_token": "<|image>",
        "eoi_token": "<image|>",
        "audio_token": "<|audio|>",
        "boa_token": "<|audio>",
        "eoa_token": "<audio|>",
    }
    return build_tokenizer(
        specials, eos=GEMMA_TURN_END, pad=GEMMA_PAD, size=262144, named=named, bos=GEMMA_BOS
    )


def _gemma4(text: dict[str, Any]) -> Gemma4Config:
    rope = {
        "full_attention": {
            "rope_type": "proportional",
            "rope_theta": 1000000.0,
            "partial_rotary_factor": 0.25,
        },
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    }
    vision = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 16,
        "num_attention_heads": 12,
        "num_key_value_heads": 12,
        "head_dim": 64,
        "global_head_dim": 64,
        "default_output_length": 280,
        "pooling_kernel_size": 3,
        "use_clipped_linears": True,
        **text.pop("vision", {}),
    }
    return Gemma4Config(
        text_config={
            "hidden_size_per_layer_input": 256,
            "attention_k_eq_v": False,
            "final_logit_softcapping": 30.0,
            "rope_parameters": rope,
            "pad_token_id": GEMMA_PAD,
            "eos_token_id": GEMMA_TURN_END,
            "bos_token_id": GEMMA_BOS,
            **text,
        },
        vision_config=vision,
        audio_config=None,
        vision_soft_tokens_per_image=280,
        image_token_id=GEMMA_IMAGE,
        video_token_id=GEMMA_VIDEO,
        audio_token_id=GEMMA_AUDIO,
        boi_token_id=GEMMA_BOI,
        eoi_token_id=GEMMA_EOI,
        boa_token_id=GEMMA_BOA,
        eoa_token_index=GEMMA_EOA,
    )


def gemma4_e2b() -> Gemma4Config:
    return _gemma4(
        dict(
            hidden_size=1536,
            intermediate_size=4 * 1536,
            num_hidden_layers=35,
            layer_types=(["sliding_attention"] * 4 + ["full_attention"]) * 7,
            num_attention_heads=8,
            num_key_value_heads=1,
            num_kv_shared_layers=20,
            use_double_wide_mlp=True,
        )
    )


def gemma4_e4b() -> Gemma4Config:
    return _gemma4(
        dict(
            hidden_size=2560,
            intermediate_size=4 * 2560,
            num_hidden_layers=42,
            layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 7,
            num_attention_heads=8,
            num_key_value_heads=2,
            global_head_dim=512,
            num_kv_shared_layers=18,
        )
    )


def tiny_gemma4() -> Gemma4Config:
    return _gemma4(
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=8,
            layer_types=["sliding_attention", "full_attention"] * 4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            global_head_dim=16,
            hidden_size_per_layer_input=16,
            num_kv_shared_layers=0,
            vision={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "head_dim": 16,
                "global_head_dim": 16,
            },
        )
    )


def gemma4_processor(tok: PreTrainedTokenizerFast) -> Gemma4Processor:
    return Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=Gemma4ImageProcessor(),
        tokenizer=tok,
        video_processor=Gemma4VideoProcessor(),
        chat_template=GEMMA_CHAT_TEMPLATE,
    )


# --- InternVL3.5 (HF format) --------------------------------------------------------------------------------
IVL_START, IVL_END, IVL_CONTEXT, IVL_VIDEO = 151669, 151670, 151671, 151672
INTERNVL_CHAT_TEMPLATE = QWEN3_CHAT_TEMPLATE.replace(
    "<|vision_start|><|video_pad|><|vision_end|>", "<video>\n"
).replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>\n")


def internvl_tokenizer() -> PreTrainedTokenizerFast:
    from benchmarks.real_shapes import ENDOFTEXT, IM_END, IM_START

    specials = {
        ENDOFTEXT: "<|endoftext|>",
        IM_START: "<|im_start|>",
        IM_END: "<|im_end|>",
        IVL_START: "<img>",
        IVL_END: "</img>",
        IVL_CONTEXT: "<IMG_CONTEXT>",
        IVL_VIDEO: "<video>",
    }
    named = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    return build_tokenizer(specials, eos=IM_END, pad=ENDOFTEXT, size=151936, named=named)


def _internvl(text: dict[str, Any]) -> InternVLConfig:
    vision = {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": [448, 448],
        "patch_size": [14, 14],
        **text.pop("vision", {}),
    }
    text = {
        "model_type": "qwen3",
        "vocab_size": 151936,
        "head_dim": 128,
        "max_position_embeddings": 40960,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "rms_norm_eps": 1e-6,
        **text,
    }
    return InternVLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=IVL_CONTEXT,
        image_seq_length=256,
        downsample_ratio=0.5,
        tie_word_embeddings=bool(text.get("tie_word_embeddings")),
    )


def internvl_2b() -> InternVLConfig:
    return _internvl(
        dict(
            hidden_size=2048,
            intermediate_size=6144,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            tie_word_embeddings=True,
        )
    )


def internvl_8b() -> InternVLConfig:
    return _internvl(
        dict(
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=36,
            num_attention_heads=32,
            num_key_value_heads=8,
            tie_word_embeddings=False,
        )
    )


def tiny_internvl() -> InternVLConfig:
    return _internvl(
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            tie_word_embeddings=True,
            vision={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
            },
        )
    )


def internvl_processor(tok: PreTrainedTokenizerFast) -> InternVLProcessor:
    side = {"height": 448, "width": 448}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=side),
        tokenizer=tok,
        video_processor=InternVLVideoProcessor(size=side),
        image_seq_length=256,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )


# --- SmolVLM2 -----------------------------------------------------------------------------------------------
SMOL_PAD, SMOL_END = 2, 49279
SMOL_FAKE, SMOL_IMAGE, SMOL_GLOBAL, SMOL_VIDEO = 49189, 49190, 49152, 49153


def smolvlm_tokenizer() -> PreTrainedTokenizerFast:
    specials = {
        SMOL_PAD: "<|im_end|>",
        SMOL_END: "<end_of_utterance>",
        SMOL_FAKE: "<fake_token_around_image>",
        SMOL_IMAGE: "<image>",
        SMOL_GLOBAL: "<global-img>",
        SMOL_VIDEO: "<video>",
    }
    return build_tokenizer(specials, eos=SMOL_END, pad=SMOL_PAD, size=49280)


def _smolvlm(text: dict[str, Any], vision: dict[str, Any], scale: int) -> SmolVLMConfig:
    text = {
        "model_type": "llama",
        "vocab_size": 49280,
        "head_dim": 64,
        "max_position_embeddings": 8192,
        "rope_parameters": {"rope_type": "default", "rope_theta": 130000.0},
        "pad_token_id": SMOL_PAD,
        "eos_token_id": SMOL_END,
        "bos_token_id": None,
        **text,
    }
    return SmolVLMConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=SMOL_IMAGE,
        scale_factor=scale,
        pad_token_id=SMOL_PAD,
        tie_word_embeddings=bool(text.get("tie_word_embeddings")),
    )


def smolvlm_2_2b() -> SmolVLMConfig:
    return _smolvlm(
        dict(
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=24,
            num_attention_heads=32,
            num_key_value_heads=32,
            tie_word_embeddings=False,
        ),
        dict(
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=27,
            num_attention_heads=16,
            image_size=384,
            patch_size=14,
        ),
        scale=3,
    )


def tiny_smolvlm() -> SmolVLMConfig:
    return _smolvlm(
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            tie_word_embeddings=True,
        ),
        dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=384,
            patch_size=14,
        ),
        scale=3,
    )


def smolvlm_processor(tok: PreTrainedTokenizerFast) -> SmolVLMProcessor:
    return SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(
            size={"longest_edge": 1536}, max_image_size={"longest_edge": 384}
        ),
        tokenizer=tok,
        video_processor=SmolVLMVideoProcessor(
            size={"longest_edge": 384}, max_image_size={"longest_edge": 384}
        ),
        image_seq_len=81,
    )


def _recipe(
    name: str,
    hub_id: str,
    config: Any,
    processor: Any,
    model_class: type,
    tiny: Any,
    tokenizer: Any,
    gpu_sized: bool,
) -> Recipe:
    return Recipe(
        name,
        hub_id,
        config,
        processor,
        model_class,
        "bfloat16",
        gpu_sized=gpu_sized,
        tiny=tiny,
        tokenizer=tokenizer,
    )


def _tiny_qwen3_vl() -> PretrainedConfig:
    from benchmarks.real_shapes import tiny_qwen3_vl

    return tiny_qwen3_vl()


RECENT_RECIPES: dict[str, Recipe] = {
    "qwen3.5-0.8b": _recipe(
        "qwen3.5-0.8b",
        "Qwen/Qwen3.5-0.8B",
        qwen3_5_0_8b,
        qwen3_5_processor,
        Qwen3_5ForConditionalGeneration,
        tiny_qwen3_5,
        qwen3_5_tokenizer,
        False,
    ),
    "qwen3.5-2b": _recipe(
        "qwen3.5-2b",
        "Qwen/Qwen3.5-2B",
        qwen3_5_2b,
        qwen3_5_processor,
        Qwen3_5ForConditionalGeneration,
        tiny_qwen3_5,
        qwen3_5_tokenizer,
        False,
    ),
    "qwen3.5-9b": _recipe(
        "qwen3.5-9b",
        "Qwen/Qwen3.5-9B",
        qwen3_5_9b,
        qwen3_5_processor,
        Qwen3_5ForConditionalGeneration,
        tiny_qwen3_5,
        qwen3_5_tokenizer,
        True,
    ),
    "qwen3-vl-2b": _recipe(
        "qwen3-vl-2b",
        "Qwen/Qwen3-VL-2B-Instruct",
        qwen3_vl_2b,
        qwen3_vl_processor,
        Qwen3VLForConditionalGeneration,
        _tiny_qwen3_vl,
        qwen_vl_tokenizer,
        False,
    ),
    "gemma-4-e2b": _recipe(
        "gemma-4-e2b",
        "google/gemma-4-E2B-it",
        gemma4_e2b,
        gemma4_processor,
        Gemma4ForConditionalGeneration,
        tiny_gemma4,
        gemma4_tokenizer,
        True,
    ),
    "gemma-4-e4b": _recipe(
        "gemma-4-e4b",
        "google/gemma-4-E4B-it",
        gemma4_e4b,
        gemma4_processor,
        Gemma4ForConditionalGeneration,
        tiny_gemma4,
        gemma4_tokenizer,
        True,
    ),
    "internvl3.5-2b": _recipe(
        "internvl3.5-2b",
        "OpenGVLab/InternVL3_5-2B-HF",
        internvl_2b,
        internvl_processor,
        InternVLForConditionalGeneration,
        tiny_internvl,
        internvl_tokenizer,
        False,
    ),
    "internvl3.5-8b": _recipe(
        "internvl3.5-8b",
        "OpenGVLab/InternVL3_5-8B-HF",
        internvl_8b,
        internvl_processor,
        InternVLForConditionalGeneration,
        tiny_internvl,
        internvl_tokenizer,
        True,
    ),
    "smolvlm2-2.2b": _recipe(
        "smolvlm2-2.2b",
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
        smolvlm_2_2b,
        smolvlm_processor,
        SmolVLMForConditionalGeneration,
        tiny_smolvlm,
        smolvlm_tokenizer,
        False,
    ),
}
