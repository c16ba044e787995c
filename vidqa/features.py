"""Question-independent work on one video, and how it is kept in the on-disk feature cache.

`Prepared` is what can happen away from the model (on a background thread while the model works on the
previous item): the cache lookup, or decoding the frames. A cache entry holds the visual tokens (T, M, D)
plus the per-token extras (Qwen3-VL deepstack) and enough about the clip (times, frame indices, frame
shape, stream info) to rebuild the prompt without decoding: the processor only needs frames of the right
shape and the clip's timing to expand the video placeholders, so a hit feeds it zeros of that shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vidqa.video import Clip, VideoInfo

if TYPE_CHECKING:
    import torch

    from vidqa.models.base import VisualTokens

#: bump when what is stored (or how features are computed) changes, so old entries stop matching
ENTRY_VERSION = 1
FEATURES = "features"
EXTRA_PREFIX = "extra."


@dataclass
class Prepared:
    """One video made ready for the model: either decoded frames or cached visual tokens."""

    video: str
    clip: Clip
    visual: VisualTokens | None = None  # set on a cache hit
    key: str | None = None  # cache key, when a cache is in use
    seconds: float = 0.0  # decode (or cache read) time

    @property
    def cached(self) -> bool:
        return self.visual is not None


def entry_tensors(visual: VisualTokens) -> dict[str, torch.Tensor]:
    tensors = {FEATURES: visual.features}
    tensors.update({EXTRA_PREFIX + name: value for name, value in visual.per_token.items()})
    return tensors


def entry_meta(clip: Clip, visual: VisualTokens) -> dict[str, Any]:
    return {
        "version": ENTRY_VERSION,
        "frame_shape": list(clip.frames.shape),
        "times": clip.times,
        "frame_indices": clip.frame_indices,
        "info": dataclasses.asdict(clip.info),
        "warnings": clip.warnings,
        "grid": list(visual.grid) if visual.grid else None,
    }


def from_entry(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], *, device: torch.device, dtype: torch.dtype
) -> tuple[Clip, VisualTokens]:
    """Rebuild a frame-less clip (zeros of the decoded shape) and the visual tokens from a cache entry."""
    from vidqa.models.base import VisualTokens

    info = VideoInfo(**meta["info"])
    clip = Clip(
        path=info.path,
        frames=np.zeros(meta["frame_shape"], dtype=np.uint8),
        times=list(meta["times"]),
        frame_indices=list(meta["frame_indices"]),
        info=info,
        decoded_frames=0,
        skipped_packets=0,
        warnings=list(meta["warnings"]),
    )
    per_token = {
        name[len(EXTRA_PREFIX) :]: value.to(device, dtype)
        for name, value in tensors.items()
        if name.startswith(EXTRA_PREFIX)
    }
    grid = tuple(meta["grid"]) if meta.get("grid") else None
    visual = VisualTokens(features=tensors[FEATURES].to(device, dtype), per_token=per_token, grid=grid)
    return clip, visual
