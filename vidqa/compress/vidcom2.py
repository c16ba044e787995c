"""VidCom² token selection: which visual tokens of one video reach the LLM.

This module owns the VidCom² algorithm (Liu et al., EMNLP 2025) as pure tensor functions on one video's
visual tokens `(T, M, D)`. It follows the authors' reference code (`token_compressor/vidcom2/vidcom2.py`),
not the paper's Algorithm 1, because the code produced the published numbers: Gaussian kernels on
L2-normalised tokens restricted to the lowest-variance half of the channels, round-half-to-even budgets
capped at the whole frame and floored at one token. See docs/methods.md and shared/specs/vidcom2.md.

One deliberate difference from the reference: scoring runs in float32 (float64 for float64 input) whatever
the model dtype, so bf16/fp16 models do not get quantised budgets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from pydantic import Field

from vidqa.compress.base import KeepRatioMethod, MethodParams, Selection
from vidqa.errors import UsageError, VidqaError

TAU = 0.01
"""Softmax temperature turning frame uniqueness into frame weights."""
ALPHAS = (1 / 8, 1 / 4, 1 / 2, 1.0, 2.0)
"""Bandwidths of the multi-scale Gaussian kernel."""
CHANNEL_KEEP = 0.5
"""Fraction of channels (the lowest-variance ones) used for similarity."""
NORM_EPS = 1e-12
"""`F.normalize` epsilon, as in the reference code."""


def select(features: torch.Tensor, keep: float = 0.25) -> Selection:
    """Choose the visual tokens of one video to keep, VidCom²-style.

    features: (T, M, D) visual tokens of ONE video (T frames or temporal patches, M tokens per frame),
    any float dtype, any device; scoring runs on that device in float32 (float64 for float64 input).
    keep: average retention ratio R in (0, 1]. `keep == 1.0` runs the algorithm at R = 1, which still
    drops about 3 % of the tokens (per-frame ratios are capped at 1); vidqa's engine treats keep 1 as
    "no compression" and skips selection before it gets here.

    Returns ascending kept indices per frame, budgets k (T,) long, uniqueness u (T,) and softmax weights
    sigma (T,) as float32, all on the features' device.
    """
    _check_inputs(features, keep)
    video_sim, frame_sim = similarities(features)  # (T, M) each
    uniqueness = -video_sim.mean(dim=1)  # (T,)
    _check_finite(uniqueness)
    weights = frame_weights(uniqueness)  # (T,)
    budgets = frame_budgets(retention_ratios(weights, keep), features.shape[1])  # (T,)
    mask = smallest_k_mask(video_sim + frame_sim, budgets)  # (T, M)
    return Selection(
        indices=_indices_from_mask(mask, budgets),
        budgets=budgets,
        scores={"uniqueness": uniqueness.float(), "weight": weights.float()},
    )


def scoring_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (exact test vectors); everything else is scored in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def channel_variance(tokens: torch.Tensor) -> torch.Tensor:
    """Population variance of each channel over all tokens, (N, D) -> (D,), in the tokens' dtype.

    Two passes (a BLAS mean, then squared deviations chunk by chunk in one reused scratch buffer):
    `Tensor.var(dim=0)` and full-size temporaries are several times slower on CPU for a (6272, 3584)
    video.
    """
    mean = _column_sums(tokens) / tokens.shape[0]  # (D,)
    squares = torch.zeros_like(mean)  # (D,)
    for chunk, scratch in _chunks_with_scratch(tokens):
        squares += torch.sub(chunk, mean, out=scratch).square_().sum(dim=0)
    return squares / tokens.shape[0]


def low_variance_channels(tokens: torch.Tensor, fraction: float = CHANNEL_KEEP) -> torch.Tensor:
    """Indices of the `floor(D * fraction)` channels with the smallest population variance.

    tokens: (N, D), all tokens of the video. Which channels, not their order, matters to the distances
    computed later; ties in variance go to the lower channel index.
    """
    count = math.floor(tokens.shape[-1] * fraction)
    return channel_variance(tokens).argsort(stable=True)[:count]


def gaussian_kernel(dist_sq: torch.Tensor) -> torch.Tensor:
    """Multi-scale Gaussian similarity `Σ_α exp(-d / (2α))` of squared distances d; lies in (0, 5]."""
    alphas = torch.tensor(ALPHAS, dtype=dist_sq.dtype, device=dist_sq.device)  # (5,)
    return torch.exp(-dist_sq.unsqueeze(-1) / (2 * alphas)).sum(dim=-1)


def similarities(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's Gaussian similarity to the video centre and to its own frame's centre.

    features: (T, M, D), any float dtype. Returns (video_sim, frame_sim), (T, M) each, in the scoring
    dtype. Tokens y are L2-normalised on the low-variance channels; the centres are plain means of y,
    not renormalised (as in the reference code). Instead of gathering those channels and materialising
    y, the other channels get weight 0 and distances use ‖y − c‖² = ‖y‖² − 2 y·c + ‖c‖², so the work is
    a few matrix products over the features.
    """
    num_frames, tokens_per_frame, dim = features.shape
    x = features.to(scoring_dtype(features.dtype))  # (T, M, D)
    flat = x.reshape(-1, dim)  # (N, D)
    weight = torch.zeros(dim, dtype=x.dtype, device=x.device)  # (D,): 1 on the kept channels
    weight[low_variance_channels(flat)] = 1
    norm = _masked_norms(flat, weight).view(num_frames, tokens_per_frame)  # (T, M)
    inv_norm = 1 / norm.clamp_min(NORM_EPS)  # (T, M): y = x * inv_norm, as F.normalize
    frame_centre = torch.bmm(inv_norm.unsqueeze(1), x).squeeze(1) * (weight / tokens_per_frame)  # (T, D)
    video_centre = frame_centre.mean(dim=0).expand_as(frame_centre)  # (T, D): equal M per frame
    centres = torch.stack([video_centre, frame_centre], dim=2)  # (T, D, 2), zero off the kept channels
    dots = torch.bmm(x, centres) * inv_norm.unsqueeze(-1)  # (T, M, 2): y·c
    y_sq = (norm * inv_norm).square().unsqueeze(-1)  # (T, M, 1): ‖y‖², 1 unless ‖x‖ < eps
    dist_sq = y_sq - 2 * dots + centres.square().sum(dim=1).unsqueeze(1)  # (T, M, 2)
    similarity = gaussian_kernel(dist_sq.clamp_min(0))  # (T, M, 2)
    return similarity[..., 0], similarity[..., 1]


