"""Model families vidqa supports: adapters chosen by the checkpoint's `model_type`, plus short aliases.

Importing this package is cheap (no torch/transformers at import time); loading happens in `loading.py`.
The catalog's numbers are stated in docs/models.md with their sources (parameter counts are of the released
checkpoints, vision tower included).
"""

from __future__ import annotations

from dataclasses import dataclass

from vidqa.errors import UnsupportedModelError


@dataclass(frozen=True)
class CatalogEntry:
    """One alias: the checkpoint, its family (`model_type`), its size and whether a laptop runs it."""

    hub_id: str
    family: str
    parameters: float  # billions, every parameter of the released checkpoint
    laptop: bool  # answers an 8-frame question on a 2-core laptop CPU in about a minute (docs/models.md)


#: Short names for common checkpoints. Any hub id or local folder of a supported architecture works too.
CATALOG: dict[str, CatalogEntry] = {
    "qwen3-vl-2b": CatalogEntry("Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", 2.13, True),
    "qwen3-vl-4b": CatalogEntry("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", 4.44, False),
    "qwen3-vl-8b": CatalogEntry("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", 8.77, False),
    "qwen3.5-0.8b": CatalogEntry("Qwen/Qwen3.5-0.8B", "qwen3_5", 0.85, True),
    "qwen3.5-2b": CatalogEntry("Qwen/Qwen3.5-2B", "qwen3_5", 2.21, True),
    "qwen3.5-4b": CatalogEntry("Qwen/Qwen3.5-4B", "qwen3_5", 4.54, False),
    "qwen3.5-9b": CatalogEntry("Qwen/Qwen3.5-9B", "qwen3_5", 9.41, False),
    "qwen3.5-35b-a3b": CatalogEntry("Qwen/Qwen3.5-35B-A3B", "qwen3_5_moe", 35.0, False),  # size: the name
    "gemma-4-e2b": CatalogEntry("google/gemma-4-E2B-it", "gemma4", 5.10, False),
    "gemma-4-e4b": CatalogEntry("google/gemma-4-E4B-it", "gemma4", 7.94, False),
    "internvl3.5-1b": CatalogEntry("OpenGVLab/InternVL3_5-1B-HF", "internvl", 0.91, True),
    "internvl3.5-2b": CatalogEntry("OpenGVLab/InternVL3_5-2B-HF", "internvl", 2.04, False),
    "internvl3.5-8b": CatalogEntry("OpenGVLab/InternVL3_5-8B-HF", "internvl", 8.53, False),
    "smolvlm2-256m": CatalogEntry("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "smolvlm", 0.26, True),
    "smolvlm2-500m": CatalogEntry("HuggingFaceTB/SmolVLM2-500M-Video-Instruct", "smolvlm", 0.51, True),
    "smolvlm2-2.2b": CatalogEntry("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "smolvlm", 2.25, False),
    "llava-ov-0.5b": CatalogEntry("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava_onevision", 0.89, True),
    "llava-ov-7b": CatalogEntry("llava-hf/llava-onevision-qwen2-7b-ov-hf", "llava_onevision", 8.03, False),
    "llava-ov-72b": CatalogEntry("llava-hf/llava-onevision-qwen2-72b-ov-hf", "llava_onevision", 73.2, False),
    "llava-video-7b": CatalogEntry("llava-hf/LLaVA-Video-7B-Qwen2-hf", "llava_onevision", 8.03, False),
    "qwen2-vl-2b": CatalogEntry("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", 2.21, True),
    "qwen2-vl-7b": CatalogEntry("Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", 8.29, False),
    "qwen2.5-vl-3b": CatalogEntry("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", 3.75, False),
    "qwen2.5-vl-7b": CatalogEntry("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", 8.29, False),
    "qwen2.5-vl-72b": CatalogEntry("Qwen/Qwen2.5-VL-72B-Instruct", "qwen2_5_vl", 73.4, False),
}
ALIASES: dict[str, str] = {name: entry.hub_id for name, entry in CATALOG.items()}

DEFAULT_MODEL = "qwen3.5-2b"  # best published video QA a laptop CPU answers in ~30 s (docs/models.md)

#: model_type → "module:Class" of its adapter, imported only when a model of that type is loaded.
ADAPTERS: dict[str, str] = {
    "llava_onevision": "vidqa.models.llava_onevision:LlavaOnevisionAdapter",
    "qwen2_vl": "vidqa.models.qwen_vl:QwenVLAdapter",
    "qwen2_5_vl": "vidqa.models.qwen_vl:QwenVLAdapter",
    "qwen3_vl": "vidqa.models.qwen_vl:QwenVLAdapter",
    "qwen3_5": "vidqa.models.qwen_vl:QwenVLAdapter",
    "qwen3_5_moe": "vidqa.models.qwen_vl:QwenVLAdapter",
    "gemma4": "vidqa.models.gemma4:Gemma4Adapter",
    "internvl": "vidqa.models.frames_as_images:InternVLAdapter",
    "smolvlm": "vidqa.models.frames_as_images:SmolVLMAdapter",
}

#: Frames sampled by default (CPU, GPU) per family: what its model card or processor recommends, capped on
#: a CPU so a laptop answers in about a minute (docs/models.md).
DEFAULT_FRAMES: dict[str, tuple[int, int]] = {
    "llava_onevision": (8, 32),
    "qwen2_vl": (8, 32),
    "qwen2_5_vl": (8, 32),
    "qwen3_vl": (8, 32),
    "qwen3_5": (8, 32),
    "qwen3_5_moe": (8, 32),
    "gemma4": (8, 32),  # its video processor's own default is 32
    "internvl": (8, 16),  # 256 tokens per frame; the HF docs' video example uses 8
    "smolvlm": (8, 32),  # its card samples 1 frame per second, at most 64
}


def resolve_model_id(name: str) -> str:
    """An alias → its hub id; anything else (hub id, local folder) is returned unchanged."""
    return ALIASES.get(name, name)


def adapter_class(model_type: str) -> type:
    """The adapter class for a `model_type`, or a clear error listing the supported ones."""
    import importlib

    target = ADAPTERS.get(model_type)
    if target is None:
        supported = ", ".join(sorted(ADAPTERS))
        raise UnsupportedModelError(
            f"model type '{model_type}' is not supported by vidqa (supported: {supported})"
        )
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
