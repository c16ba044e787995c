"""A toy compression method, written the way a new method is added to vidqa: this one module, plus one line
in `vidqa.compress.registry.METHOD_MODULES` (or `register_method` for a plug-in). Keeps every stride-th token.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from vidqa.compress.base import Method, MethodParams, Selection


class StrideParams(MethodParams):
    stride: int = Field(2, ge=1, description="keep one token in every `stride`")


class Stride(Method):
    name = "stride"
    summary = "toy: keep every stride-th token of each frame"
    Params = StrideParams

    def params_for_keep(self, keep: float) -> dict[str, Any]:
        return {"stride": max(1, round(1 / keep))}

    def keep_of(self, params: MethodParams) -> float:
        assert isinstance(params, StrideParams)
        return 1 / params.stride

    def is_identity(self, params: MethodParams) -> bool:
        assert isinstance(params, StrideParams)
        return params.stride == 1

    def select(self, features: torch.Tensor, params: MethodParams) -> Selection:
        assert isinstance(params, StrideParams)
        t, m, _ = features.shape
        mask = torch.zeros(t, m, dtype=torch.bool, device=features.device)
        mask[:, :: params.stride] = True
        return Selection.from_mask(mask, scores={"tokens": mask.sum(dim=1).float()})


METHOD = Stride()
