"""Per-token saliency from the vision tower's last attention block, for methods that rank tokens by it
(FastVID's ATS): how much a frame-level [CLS]-style query attends to each of the frame's tokens.

The queries and keys are read through an attention function registered with transformers'
`AttentionInterface` and switched on for the vision tower only while it encodes (`recorded_attention`): it
records the last block's post-RoPE queries and keys, then computes attention with sdpa as usual. Nothing is
patched, and the vision tower's output is the same as with sdpa.

The query is a pseudo-[CLS]: the mean of the frame's queries (the FastVID reference's Qwen rule; its LLaVA-OV
fallback when the SigLIP head is not loaded). Keys are averaged over the patches that merge into one visual
token (Qwen's 2×2 merge units), or attention over the patches is resized to the token grid (LLaVA-OV's
pooling). Families without a rule here use `feature_saliency` (docs/methods.md lists which).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

CAPTURE = "vidqa_capture"


@contextmanager
def recorded_attention(module: torch.nn.Module) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """While active, every attention call of `module` appends its (query, key) to the yielded list; the
    module's config runs a recording sdpa meanwhile and gets its own implementation back afterwards."""
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    records: list[tuple[torch.Tensor, torch.Tensor]] = []
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def record(caller: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        if caller is module:
            records.append((query.detach(), key.detach()))
        return sdpa(caller, query, key, value, *args, **kwargs)

    AttentionInterface.register(CAPTURE, record)
    config = module.config  # type: ignore[attr-defined]
    previous = config._attn_implementation
    config._attn_implementation = CAPTURE
    try:
        yield records
    finally:
        config._attn_implementation = previous


def pseudo_cls(query: torch.Tensor, key: torch.Tensor, group: int = 1) -> torch.Tensor:
    """Attention of the mean query over keys averaged in consecutive groups, averaged over heads.

    query, key: (B, heads, L, head_dim). Returns (B, L // group), each row summing to 1 (float32 softmax)."""
    batch, heads, length, dim = key.shape
    mean_query = query.float().mean(dim=2, keepdim=True)  # (B, H, 1, hd)
    keys = key.float().reshape(batch, heads, length // group, group, dim).mean(dim=3)  # (B, H, L/g, hd)
    scores = (mean_query @ keys.transpose(-1, -2)).squeeze(2) / math.sqrt(dim)  # (B, H, L/g)
    return torch.softmax(scores, dim=-1).mean(dim=1)


def resized_attention(attention: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, P) attention over a square patch grid, bilinearly resized to the token grid → (B, rows·cols)."""
    side = math.isqrt(attention.shape[1])
    square = attention.view(-1, 1, side, side)
    resized = torch.nn.functional.interpolate(square, size=grid, mode="bilinear", align_corners=False)
    return resized.flatten(1)


def feature_saliency(features: torch.Tensor) -> torch.Tensor:
    """A fallback saliency from the visual tokens themselves, (T, M, D) → (T, M): the attention of each
    frame's mean token over its tokens (scaled dot product, float32 softmax)."""
    x = features.float()
    scores = (x @ x.mean(dim=1, keepdim=True).transpose(1, 2)).squeeze(-1) / math.sqrt(x.shape[-1])
    return torch.softmax(scores, dim=-1)
