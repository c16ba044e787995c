"""The video prefix: the LLM's cache after reading the prompt up to the video's last token, read once.

Token selection (VidCom², DyCoke stage 1) does not depend on the question, and every supported chat template
puts the video in the first user turn, before any question. So a prompt after dropping is

    [prefix: system text, user-turn start, kept video tokens][suffix: text after the video, question(s), tail]

and the prefix, with its KV cache, is the same for every question about the video under one setting. The
LLM reads it once (`read_prefix`); each question then runs `generate` on the whole prompt with a fork of
that cache, so the model reads only the suffix: tens of tokens instead of thousands.

A fork shares the cached keys and values (`generate` extends a cache by concatenation, never writes its
tensors in place) and copies everything else: recurrent and convolution states of linear-attention layers
(Qwen3.5) are updated in place. The stored cache itself is never handed to `generate`.

On disk a prefix is the cache layers' tensors plus their plain attributes (`cache_entry` / `restore_cache`),
kept in the feature cache's store next to the video's features; the engine decides the key. A cache whose
layers hold anything else (an unknown layer class, offloading) is simply not written.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel

    from vidqa.models.base import GenerateInputs, VideoAdapter

#: bump when what a prefix entry stores changes, so old entries stop matching
PREFIX_VERSION = 1
_TENSOR_PREFIX = "layer."
_PLAIN = (bool, int, float, str, type(None))


def cache_argument(model: PreTrainedModel) -> str:
    """The keyword the model takes its KV cache by: `cache` (transformers ≥ 5.24) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def new_cache(model: PreTrainedModel) -> Cache:
    """An empty dynamic cache laid out for this model (linear-attention and sliding-window layers included:
    the config says which layer is which)."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def prefix_end(input_ids: torch.Tensor, video_token_id: int) -> int:
    """Tokens of the full prompt (1, L) up to and including the video's last placeholder."""
    positions = (input_ids[0] == video_token_id).nonzero(as_tuple=True)[0]
    if positions.numel() == 0:
        raise ValueError("the prompt holds no video token")
    return int(positions[-1]) + 1


@dataclass
class VideoPrefix:
    """The LLM's cache after reading a video prefix of `length` kept tokens, and those tokens' ids."""

    cache: Cache
    token_ids: torch.Tensor  # (P,) kept token ids the cache was computed from, on the model device

    @property
    def length(self) -> int:
        return int(self.token_ids.shape[0])

    def starts(self, inputs: GenerateInputs) -> bool:
        """Whether `inputs` begins with exactly this prefix (and has more after it)."""
        ids = inputs.token_ids[0]
        return ids.shape[0] > self.length and torch.equal(ids[: self.length], self.token_ids.to(ids.device))

    def fork(self) -> Cache:
        """A cache `generate` may extend: shares the keys and values, copies everything else."""
        return fork_cache(self.cache)


def fork_cache(cache: Cache) -> Cache:
    shared: dict[int, Any] = {}
    for layer in cache.layers:
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                shared[id(tensor)] = tensor  # deepcopy's memo: these are reused, not copied
    return copy.deepcopy(cache, memo=shared)


