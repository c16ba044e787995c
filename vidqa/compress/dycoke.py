"""DyCoke stage 1: token temporal merging (TTM) of one video's visual tokens, before the LLM.

Owns the choice of which visual tokens DyCoke keeps at prefill, and the mapping from vidqa's `--keep` to
DyCoke's drop ratio K. Stage 2 (decode-time KV pruning) lives elsewhere: it needs the model, this does not.

Frames come in windows of 4, `a, a+1, a+2, a+3` (a = 0, 4, 8, ...). The anchor `a` is kept whole; every
other frame keeps the `m = int((1 - K) * M)` tokens least similar, position by position, to its reference
frame: `a` for `a+1` and `a+2`, the unpruned `a+2` for `a+3`. "Merging" is dropping: nothing is averaged.
Kept sets equal the reference code's (github.com/KD-TAO/DyCoke, `dycole_ttm`) except where vidqa
deliberately differs, see docs/methods.md:
- every window is processed, the last one included (when 4 divides T the reference leaves frame T-2 whole);
- any T >= 1 works, an incomplete last window applies the same rules to the frames it has (the reference
  drops the last frame when T is odd and crashes when T <= 4);
- indices come out in raster order (the reference emits them by ascending similarity);
- every frame keeps at least one token (the reference formula gives m = 0 when K is close to 1); this also
  makes K = 1 (`--keep 0.25`) mean "anchor frames plus each other frame's most-changed token";
- among exactly equal similarities the lower position is kept first (a stable sort, the same on every
  device; the reference's `topk` leaves ties unspecified).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from vidqa.compress.base import Method, MethodParams, Selection
from vidqa.errors import UsageError

if TYPE_CHECKING:
    from vidqa.generation import DecodeStage

WINDOW = 4  # frames per window: one anchor and three pruned frames
MIN_KEEP = 0.25  # the anchors alone: the smallest share of tokens DyCoke can keep
# (phase, phase of its reference frame) inside a window: a+1 and a+2 against a, a+3 against unpruned a+2
_REFERENCE_PHASE = ((1, 0), (2, 0), (3, 2))
_NORM_EPS = 1e-8  # as torch.nn.functional.cosine_similarity: a zero vector has similarity 0 to anything


@torch.no_grad()
def temporal_merge(features: torch.Tensor, prune: float = 0.7) -> Selection:
    """Select the tokens DyCoke's TTM keeps in one video.

    features: (T, M, D) visual tokens of one video, any float dtype, any device.
    prune: K, the fraction of tokens dropped from every non-anchor frame, in [0, 1].
    Returns a Selection whose indices (ascending, int64) and budgets live on the features' device.
    """
    _check_features(features)
    _check_prune(prune)
    num_frames, tokens_per_frame, _ = features.shape
    keep_per_frame = _tokens_kept_per_pruned_frame(tokens_per_frame, prune)

    # similarity: (T, M), meaningless (and ignored) on anchor frames
    similarity = _similarity_to_reference(features)
    # least similar first; the stable sort puts the lower position first among exact ties, on any device
    order = torch.sort(similarity, dim=1, stable=True).indices  # (T, M)
    kept = order[:, :keep_per_frame].sort(dim=1).values  # (T, m), raster order
    whole = torch.arange(tokens_per_frame, device=features.device)  # (M,)

    anchor = _is_anchor(num_frames, features.device)  # (T,) bool
    budgets = torch.where(anchor, tokens_per_frame, keep_per_frame).long()  # (T,)
    # Only the list the contract asks for is built per frame; t % WINDOW needs no device sync.
    indices = [whole if t % WINDOW == 0 else kept[t] for t in range(num_frames)]
    return Selection(indices=indices, budgets=budgets)


def _tokens_kept_per_pruned_frame(tokens_per_frame: int, prune: float) -> int:
    """m: the reference's exact `int((1 - K) * M)` (float rounding included), but never below 1."""
    return max(1, int((1.0 - float(prune)) * tokens_per_frame))


def prune_for_keep(keep: float) -> float:
    """Map vidqa's `--keep` (share of visual tokens at prefill) to DyCoke's K.

    DyCoke keeps the nominal share (1 + 3(1 - K)) / 4, so K = (1 - keep) * 4 / 3; keep = 1 gives K = 0 and
    keep = 0.25 gives K = 1: the anchors plus the single most-changed token of every other frame.
    """
    keep = float(keep)
    if not (math.isfinite(keep) and 0.0 < keep <= 1.0):
        raise UsageError(f"--keep must be a fraction in (0, 1], got {keep}")
    if keep < MIN_KEEP:
        raise UsageError(
            f"DyCoke keeps its anchor frames (every 4th frame) whole, so it cannot keep less than 25 % of "
            f"the visual tokens (--keep {keep}); use --keep 0.25 or more, or --method vidcom2"
        )
    return (1.0 - keep) * WINDOW / (WINDOW - 1)


