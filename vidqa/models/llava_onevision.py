"""LLaVA-OneVision: SigLIP frames → projector → 2×2 bilinear pooling → (T, M, D), one newline per video.

Each frame gives M = ceil(P/2)² tokens (P = image_size / patch_size: 27 → 196 for the released checkpoints).
The model appends one learned `image_newline` token after the whole video; vidqa always keeps it. Positions
are 1-D and contiguous after dropping (as the VidCom² and DyCoke reference code run LLaVA-OV).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from vidqa.models.base import (
    AdapterError,
    GenerateInputs,
    Prompt,
    SaliencyFinish,
    VideoAdapter,
    VisualTokens,
    token_keep_mask,
)

if TYPE_CHECKING:
    from transformers import BatchFeature


class LlavaOnevisionAdapter(VideoAdapter):
    def decode_side(self) -> int | None:
        # The processor resizes frames to image_size (384); decoding at 2× that keeps resize quality.
        return 2 * int(self.model.config.vision_config.image_size)

    @property
    def tokens_per_frame(self) -> int:
        vision = self.model.config.vision_config
        side = math.ceil((vision.image_size // vision.patch_size) / 2)
        return side * side

    def visual_tokens(self, batch: BatchFeature) -> VisualTokens:
        config = self.model.config
        pixels = batch["pixel_values_videos"].to(self.device, self.model.dtype)  # (1, T, 3, H, W)
        num_frames = pixels.shape[1]
        out = self.model.model.get_video_features(
            pixels,
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        )
        pooled = out.pooler_output if hasattr(out, "pooler_output") else out
        pooled = pooled.reshape(-1, pooled.shape[-1])  # (T·M [+1 newline in transformers ≥ 5.2x], D)
        m = self.tokens_per_frame
        if pooled.shape[0] == num_frames * m + 1:
            pooled = pooled[:-1]  # the newline: vidqa appends it itself in `assemble`
        if pooled.shape[0] != num_frames * m:
            raise AdapterError(
                f"expected {num_frames}×{m} visual tokens, the model produced {pooled.shape[0]}"
            )
        side = math.isqrt(m)
        return VisualTokens(features=pooled.view(num_frames, m, -1), grid=(side, side))

    fastvid_variant = "ov"

    @contextlib.contextmanager
    def recording(self, mode: str) -> Iterator[SaliencyFinish]:
        """ "head": FastVID's reference rule, the pretrained SigLIP pooling head on the tower's last hidden
        state (read by a forward hook on the last layer for this call only); else the head-free rule."""
        if mode != "head":
            with super().recording(mode) as finish:
                yield finish
            return
        from vidqa.models.saliency import resized_attention
        from vidqa.models.siglip_head import load_siglip_head

        config = self.model.config.vision_config
        head = load_siglip_head(
            config.hidden_size, config.num_attention_heads, config.layer_norm_eps, str(self.device),
            str(self.model.dtype).removeprefix("torch."),
        )  # fmt: skip
        last: list[torch.Tensor] = []

        def keep_output(_module: torch.nn.Module, _args: Any, output: Any) -> None:
            last.append(output[0] if isinstance(output, tuple) else output)

        def finish(visual: VisualTokens, _batch: BatchFeature) -> tuple[torch.Tensor, torch.Tensor]:
            attention, pooled = head(last[-1])  # (T, P), (T, D)
            assert visual.grid is not None
            return resized_attention(attention, visual.grid), pooled

        handle = self.model.model.vision_tower.encoder.layers[-1].register_forward_hook(keep_output)
        try:
            yield finish
        finally:
            handle.remove()

    def saliency_module(self) -> torch.nn.Module | None:
        return self.model.model.vision_tower.encoder.layers[-1].self_attn

    def saliency_from(
        self, records: list[tuple[torch.Tensor, torch.Tensor]], visual: VisualTokens, batch: BatchFeature
    ) -> torch.Tensor:
        """FastVID's head-free LLaVA-OV rule: the mean query over the 27×27 patches, resized to the 14×14
        token grid as the video features are pooled."""
        from vidqa.models.saliency import pseudo_cls, resized_attention

        query, key = records[-1]  # (T, H, P, hd): every frame in one call
        attention = pseudo_cls(query, key)  # (T, P)
        assert visual.grid is not None
        return resized_attention(attention, visual.grid)

    def assemble(self, prompt: Prompt, visual: VisualTokens, keep: torch.Tensor | None) -> GenerateInputs:
        features = visual.features  # (T, M, D)
        newline = self.model.model.image_newline.to(features.dtype)[None]  # (1, D)
        video_embeds = torch.cat([features.flatten(0, 1), newline], dim=0)  # (T·M + 1, D)
        token_keep = token_keep_mask(keep, features.shape[0] * features.shape[1], self.device)
        visual_keep = torch.cat([token_keep, token_keep.new_ones(1)])  # the newline is always kept
        inputs = self._assemble_1d(prompt, video_embeds, visual_keep)
        inputs.visual_positions = inputs.visual_positions[:-1]  # the newline carries no frame content
        return inputs