def croppable(cache: Cache) -> bool:
    """Whether the cache can be cut back to a shorter length exactly: only when every layer keeps the keys
    and values of every position (no sliding window, no recurrent state)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def cached_length(cache: Cache) -> int:
    return int(cache.get_seq_length())


@torch.inference_mode()
def read_prefix(adapter: VideoAdapter, inputs: GenerateInputs, length: int) -> VideoPrefix:
    """Run the LLM over the first `length` tokens of `inputs` (they hold every visual token) into a new cache.

    Only the cache is wanted, not logits, so the model without its output head reads the prefix (a 150k-word
    head costs as much as several decoder layers for a question's first token). Hooks that belong to the
    visual tokens (Qwen3-VL deepstack) are installed for exactly this forward.
    """
    model = adapter.model
    reader = getattr(model, "model", None)  # the VLM without its language-model head
    if not isinstance(reader, torch.nn.Module):
        reader = model
    cache = new_cache(model)
    kwargs = inputs.prefix_kwargs(length)
    kwargs[cache_argument(reader)] = cache
    parameters = inspect.signature(reader.forward).parameters
    if "use_cache" in parameters:
        kwargs["use_cache"] = True
    if "logits_to_keep" in parameters:
        kwargs["logits_to_keep"] = 1
    with inputs.hooks_installed(length):
        reader(**kwargs)
    if cached_length(cache) != length:
        raise RuntimeError(f"the prefix cache holds {cached_length(cache)} tokens, expected {length}")
    return VideoPrefix(cache=cache, token_ids=inputs.token_ids[0, :length].clone())


# -- on disk ----------------------------------------------------------------------------------------------
class UnsupportedCache(Exception):
    """The cache holds something `cache_entry` cannot write faithfully; the prefix is then not stored."""


def cache_entry(prefix: VideoPrefix) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON metadata that `restore_cache` turns back into an equal cache."""
    tensors: dict[str, torch.Tensor] = {"token_ids": prefix.token_ids}
    layers: list[dict[str, Any]] = []
    for index, layer in enumerate(prefix.cache.layers):
        state: dict[str, Any] = {}
        for name, value in vars(layer).items():
            tag = f"{_TENSOR_PREFIX}{index}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[tag] = value
                state[name] = {"tensor": True}
            elif isinstance(value, dict) and all(
                isinstance(v, (torch.Tensor, *_PLAIN)) for v in value.values()
            ):
                items = {}
                for key, item in value.items():
                    if isinstance(item, torch.Tensor):
                        tensors[f"{tag}.{key}"] = item
                        items[str(key)] = {"tensor": True}
                    else:
                        items[str(key)] = {"value": item}
                state[name] = {"dict": items}
            elif isinstance(value, _PLAIN):
                state[name] = {"value": value}
            elif isinstance(value, (torch.device, torch.dtype)):
                state[name] = {"restore": type(value).__name__}
            else:
                raise UnsupportedCache(f"{type(layer).__name__}.{name} is a {type(value).__name__}")
        layers.append({"class": type(layer).__name__, "state": state})
    return tensors, {"length": prefix.length, "layers": layers}


def restore_cache(
    model: PreTrainedModel, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> VideoPrefix | None:
    """The prefix `cache_entry` wrote, on the devices of the model's layers; None when the entry does not fit
    this model's cache layout (then the prefix is computed again)."""
    cache = new_cache(model)
    layers = meta["layers"]
    if len(layers) != len(cache.layers):
        return None
    devices = _layer_devices(model, len(layers))
    for index, (layer, saved) in enumerate(zip(cache.layers, layers, strict=True)):
        if type(layer).__name__ != saved["class"]:
            return None
        device = devices[index]
        tag = f"{_TENSOR_PREFIX}{index}"
        dtype = next((t.dtype for name, t in tensors.items() if name.startswith(tag + ".")), None)
        for name, spec in saved["state"].items():
            if "tensor" in spec:
                setattr(layer, name, tensors[f"{tag}.{name}"].to(device))
            elif "value" in spec:
                setattr(layer, name, spec["value"])
            elif "restore" in spec:
                setattr(layer, name, device if spec["restore"] == "device" else dtype)
            else:
                setattr(
                    layer,
                    name,
                    _restore_dict(getattr(layer, name, None), spec["dict"], tensors, tag, name, device),
                )
    prefix = VideoPrefix(cache=cache, token_ids=tensors["token_ids"].to(devices[0] if devices else "cpu"))
    return prefix if cached_length(cache) == meta["length"] == prefix.length else None


def _restore_dict(
    fresh: Any,
    items: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    tag: str,
    name: str,
    device: torch.device,
) -> dict[Any, Any]:
    """A dict attribute with its original key types (the fresh layer's dict has them; JSON made them str)."""
    keys = {str(key): key for key in fresh} if isinstance(fresh, dict) else {}
    restored: dict[Any, Any] = {}
    for text, spec in items.items():
        key = keys.get(text, int(text) if text.lstrip("-").isdigit() else text)
        restored[key] = tensors[f"{tag}.{name}.{text}"].to(device) if "tensor" in spec else spec["value"]
    return restored


def _layer_devices(model: PreTrainedModel, count: int) -> list[torch.device]:
    """Where each decoder layer's cache lives: its weights' device (several with --device-map)."""
    fallback = model.device
    try:
        decoder_layers = list(model.get_decoder().layers)
    except (AttributeError, TypeError):
        return [fallback] * count
    devices = []
    for index in range(count):
        layer = decoder_layers[index] if index < len(decoder_layers) else None
        parameter = next(layer.parameters(), None) if layer is not None else None
        devices.append(parameter.device if parameter is not None else fallback)
    return devices


def entry_bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())
