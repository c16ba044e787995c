"""InternVL3.5 and SmolVLM2: the video becomes one image per frame, with text between the frames.

Neither model has a video path: the processor turns each sampled frame into an image and writes the frames
into the prompt one after the other, each after a text label, so the visual tokens are the *image*
placeholder's. Layouts:

- InternVL: `Frame1: <img> <IMG_CONTEXT>×M </img>\\nFrame2: <img> …` — M = 256 for 448 px frames (patch 14,
  pixel shuffle 0.5); no timestamps.
- SmolVLM: `You are provided the following series of eight frames from a 0:00:06 [H:MM:SS] video.\\n` then per
  frame `\\nFrame from 00:01:<fake_token_around_image><global-img><image>×M<fake_token_around_image>` — M = 64
  (512 px frames, 256M/500M) or 81 (384 px, 2.2B).

Per-frame blocks are found from the token ids (the image placeholders), never from offsets; the text between
frames is never dropped. Positions are 1-D and re-indexed 0..L'-1 after dropping, as for LLaVA-OV.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from vidqa.models.base import (
    AdapterError,
    GenerateInputs,
    Prompt,
    VideoAdapter,
    VisualTokens,
    token_keep_mask,
)

if TYPE_CHECKING:
    from transformers import BatchFeature


class FramesAsImagesAdapter(VideoAdapter):
    """Shared by the families whose frames are images: features (T, M, D) in placeholder order."""

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    def frame_features(self, batch: BatchFeature) -> torch.Tensor:
        """(T, M, D) projected tokens of every frame."""
        raise NotImplementedError

    def visual_tokens(self, batch: BatchFeature) -> VisualTokens:
        features = self.frame_features(batch)  # (T, M, D)
        side = math.isqrt(features.shape[1])
        grid = (side, side) if side * side == features.shape[1] else None
        return VisualTokens(features=features, grid=grid)

    def assemble(self, prompt: Prompt, visual: VisualTokens, keep: torch.Tensor | None) -> GenerateInputs:
        t, m, _ = visual.shape
        return self._assemble_1d(
            prompt, visual.features.flatten(0, 1), token_keep_mask(keep, t * m, self.device)
        )


class InternVLAdapter(FramesAsImagesAdapter):
    def decode_side(self) -> int | None:
        size = self.processor.video_processor.size
        return 2 * max(int(size.get("height", 448)), int(size.get("width", 448)))

    def frame_features(self, batch: BatchFeature) -> torch.Tensor:
        config = self.model.config
        out = self.model.model.get_image_features(
            pixel_values=batch["pixel_values"].to(self.device, self.model.dtype),
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            return_dict=True,
        )
        pooled = out.pooler_output
        if pooled.dim() != 3:
            raise AdapterError(f"expected per-frame features (T, M, D), got {tuple(pooled.shape)}")
        return pooled


class SmolVLMAdapter(FramesAsImagesAdapter):
    def decode_side(self) -> int | None:
        edge = self.processor.video_processor.max_image_size.get("longest_edge")
        return 2 * int(edge) if edge else None

    def frame_features(self, batch: BatchFeature) -> torch.Tensor:
        pixels = batch["pixel_values"].to(self.device, self.model.dtype)  # (1, T, 3, S, S)
        out = self.model.model.get_image_features(
            pixels, batch["pixel_attention_mask"].to(self.device), return_dict=True
        )
        features = torch.cat(list(out.pooler_output), dim=0)  # (T·M, D)
        frames = int(pixels.shape[1])
        if features.shape[0] % frames:
            raise AdapterError(f"{features.shape[0]} visual tokens do not split into {frames} equal frames")
        return features.view(frames, features.shape[0] // frames, -1)
