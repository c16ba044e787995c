"""The contract every compression method fulfils: which visual tokens of one video to keep.

A compressor sees one video's visual tokens `(T, M, D)` (T frames or temporal patches, M tokens per frame,
D channels) and returns a `Selection`. It knows nothing about files, CLIs or models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Selection:
    """Kept tokens of one video.

    indices: T ascending LongTensors of local token indices kept in each frame (on the features' device).
    budgets: (T,) long, `budgets[t] == len(indices[t])`.
    uniqueness, weights: (T,) float32 per-frame scores where the method defines them (VidCom²), else None.
    """

    indices: list[torch.Tensor]
    budgets: torch.Tensor
    uniqueness: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return len(self.indices)

    @property
    def kept(self) -> int:
        """Total number of kept visual tokens."""
        return int(self.budgets.sum())

    def mask(self, tokens_per_frame: int) -> torch.Tensor:
        """(T, M) bool mask, True where a token is kept."""
        device = self.budgets.device
        mask = torch.zeros(self.num_frames, tokens_per_frame, dtype=torch.bool, device=device)
        for t, idx in enumerate(self.indices):
            mask[t, idx] = True
        return mask

    @classmethod
    def from_mask(cls, mask: torch.Tensor, **scores: torch.Tensor | None) -> Selection:
        """Build from a (T, M) bool mask; indices come out ascending by construction."""
        indices = [row.nonzero(as_tuple=True)[0] for row in mask]
        return cls(indices=indices, budgets=mask.sum(dim=1).long(), **scores)

    @classmethod
    def keep_all(
        cls, num_frames: int, tokens_per_frame: int, device: torch.device | str = "cpu"
    ) -> Selection:
        mask = torch.ones(num_frames, tokens_per_frame, dtype=torch.bool, device=device)
        return cls.from_mask(mask)