def _is_anchor(num_frames: int, device: torch.device) -> torch.Tensor:
    """(T,) bool, True for the first frame of each window."""
    return torch.arange(num_frames, device=device) % WINDOW == 0


def _similarity_to_reference(features: torch.Tensor) -> torch.Tensor:
    """(T, M) cosine similarity of every token to the same position in its frame's reference frame.

    Computed in float32 (float64 stays float64) on the original features. One batched product per phase
    of the window, on strided views: no gathered copy of the features (2-4x faster on CPU than gathering).
    """
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    x = features.to(dtype)  # (T, M, D)
    norms = torch.linalg.vector_norm(x, dim=-1).clamp_min(_NORM_EPS)  # (T, M)
    similarity = torch.ones_like(norms)  # (T, M); anchors are their own reference
    for phase, reference_phase in _REFERENCE_PHASE:
        frames = x[phase::WINDOW]  # (n, M, D): frames a + phase of every window that has one
        count = frames.shape[0]  # each of those windows also has its frame a + reference_phase
        references = x[reference_phase::WINDOW][:count]  # (n, M, D)
        dots = torch.linalg.vecdot(frames, references)  # (n, M)
        similarity[phase::WINDOW] = dots / (norms[phase::WINDOW] * norms[reference_phase::WINDOW][:count])
    return similarity


def _check_features(features: torch.Tensor) -> None:
    if not isinstance(features, torch.Tensor):
        raise UsageError(f"DyCoke expects a (T, M, D) tensor, got {type(features).__name__}")
    if features.ndim != 3:
        raise UsageError(f"DyCoke expects features of shape (T, M, D), got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise UsageError(f"DyCoke expects floating-point features, got {features.dtype}")
    if features.numel() == 0:
        raise UsageError(f"DyCoke needs at least one frame, token and channel, got {tuple(features.shape)}")


def _check_prune(prune: float) -> None:
    is_number = isinstance(prune, Real) and not isinstance(prune, bool)
    if not (is_number and math.isfinite(prune) and 0.0 <= prune <= 1.0):
        raise UsageError(f"DyCoke prune (K) must be a fraction in [0, 1], got {prune!r}")


# -- the registered method: stage 1 here, stage 2 in dycoke_decode ------------------------------------------
class DyCokeParams(MethodParams):
    prune: float = Field(
        0.7, ge=0.0, le=1.0, description="K: share of each non-anchor frame's tokens dropped before the LLM"
    )
    layer: int = Field(3, ge=1, description="L: first LLM layer that sees the pruned KV cache while decoding")
    decode_prune: float = Field(
        0.7, ge=0.0, lt=1.0, description="P: share of visual KV entries skipped at a pruned step (0 = off)"
    )
    gate: float = Field(
        0.9, ge=-1.0, le=1.0, description="τ: a decode step prunes when its attention moved (cosine < τ)"
    )


class DyCoke(Method):
    name = "dycoke"
    summary = "DyCoke (CVPR 2025): temporal token merging in windows of 4 frames, KV pruning while decoding"
    Params = DyCokeParams

    def params_for_keep(self, keep: float) -> dict[str, Any]:
        """--keep sets stage 1's K; --keep 1 is no compression at all, so it turns stage 2 off as well."""
        if keep == 1.0:
            return {"prune": 0.0, "decode_prune": 0.0}
        return {"prune": prune_for_keep(keep)}

    def keep_of(self, params: MethodParams) -> float:
        assert isinstance(params, DyCokeParams)
        return (1 + (WINDOW - 1) * (1 - params.prune)) / WINDOW

    def is_identity(self, params: MethodParams) -> bool:
        assert isinstance(params, DyCokeParams)
        return params.prune == 0.0 and params.decode_prune == 0.0

    def select(self, features: torch.Tensor, params: MethodParams) -> Selection:
        assert isinstance(params, DyCokeParams)
        return temporal_merge(features, prune=params.prune)

    def decode_stage(
        self, model: Any, visual_positions: torch.Tensor, params: MethodParams
    ) -> DecodeStage | None:
        assert isinstance(params, DyCokeParams)
        if params.decode_prune == 0.0:
            return None
        from vidqa.compress.dycoke_decode import DecodePruning

        return DecodePruning(
            model, visual_positions=visual_positions, layer=params.layer, prune=params.decode_prune,
            gate=params.gate,
        )  # fmt: skip

    def validate_model(self, model: Any, params: MethodParams) -> None:
        assert isinstance(params, DyCokeParams)
        if params.decode_prune > 0.0:
            from vidqa.compress.dycoke_decode import check_layer

            check_layer(model, params.layer)


METHOD = DyCoke()
