"""Gemma 4: native video, each frame pooled to its own soft tokens, frames separated by `mm:ss` timestamps.

Layout of one video in the prompt: `00:00 <|image> <|video|>×M <image|> 00:01 <|image> …` — every frame a
block of M soft tokens (M ≈ 63–70 with the released 70-token budget, from an aspect-preserving resize),
between its own begin/end tokens, after its timestamp; none of that text is ever dropped. The vision tower
pools k×k patches (k = 3) and strips the padding; `video_position_ids` are its 2-D patch coordinates, not
LLM positions: the LLM's positions are plain 1-D and, as for LLaVA-OV, re-indexed 0..L'-1 after dropping.

Gemma 4's `generate` takes no `inputs_embeds` (its `prepare_inputs_for_generation` does not name them), so
instead of patching it vidqa hands the kept token ids and the kept features (`mm_encoder_outputs`) and lets
the model scatter them, computing its per-layer inputs (E2B/E4B) itself. `mm_token_type_ids` is cut with the
same mask: each frame's soft tokens attend to each other bidirectionally, and a frame's kept tokens stay one
block. DyCoke's decode stage acts on the full-attention layers only (the sliding-window ones hold a window).
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


class Gemma4Adapter(VideoAdapter):
    def decode_side(self) -> int | None:
        # frames are resized to at most max_soft_tokens·k² patches of `patch_size` px; decode at 2× that side
        video = self.processor.video_processor
        patch, kernel = int(video.patch_size), int(video.pooling_kernel_size)
        pixels = int(video.max_soft_tokens) * kernel * kernel * patch * patch
        return 2 * math.isqrt(pixels)

    def visual_tokens(self, batch: BatchFeature) -> VisualTokens:
        positions = batch["video_position_ids"].to(self.device)  # (T, max_patches, 2): x, y; -1 = padding
        out = self.model.model.get_video_features(
            batch["pixel_values_videos"].to(self.device, self.model.dtype),
            positions,
            num_frames_per_video=batch["num_frames_per_video"],
            return_dict=True,
        )
        features = torch.cat(list(out.pooler_output), dim=0)  # (T·M, D)
        frames = int(positions.shape[0])
        if features.shape[0] % frames:
            raise AdapterError(f"{features.shape[0]} visual tokens do not split into {frames} equal frames")
        kernel = int(self.model.config.vision_config.pooling_kernel_size)
        real = positions[0][(positions[0] != -1).all(dim=-1)]  # (patches, 2) of the first frame
        grid = (int(real[:, 1].max()) + 1) // kernel, (int(real[:, 0].max()) + 1) // kernel
        m = features.shape[0] // frames
        return VisualTokens(
            features=features.view(frames, m, -1), grid=grid if grid[0] * grid[1] == m else None
        )

    def assemble(self, prompt: Prompt, visual: VisualTokens, keep: torch.Tensor | None) -> GenerateInputs:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        t, m, _ = visual.shape
        input_ids = prompt["input_ids"].to(self.device)
        token_keep = token_keep_mask(keep, t * m, self.device)
        kept = self._kept_sequence(input_ids, token_keep)
        kept_features = visual.features.flatten(0, 1)[token_keep]  # (kept, D)
        encoded = BaseModelOutputWithPooling(pooler_output=(kept_features,))
        return GenerateInputs(
            input_ids=input_ids[:, kept.seq_keep],
            attention_mask=prompt["attention_mask"].to(self.device)[:, kept.seq_keep],
            position_ids=None,  # contiguous, derived by generate
            visual_positions=kept.kept_video_mask[0].nonzero(as_tuple=True)[0],
            token_ids=kept.token_ids,
            sequence_inputs={
                "mm_token_type_ids": prompt["mm_token_type_ids"].to(self.device)[:, kept.seq_keep]
            },
            visual_inputs={"mm_encoder_outputs": {"video": encoded}},
        )
