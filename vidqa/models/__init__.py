"""Model families vidqa supports: adapters chosen by the checkpoint's `model_type`, plus short aliases.

Importing this package is cheap (no torch/transformers at import time); loading happens in `loading.py`.
"""

from __future__ import annotations

from vidqa.errors import UnsupportedModelError

#: Short names for common checkpoints. Any hub id or local folder of a supported architecture works too.
ALIASES: dict[str, str] = {
    "llava-ov-0.5b": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
    "llava-ov-7b": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "llava-ov-72b": "llava-hf/llava-onevision-qwen2-72b-ov-hf",
    "qwen2-vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2-vl-7b": "Qwen/Qwen2-VL-7B-Instruct",
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen2.5-vl-72b": "Qwen/Qwen2.5-VL-72B-Instruct",
    "qwen3-vl-2b": "Qwen/Qwen3-VL-2B-Instruct",
    "qwen3-vl-4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct",
}

DEFAULT_MODEL = "llava-ov-0.5b"

#: model_type → "module:Class" of its adapter, imported only when a model of that type is loaded.
ADAPTERS: dict[str, str] = {
    "llava_onevision": "vidqa.models.llava_onevision:LlavaOnevisionAdapter",
    "qwen2_vl": "vidqa.models.qwen_vl:QwenVLAdapter",
    "qwen2_5_vl": "vidqa.models.qwen_vl:QwenVLAdapter",
    "qwen3_vl": "vidqa.models.qwen_vl:QwenVLAdapter",
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