def frame_weights(uniqueness: torch.Tensor) -> torch.Tensor:
    """sigma = softmax((u − max u) / TAU) over frames: the most unique frames get extra budget."""
    return torch.softmax((uniqueness - uniqueness.max()) / TAU, dim=0)


def retention_ratios(weights: torch.Tensor, keep: float) -> torch.Tensor:
    """r[t] = min(1, R · (1 + sigma[t] − mean sigma)); what the cap cuts is not redistributed."""
    return (keep * (1 + weights - weights.mean())).clamp(max=1.0)


def frame_budgets(ratios: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """k[t] = max(1, round_half_to_even(r[t] · M)) as a (T,) long tensor."""
    return (ratios * tokens_per_frame).round().long().clamp(min=1)


def smallest_k_mask(scores: torch.Tensor, budgets: torch.Tensor) -> torch.Tensor:
    """(T, M) bool mask of the budgets[t] lowest-scoring tokens of each frame.

    One stable sort for all frames instead of a top-k per frame; equal scores go to the lower index.
    """
    num_frames, tokens_per_frame = scores.shape
    order = scores.argsort(dim=1, stable=True)  # (T, M): token ids by rising score
    ranks = torch.empty_like(order)
    positions = torch.arange(tokens_per_frame, device=scores.device).expand(num_frames, -1)  # (T, M)
    ranks.scatter_(1, order, positions)  # ranks[t, m] = position of token m in its frame's order
    return ranks < budgets.unsqueeze(1)


def _indices_from_mask(mask: torch.Tensor, budgets: torch.Tensor) -> list[torch.Tensor]:
    """Ascending kept indices per frame: one nonzero over the whole mask, split by frame."""
    columns = mask.nonzero()[:, 1]  # (K,), row-major so ascending inside each frame
    return list(columns.split(budgets.tolist()))


def _chunk_rows(tokens: torch.Tensor) -> int:
    """Rows per chunk of tokens (N, D): about 2**17 values (512 KiB in float32) on CPU, all on accelerators.

    Cache blocking, not per-token work: on CPU fresh full-size temporaries cost page faults.
    """
    return tokens.shape[0] if tokens.device.type != "cpu" else max(1, 2**17 // tokens.shape[1])


def _chunks_with_scratch(tokens: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Row chunks of tokens (N, D), each with a same-shaped view of one reused scratch buffer."""
    rows = _chunk_rows(tokens)
    scratch = torch.empty(
        min(rows, tokens.shape[0]), tokens.shape[1], dtype=tokens.dtype, device=tokens.device
    )
    for chunk in tokens.split(rows):
        yield chunk, scratch[: chunk.shape[0]]


def _column_sums(tokens: torch.Tensor) -> torch.Tensor:
    """Sum over rows as a matrix-vector product, (N, D) -> (D,): BLAS, faster than `.sum(0)` on CPU."""
    return torch.mv(tokens.T, torch.ones(tokens.shape[0], dtype=tokens.dtype, device=tokens.device))


def _masked_norms(tokens: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each token over the channels where weight is 1, (N, D) -> (N,)."""
    sq_norms = torch.empty(tokens.shape[0], dtype=tokens.dtype, device=tokens.device)  # (N,)
    outputs = sq_norms.split(_chunk_rows(tokens))
    for (chunk, scratch), out in zip(_chunks_with_scratch(tokens), outputs, strict=True):
        torch.mv(torch.square(chunk, out=scratch), weight, out=out)
    return sq_norms.sqrt_()


def _check_inputs(features: object, keep: object) -> None:
    """Reject what would make the selection meaningless, with a message naming the problem."""
    if not isinstance(features, torch.Tensor):
        raise UsageError(f"VidCom² needs a tensor of visual tokens, got {type(features).__name__}")
    if features.dim() != 3:
        raise UsageError(f"VidCom² needs features of shape (T, M, D), got {tuple(features.shape)}")
    num_frames, tokens_per_frame, dim = features.shape
    if num_frames < 1 or tokens_per_frame < 1 or dim < 2:
        raise UsageError(
            f"VidCom² needs at least 1 frame, 1 token per frame and 2 channels, got {tuple(features.shape)}"
        )
    if not features.is_floating_point():
        raise UsageError(f"VidCom² needs floating-point features, got {features.dtype}")
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise UsageError(f"keep must be a number in (0, 1], got {keep!r}")


def _check_finite(uniqueness: torch.Tensor) -> None:
    """NaN/inf features (e.g. an fp16 overflow in the vision tower) would silently pick arbitrary tokens."""
    if not bool(torch.isfinite(uniqueness).all()):
        raise VidqaError("visual features contain NaN or infinity; cannot score tokens for VidCom²")


# -- the registered method -------------------------------------------------------------------------------
class VidCom2Params(MethodParams):
    keep: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="R: the average share of each frame's tokens kept (1 = none dropped)",
    )


class VidCom2(KeepRatioMethod):
    name = "vidcom2"
    summary = (
        "VidCom² (EMNLP 2025): per-frame budgets from frame uniqueness, then the most distinctive tokens"
    )
    Params = VidCom2Params

    def select(self, features: torch.Tensor, params: MethodParams) -> Selection:
        assert isinstance(params, VidCom2Params)
        return select(features, keep=params.keep)


METHOD = VidCom2()
