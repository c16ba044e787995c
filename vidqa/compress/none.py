"""`none`: every visual token reaches the language model, which runs its plain `generate`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidqa.compress.base import Method, MethodParams, Selection
from vidqa.errors import UsageError

if TYPE_CHECKING:
    import torch


class NoneParams(MethodParams):
    """No parameters."""


class NoCompression(Method):
    name = "none"
    summary = "no compression: every visual token reaches the LLM (the model's plain generate)"
    Params = NoneParams

    def params_for_keep(self, keep: float) -> dict[str, Any]:
        if keep < 1.0:
            raise UsageError(
                f"method none keeps every visual token, so --keep {keep:g} cannot apply; "
                "choose a compression method, e.g. --method vidcom2"
            )
        return {}

    def keep_of(self, params: MethodParams) -> float:
        return 1.0

    def is_identity(self, params: MethodParams) -> bool:
        return True

    def select(self, features: torch.Tensor, params: MethodParams) -> Selection:
        t, m, _ = features.shape
        return Selection.keep_all(t, m, device=features.device)


METHOD = NoCompression()
