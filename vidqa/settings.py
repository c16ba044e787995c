"""Typed run settings, validated once: how to sample frames, how to compress.

Frozen dataclasses; precedence flag > preset > default is applied by `vidqa.presets`. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vidqa.errors import UsageError

if TYPE_CHECKING:
    import torch

    from vidqa.generation import DecodeStage

METHODS = ("none", "vidcom2", "dycoke")

#: Each method's parameters and their defaults (the published settings).
METHOD_PARAMS: dict[str, dict[str, float | int]] = {
    "none": {},
    "vidcom2": {},
    "dycoke": {"prune": 0.7, "layer": 3, "decode_prune": 0.7, "gate": 0.9},
}
DEFAULT_KEEP = {"none": 1.0, "vidcom2": 0.25}


@dataclass(frozen=True)
class SamplingSettings:
    """Frames to sample: `frames` spread uniformly, or one every 1/`fps` s capped by `max_frames`."""

    frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.frames is not None and self.fps is not None:
            raise UsageError("give either --frames or --fps, not both")
        if self.frames is not None and self.frames < 1:
            raise UsageError(f"--frames must be at least 1 (got {self.frames})")
        if self.fps is not None and not self.fps > 0:
            raise UsageError(f"--fps must be positive (got {self.fps})")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"--max-frames must be at least 1 (got {self.max_frames})")

    def with_frames(self, frames: int) -> SamplingSettings:
        return dataclasses.replace(self, frames=frames)


def _check_param(method: str, name: str, value: Any) -> float | int:
    if name not in METHOD_PARAMS[method]:
        known = ", ".join(METHOD_PARAMS[method]) or "none"
        raise UsageError(f"unknown parameter '{name}' for method {method} (known: {known})")
    default = METHOD_PARAMS[method][name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"parameter '{name}' of {method} must be a number (got {value!r})")
    if isinstance(default, int) and not float(value).is_integer():
        raise UsageError(f"parameter '{name}' of {method} must be an integer (got {value!r})")
    value = type(default)(value)
    limits = {
        "prune": (0.0, 1.0, "[0, 1)"),
        "decode_prune": (0.0, 1.0, "[0, 1)"),
        "gate": (-1.0, 1.0, "[-1, 1]"),
    }
    if name in limits:
        low, high, text = limits[name]
        upper_ok = value <= high if name == "gate" else value < high
        if not (low <= value and upper_ok):
            raise UsageError(f"parameter '{name}' of {method} must be in {text} (got {value})")
    if name == "layer" and value < 1:
        raise UsageError(f"parameter 'layer' of {method} must be at least 1 (got {value})")
    return value


@dataclass(frozen=True)
class CompressionSettings:
    """Which method drops tokens, how many reach the LLM (`keep`), and the method's own parameters."""

    method: str = "none"
    keep: float | None = None
    params: dict[str, float | int] = field(default_factory=dict)

    @classmethod
    def build(cls, *, method: str, keep: float | None, params: dict[str, Any]) -> CompressionSettings:
        if method not in METHODS:
            raise UsageError(f"unknown method '{method}' (choose {', '.join(METHODS)})")
        if keep is not None and not (0.0 < keep <= 1.0):
            raise UsageError(f"--keep must be in (0, 1] (got {keep})")
        checked = {name: _check_param(method, name, value) for name, value in params.items()}
        merged = {**METHOD_PARAMS[method], **checked}
        if method == "dycoke" and keep is not None:
            from vidqa.compress.dycoke import prune_for_keep

            merged["prune"] = prune_for_keep(keep)
        return cls(method=method, keep=keep, params=merged)

    @property
    def is_identity(self) -> bool:
        """No token is dropped at prefill: method none, or keep 1 (VidCom² at R=1 would still drop ≈3 %)."""
        if self.method == "none" or self.keep == 1.0:
            return True
        return self.method == "dycoke" and self.params["prune"] == 0.0

    @property
    def effective_keep(self) -> float:
        """The prefill keep ratio this setting aims at (DyCoke: the nominal (1 + 3(1 − K)) / 4)."""
        if self.method == "none":
            return 1.0
        if self.keep is not None:
            return self.keep
        if self.method == "dycoke":
            return round((1 + 3 * (1 - float(self.params["prune"]))) / 4, 6)
        return DEFAULT_KEEP[self.method]

    def decode_stage(self, model: Any, visual_positions: torch.Tensor) -> DecodeStage | None:
        """DyCoke's decode-time KV pruning when enabled (decode_prune > 0); None otherwise."""
        if self.method != "dycoke" or float(self.params["decode_prune"]) == 0.0:
            return None
        from vidqa.compress.dycoke_decode import DecodePruning

        return DecodePruning(
            model,
            visual_positions=visual_positions,
            layer=int(self.params["layer"]),
            prune=float(self.params["decode_prune"]),
            gate=float(self.params["gate"]),
        )
