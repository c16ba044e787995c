"""Compression methods: a name → implementation registry every method (none included) goes through.

Each method turns one video's visual tokens (T, M, D) into a `Selection`; DyCoke also has a decode-time stage
(see `vidqa.compress.dycoke_decode`). Methods know nothing about files, CLIs or models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidqa.settings import METHODS

if TYPE_CHECKING:
    import torch

    from vidqa.compress.base import Selection
    from vidqa.settings import CompressionSettings

__all__ = ["METHODS", "run_method"]


def run_method(compression: CompressionSettings, features: torch.Tensor) -> Selection:
    """Run the prefill-stage selection of `compression.method` on one video's tokens (T, M, D)."""
    if compression.method == "vidcom2":
        from vidqa.compress import vidcom2

        return vidcom2.select(features, keep=compression.effective_keep)
    if compression.method == "dycoke":
        from vidqa.compress import dycoke

        return dycoke.temporal_merge(features, prune=float(compression.params["prune"]))
    from vidqa.compress.base import Selection

    t, m, _ = features.shape
    return Selection.keep_all(t, m, device=features.device)
