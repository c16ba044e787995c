"""V-CAST token selection: curvature-guided per-frame budgets, then a dual-anchor score inside each frame.

V-CAST (Lin et al., 2026, from VidCom²'s group) follows the trajectory of the video's normalised frame means:
frames where it turns (high curvature) get more of the budget, and inside a frame the tokens kept are those
farthest from the frame's mean direction plus the most strongly activated. This module implements what the
reference code (`xinyouu/V-CAST`, `compressor/v_cast/modeling_qwen3_vl_v_cast.py`) runs, including its quirks:
softmax at temperature 0.7, endpoint curvature 1, one token minimum, every leftover token to the frame with
the largest fractional share, and a one-frame video passed through whole. See shared/specs/vcast.md.

Deliberate differences (docs/methods.md): scoring in float32 whatever the model dtype (float64 stays
float64), exact ties broken by the lower index, and `R` exposed (the reference hard-codes 0.25).
"""

from __future__ import annotations

import torch
from pydantic import Field

from vidqa.compress.base import KeepRatioMethod, MethodParams, Selection, check_features, check_keep
from vidqa.compress.vidcom2 import scoring_dtype, smallest_k_mask
from vidqa.errors import VidqaError

TEMPERATURE = 0.7
"""Softmax temperature turning frame curvature into frame weights."""
EPS = 1e-6
"""The norm clamp of the reference's `F.normalize` and `F.cosine_similarity`."""
MIN_PER_FRAME = 1
"""Every frame keeps at least this many tokens."""


def select(features: torch.Tensor, keep: float = 0.25) -> Selection:
    """Choose the visual tokens of one video to keep, V-CAST-style.

    features: (T, M, D) visual tokens of ONE video, any float dtype and device (scored in float32, or
    float64 for float64 input). keep: the retention ratio R in (0, 1]; exactly `max(T, round(R·T·M))`
    tokens are kept. A one-frame video is kept whole (as the reference does).

    Returns ascending kept indices per frame, budgets (T,) long, and the per-frame curvature and weight.
    """
    check_features(features, "V-CAST")
    check_keep(keep)
    num_frames, tokens_per_frame, _ = features.shape
    x = features.to(scoring_dtype(features.dtype))  # (T, M, D)
    if num_frames <= 1:
        ones = torch.ones(num_frames, dtype=torch.float32, device=features.device)
        return Selection.from_mask(
            torch.ones(num_frames, tokens_per_frame, dtype=torch.bool, device=features.device),
            scores={"curvature": ones, "weight": ones},
        )
    direction = unit(x.mean(dim=1))  # (T, D): the normalised frame means
    curve = curvature(direction)  # (T,)
    if not bool(torch.isfinite(curve).all()):
        raise VidqaError("visual features contain NaN or infinity; cannot score frames for V-CAST")
    weights = torch.softmax(curve / TEMPERATURE, dim=0)
    weights = weights / weights.sum().clamp_min(EPS)  # the reference renormalises (a no-op up to rounding)
    budgets = frame_budgets(weights, total_budget(num_frames, tokens_per_frame, keep), tokens_per_frame)
    mask = smallest_k_mask(
        -token_scores(x, direction), budgets
    )  # the largest scores, ties to the lower index
    return Selection.from_mask(mask, scores={"curvature": curve.float(), "weight": weights.float()})


def unit(vectors: torch.Tensor) -> torch.Tensor:
    """Rows divided by max(‖row‖, EPS), as `F.normalize(eps=1e-6)`."""
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(EPS)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise a·b / (max(‖a‖, EPS) · max(‖b‖, EPS)): each norm clamped on its own, as the reference's."""
    return (a * b).sum(dim=-1) / (a.norm(dim=-1).clamp_min(EPS) * b.norm(dim=-1).clamp_min(EPS))


def curvature(direction: torch.Tensor) -> torch.Tensor:
    """c[t] = 1 − cos(r[t] − r[t−1], r[t+1] − r[t]) inside, 1 at both ends; in [0, 2].

    A straight drift gives 0, a reversal 2, and a static stretch (a zero step) exactly 1."""
    curve = torch.ones(direction.shape[0], dtype=direction.dtype, device=direction.device)
    if direction.shape[0] > 2:
        steps = direction[1:] - direction[:-1]  # (T-1, D)
        curve[1:-1] = 1 - cosine(steps[:-1], steps[1:])
    return curve


def total_budget(num_frames: int, tokens_per_frame: int, keep: float) -> int:
    """B = round_half_even(T·M·R) in float64, within [1, T·M], and at least one token per frame."""
    everything = num_frames * tokens_per_frame
    budget = min(max(round(everything * keep), 1), everything)
    return max(budget, num_frames * MIN_PER_FRAME)


def frame_budgets(weights: torch.Tensor, total: int, tokens_per_frame: int) -> torch.Tensor:
    """k[t] = 1 + min(floor(w[t]·(B − T)), M − 1), then the leftover as the reference hands it out.

    The leftover goes one token at a time to the frame with the largest fractional share (the first of equal
    ones), and that share is not cleared afterwards: all of it lands on one frame until the frame is full.
    """
    num_frames = weights.shape[0]
    raw = (weights * (total - num_frames * MIN_PER_FRAME)).cpu()  # (T,) in the scoring dtype
    whole = raw.floor()
    budgets = MIN_PER_FRAME + whole.clamp(max=tokens_per_frame - MIN_PER_FRAME).long()  # (T,)
    left = total - int(budgets.sum())
    if left > 0:
        fraction = raw - whole
        fraction[budgets >= tokens_per_frame] = -1
        for _ in range(left):
            best = int(fraction.argmax())  # the first index among equal maxima
            if fraction[best] < 0:
                break
            budgets[best] += 1
            if budgets[best] >= tokens_per_frame:
                fraction[best] = -1
    elif left < 0:  # never seen in practice: take back from the lowest-weight frames first
        for frame in weights.cpu().argsort(stable=True).tolist():
            while left < 0 and budgets[frame] > MIN_PER_FRAME:
                budgets[frame] -= 1
                left += 1
    return budgets.to(weights.device)


def token_scores(x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """s = (1 − cos(x, frame direction)) + min-max-normalised ‖x‖ within the frame, (T, M).

    The first term rewards tokens unlike their frame's mean (contextual diversity), the second strongly
    activated ones (feature activation); they weigh equally."""
    diversity = 1 - cosine(x, direction.unsqueeze(1))  # (T, M)
    norms = x.norm(dim=-1)  # (T, M)
    low = norms.min(dim=1, keepdim=True).values
    high = norms.max(dim=1, keepdim=True).values
    return diversity + (norms - low) / (high - low + EPS)


# -- the registered method -------------------------------------------------------------------------------
class VCastParams(MethodParams):
    keep: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="R: the share of the video's tokens kept, exactly (1 = none dropped)",
    )


class VCast(KeepRatioMethod):
    name = "vcast"
    summary = "V-CAST (2026): budgets follow where the video's trajectory turns, then diverse, active tokens"
    Params = VCastParams

    def select(self, features: torch.Tensor, params: MethodParams) -> Selection:
        assert isinstance(params, VCastParams)
        return select(features, keep=params.keep)


METHOD = VCast()
