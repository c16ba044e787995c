"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5: one adapter, since the four share the video path.

A "frame" here is one temporal patch (2 sampled frames merged), M = h·w/4 tokens each. Positions are M-RoPE
`(3, 1, L)`, computed by the model's own `get_rope_index` on the FULL sequence before anything is dropped,
so survivors keep their original (t, h, w) positions. Text between frames (Qwen3-VL/3.5 timestamps and
per-patch vision start/end tokens) is never dropped. Qwen3-VL adds deepstack features: per visual token,
one vector per deepstack level, added to the hidden states of the first LLM layers; they are dropped with
the same mask and injected at prefill through a forward pre-hook on the language model (a public mechanism,
removed after each generate call). Qwen3.5 has no deepstack; its language model is a hybrid of Gated
DeltaNet (linear attention, no KV cache) and full-attention layers, so DyCoke's decode stage counts and acts
on the full-attention layers only.

Qwen3-VL and Qwen3.5 bound the pixels of the whole clip; vidqa also caps each frame
(`cap_pixels_per_frame`, at most `max_video_tokens` tokens per frame), as Qwen's own video utilities do and
as transformers announces for its default: without it a short clip at high resolution spends the whole
budget on a few frames, thousands of tokens each.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from vidqa.models.base import (
    AdapterError,
    GenerateInputs,
    HookInstaller,
    Prompt,
    VideoAdapter,
    VisualTokens,
    token_keep_mask,
)

if TYPE_CHECKING:
    from transformers import BatchFeature

DEEPSTACK = "deepstack"


def _concat_levels(deepstack: list[Any]) -> torch.Tensor:
    """Deepstack features as (levels, N, D); transformers 5.17 gives tensors, later ones per-video tuples."""
    levels = [
        torch.cat(list(level), dim=0) if isinstance(level, (tuple, list)) else level for level in deepstack
    ]
    return torch.stack(levels)


