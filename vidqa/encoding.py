"""A video made ready for questions: everything question-independent, and how it is kept in the feature cache.

`Prepared` is the model-free half (it can run on a background thread while the model works on the previous
item): a feature-cache hit, or decoded frames. `VideoEncoding` is the whole question-independent result: the
visual tokens `(T, M, D)` with their per-token extras, the `VideoLayout` (how the processor expands the video
into prompt tokens: per-frame placeholders, timestamps, grid), and the clip's timing and warnings. A question
then only needs its own tokens: no decoding, no processor over pixels, no vision tower.

A cache entry stores exactly that: tensors (features, per-token extras, the layout's position inputs) and a
JSON sidecar (layout strings, frame times and indices, stream info, warnings, grid).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vidqa.record import Timings
from vidqa.video import Clip, VideoInfo

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vidqa.models.base import VideoLayout, VisualTokens
    from vidqa.settings import SamplingSettings

#: bump when what is stored (or how features are computed) changes, so old entries stop matching
ENTRY_VERSION = 2
FEATURES = "features"
SALIENCY = "saliency"
FRAME_FEATURES = "frame_features"
EXTRA_PREFIX = "extra."
POSITION_PREFIX = "position."


@dataclass
class Prepared:
    """One video made ready for the model: a cache entry, or decoded frames (exactly one is set)."""

    video: str
    clip: Clip | None = None
    entry: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
    key: str | None = None  # feature-cache key, when a cache is in use
    timings: Timings = field(default_factory=Timings)  # decode or cache_read
    sampling: SamplingSettings | None = None  # how the frames were (or would be) sampled
    saliency: str | None = None  # the saliency mode whose cache entry was looked up (see Engine.encode)


@dataclass
class VideoEncoding:
    """Everything about one video that does not depend on the question (see the module doc)."""

    video: str
    visual: VisualTokens
    layout: VideoLayout
    times: list[float]
    frame_indices: list[int]
    info: VideoInfo
    warnings: list[str] = field(default_factory=list)
    frames: np.ndarray | None = None  # the decoded pixels when they were decoded in this run (contact sheet)
    cached: bool = False  # read from the feature cache
    timings: Timings = field(default_factory=Timings)  # the video phases: decode, cache_read, vision, …
    fresh: bool = True  # no answer has reported the video phases yet
    key: str | None = None  # the feature-cache key, when a cache is in use (prefix entries build on it)
    sampling: SamplingSettings | None = None  # how its frames were sampled (to decode them again if needed)

    @classmethod
    def from_clip(cls, video: str, clip: Clip, visual: VisualTokens, layout: VideoLayout) -> VideoEncoding:
        return cls(
            video=video,
            visual=visual,
            layout=layout,
            times=list(clip.times),
            frame_indices=list(clip.frame_indices),
            info=clip.info,
            warnings=list(clip.warnings),
            frames=clip.frames,
        )


def entry_tensors(encoding: VideoEncoding) -> dict[str, torch.Tensor]:
    tensors = {FEATURES: encoding.visual.features}
    if encoding.visual.saliency is not None:
        tensors[SALIENCY] = encoding.visual.saliency
    if encoding.visual.frame_features is not None:
        tensors[FRAME_FEATURES] = encoding.visual.frame_features
    tensors.update({EXTRA_PREFIX + name: value for name, value in encoding.visual.per_token.items()})
    tensors.update({POSITION_PREFIX + name: value for name, value in encoding.layout.position_inputs.items()})
    return tensors


def entry_meta(encoding: VideoEncoding) -> dict[str, Any]:
    grid = encoding.visual.grid
    return {
        "kind": "features",
        "version": ENTRY_VERSION,
        "layout": encoding.layout.to_meta(),
        "times": encoding.times,
        "frame_indices": encoding.frame_indices,
        "info": dataclasses.asdict(encoding.info),
        "warnings": encoding.warnings,
        "grid": list(grid) if grid else None,
        "saliency_mode": encoding.visual.saliency_mode,
    }


def from_entry(
    video: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> VideoEncoding:
    """Rebuild an encoding from a cache entry: features on the model device, no pixels."""
    from vidqa.models.base import VideoLayout, VisualTokens

    def named(prefix: str) -> dict[str, torch.Tensor]:
        return {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}

    layout_meta = meta["layout"]
    layout = VideoLayout(
        placeholder=layout_meta["placeholder"],
        replacement=layout_meta["replacement"],
        add_special_tokens=layout_meta["add_special_tokens"],
        token_types=layout_meta["token_types"],
        position_inputs=named(POSITION_PREFIX),
    )
    grid = tuple(meta["grid"]) if meta.get("grid") else None
    visual = VisualTokens(
        features=tensors[FEATURES].to(device, dtype),
        per_token={name: value.to(device, dtype) for name, value in named(EXTRA_PREFIX).items()},
        grid=grid,  # type: ignore[arg-type]
        saliency=tensors[SALIENCY].to(device) if SALIENCY in tensors else None,
        frame_features=tensors[FRAME_FEATURES].to(device) if FRAME_FEATURES in tensors else None,
        saliency_mode=meta.get("saliency_mode"),
    )
    return VideoEncoding(
        video=video,
        visual=visual,
        layout=layout,
        times=list(meta["times"]),
        frame_indices=list(meta["frame_indices"]),
        info=VideoInfo(**meta["info"]),
        warnings=list(meta["warnings"]),
        cached=True,
    )