class QwenVLAdapter(VideoAdapter):
    frame_multiple = 2
    position_input_names = ("video_grid_thw", "second_per_grid_ts")

    def decode_side(self) -> int | None:
        video_processor = self.processor.video_processor
        if self._caps_frames:  # Qwen3-VL / Qwen3.5: at most max_video_tokens merged patches per frame
            factor = int(video_processor.patch_size) * int(video_processor.merge_size)
            return 2 * math.isqrt(int(video_processor.max_video_tokens) * factor * factor)
        size = getattr(video_processor, "size", None) or {}
        max_pixels = size.get("longest_edge") or getattr(video_processor, "max_pixels", None)
        return 2 * int(math.sqrt(max_pixels)) if max_pixels else None

    @property
    def _caps_frames(self) -> bool:
        return hasattr(self.processor.video_processor, "max_video_tokens")

    def processor_kwargs(self) -> dict[str, Any]:
        return {"cap_pixels_per_frame": True} if self._caps_frames else {}

    @property
    def merge_size(self) -> int:
        return int(self.model.config.vision_config.spatial_merge_size)

    def visual_tokens(self, batch: BatchFeature) -> VisualTokens:
        grid = batch["video_grid_thw"].to(self.device)  # (1, 3): t, h, w in patches
        pixels = batch["pixel_values_videos"].to(self.device, self.model.dtype)
        out = self.model.model.get_video_features(pixels, grid, return_dict=True)
        features = torch.cat(list(out.pooler_output), dim=0)  # (T·M, D)
        t, h, w = (int(v) for v in grid[0])
        m = (h // self.merge_size) * (w // self.merge_size)
        if features.shape[0] != t * m:
            raise AdapterError(f"expected {t}×{m} visual tokens, the model produced {features.shape[0]}")
        per_token: dict[str, torch.Tensor] = {}
        deepstack = getattr(out, "deepstack_features", None)
        if deepstack:
            per_token[DEEPSTACK] = _concat_levels(deepstack).view(
                len(deepstack), t, m, -1
            )  # (levels, T, M, D)
        grid_hw = (h // self.merge_size, w // self.merge_size)
        return VisualTokens(features=features.view(t, m, -1), per_token=per_token, grid=grid_hw)

    def saliency_module(self) -> torch.nn.Module | None:
        return self.model.model.visual.blocks[-1].attn

    def saliency_from(
        self, records: list[tuple[torch.Tensor, torch.Tensor]], visual: VisualTokens, batch: BatchFeature
    ) -> torch.Tensor:
        """FastVID's Qwen rule: the mean query of each temporal patch over keys averaged per merge unit, in
        raster order (Qwen2.5-VL's blocks see the units in window order: undone here)."""
        from vidqa.models.saliency import pseudo_cls

        t, m, _ = visual.features.shape
        query = torch.cat([q for q, _ in records], dim=2)  # (1, H, T·P, hd): the chunks are the patches
        key = torch.cat([k for _, k in records], dim=2)
        heads, dim = query.shape[1], query.shape[3]
        frames_q = query[0].reshape(heads, t, -1, dim).transpose(0, 1)  # (T, H, P, hd)
        frames_k = key[0].reshape(heads, t, -1, dim).transpose(0, 1)
        saliency = pseudo_cls(frames_q, frames_k, group=self.merge_size**2).reshape(-1)  # (T·M,)
        visual_model = self.model.model.visual
        if hasattr(visual_model, "get_window_index"):  # Qwen2.5-VL
            grid = batch["video_grid_thw"].to(self.device)
            window_index, _ = visual_model.get_window_index(grid)
            saliency = saliency[torch.argsort(window_index.to(saliency.device))]
        return saliency.view(t, m)

    def _rope_positions(self, prompt: Prompt, input_ids: torch.Tensor) -> torch.Tensor:
        """M-RoPE positions (3, 1, L) of the full sequence, from the model's own implementation."""
        extra = {}
        if "second_per_grid_ts" in prompt:  # Qwen2.5-VL: the time axis follows real seconds
            extra["second_per_grid_ts"] = prompt["second_per_grid_ts"]
        positions, _ = self.model.model.get_rope_index(
            input_ids,
            mm_token_type_ids=prompt["mm_token_type_ids"].to(self.device),
            video_grid_thw=prompt["video_grid_thw"].to(self.device),
            attention_mask=prompt["attention_mask"].to(self.device),
            **extra,
        )
        return positions

    def assemble(self, prompt: Prompt, visual: VisualTokens, keep: torch.Tensor | None) -> GenerateInputs:
        t, m, _ = visual.shape
        input_ids = prompt["input_ids"].to(self.device)
        positions = self._rope_positions(prompt, input_ids)  # (3, 1, L), on the FULL sequence
        token_keep = token_keep_mask(keep, t * m, self.device)
        kept = self._merge_kept(input_ids, visual.features.flatten(0, 1), token_keep)
        inputs = GenerateInputs(
            inputs_embeds=kept.embeds,
            attention_mask=prompt["attention_mask"].to(self.device)[:, kept.seq_keep],
            position_ids=positions[..., kept.seq_keep],  # survivors keep their original (t, h, w)
            visual_positions=kept.kept_video_mask[0].nonzero(as_tuple=True)[0],
            token_ids=kept.token_ids,
        )
        if DEEPSTACK in visual.per_token:
            levels = visual.per_token[DEEPSTACK].flatten(1, 2)[:, token_keep]  # (levels, kept, D)
            inputs.prefill_hooks.append(self._deepstack_hook(kept.kept_video_mask, levels))
        return inputs

    def _deepstack_hook(self, visual_pos_masks: torch.Tensor, levels: torch.Tensor) -> HookInstaller:
        """An installer of the hook that feeds deepstack features to the language model's call that reads the
        visual tokens: the forward over the first `length` tokens (the video prefix, or the whole prompt)."""
        language_model = self.model.model.language_model

        def install(length: int) -> Any:
            masks = visual_pos_masks[:, :length]

            def inject(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
                if any(isinstance(a, torch.Tensor) and a.dim() == 3 and a.shape[1] == length for a in args):
                    # transformers passed the embeddings positionally: injecting by keyword would be silently
                    # skipped, so fail loudly instead of answering without the deepstack features
                    raise AdapterError("Qwen3-VL language model called positionally: cannot inject deepstack")
                embeds = kwargs.get("inputs_embeds")
                if (
                    embeds is not None
                    and embeds.shape[1] == length
                    and kwargs.get("visual_pos_masks") is None
                ):
                    kwargs["visual_pos_masks"] = masks
                    kwargs["deepstack_visual_embeds"] = [level.to(embeds.dtype) for level in levels]
                return args, kwargs

            return language_model.register_forward_pre_hook(inject, with_kwargs=True)

        return install
