"""FastVID token selection and merging: segment the video where it changes, keep each frame's most salient
tokens, and merge the rest of a segment into a few anchor tokens (the first method here that changes
features).

FastVID (Shen et al., NeurIPS 2025) in the two forms of its reference code (`LunarShen/FastVID`): `ov`, its
LLaVA-OneVision path, and `qwen`, its Qwen2.5-VL path. Both: DySeg cuts the video at the `c − 1` weakest
frame-to-frame similarities and wherever similarity falls below τ; ATS keeps each frame's tokens with the
highest saliency (the vision tower's [CLS]-style attention); DTM picks density peaks among the other tokens
as anchors and replaces each anchor by `w·anchor + (1 − w)·mean(tokens assigned to it)`. They differ in the
budget split, the merge pool and `qwen`'s dropping of near-duplicate frames. See shared/specs/fastvid.md.

Deliberate differences (docs/methods.md): float32 scoring (float64 stays), no random tie-break noise (exact
ties go to the lower index everywhere), and no crash where the reference crashes (fewer frames than `c`,
fewer than 4 tokens left, no anchor budget, more anchors asked than a frame has tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field

from vidqa.compress.base import KeepRatioMethod, MethodParams, Selection, check_features, check_keep
from vidqa.errors import UsageError

Variant = Literal["ov", "qwen"]
DENSITY_NEIGHBOURS = 4
VARIANT_DEFAULTS: dict[str, dict[str, float]] = {
    "ov": {"tau": 0.9, "ignore": 1.0},  # ov has no near-duplicate rule
    "qwen": {"tau": 0.84, "ignore": 0.95},
}


@dataclass(frozen=True)
class FastVidSelection(Selection):
    """A selection that replaces some kept tokens: `anchor` flags kept tokens (frames in order, ascending
    inside a frame) whose feature is `values` (n_anchor, D), in the same order; `segments` are DySeg's
    segment lengths (for inspect)."""

    segments: tuple[int, ...] = ()
    variant: str = ""


def select(
    features: torch.Tensor,
    keep: float = 0.25,
    *,
    saliency: torch.Tensor,
    frame_features: torch.Tensor | None = None,
    variant: Variant = "ov",
    segments: int = 8,
    tau: float | None = None,
    ignore: float | None = None,
    dtm_share: float = 0.4,
    anchor_every: int = 4,
    beta: float = 0.6,
) -> FastVidSelection:
    """FastVID on one video.

    features (T, M, D); saliency (T, M), the per-token attention of the vision tower's [CLS]-style query;
    frame_features (T, Dg), the per-frame global feature (`ov`; `qwen` and a missing one use the frame mean
    of `features`). keep: the retention ratio r. Returns kept indices, per-frame budgets, anchor flags and
    the anchors' merged features (`values`), with the per-frame `salient` and `anchors` counts as scores.
    """
    _check_inputs(features, saliency, keep)
    tokens = features.shape[1]
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    x = features.to(dtype)
    a = saliency.to(x.device, dtype)
    g = x.mean(dim=1) if frame_features is None or variant == "qwen" else frame_features.to(x.device, dtype)
    defaults = VARIANT_DEFAULTS[variant]
    similarity = frame_similarity(g)  # (T-1,)
    lengths = segment_lengths(similarity, segments, defaults["tau"] if tau is None else tau)
    plan = (ov_plan if variant == "ov" else qwen_plan)(
        lengths, similarity, tokens, keep, dtm_share, anchor_every,
        defaults["ignore"] if ignore is None else ignore,
    )  # fmt: skip
    return _select_and_merge(x, a, lengths, plan, variant=variant, beta=beta, out_dtype=features.dtype)


# -- DySeg -------------------------------------------------------------------------------------------------
def frame_similarity(g: torch.Tensor) -> torch.Tensor:
    """s[i] = ĝ[i]·ĝ[i+1] for the unit frame features ĝ, (T − 1,)."""
    unit = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (unit[:-1] * unit[1:]).sum(dim=-1)


def segment_lengths(similarity: torch.Tensor, segments: int, tau: float) -> list[int]:
    """Cut after frame i for the `c − 1` smallest similarities (at most T − 1) and every one below τ."""
    transitions = similarity.shape[0]
    count = min(segments - 1, transitions)
    cuts = set(similarity.argsort(stable=True)[:count].tolist())  # the weakest links; ties to the lower
    cuts |= {i for i, value in enumerate(similarity.tolist()) if value < tau}
    lengths, start = [], 0
    for i in sorted(cuts):
        lengths.append(i + 1 - start)
        start = i + 1
    lengths.append(transitions + 1 - start)
    return lengths


# -- budgets -----------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """Per frame: salient tokens, anchors, and the merge-pool rule's inputs."""

    salient: list[int]
    anchors: list[int]
    own_pool: list[bool]  # ov: a single-frame anchor frame merges its own remaining tokens only


def ov_plan(lengths: list[int], _similarity: torch.Tensor, tokens: int, keep: float, dtm_share: float,
            anchor_every: int, _ignore: float) -> Plan:  # fmt: skip
    """`ov`: n_s salient tokens in every frame; C_L = floor(n_c·L/q) anchors in every p-th frame from each
    segment's end (q = ceil(L/p) of them), n_c in a one-frame segment. Python float truncations as the
    reference (int(100·0.29) = 28)."""
    kept = int(tokens * keep)
    context = int(kept * dtm_share)
    salient = kept - context
    remaining = tokens - salient
    plan = Plan([], [], [])
    for length in lengths:
        parts = math.ceil(length / anchor_every)
        per_anchor = min(context * length // parts, remaining)
        anchor_frames = {length - 1 - anchor_every * j for j in range(parts)}
        for offset in range(length):
            count = per_anchor if offset in anchor_frames else 0
            plan.salient.append(salient)
            plan.anchors.append(count)
            plan.own_pool.append(count == context)  # the reference's test for a single-frame segment
    return plan


def qwen_plan(lengths: list[int], similarity: torch.Tensor, tokens: int, keep: float, dtm_share: float,
              anchor_every: int, ignore: float) -> Plan:  # fmt: skip
    """`qwen`: budgets per segment (S_r = n_r·L, S_c = max(int(S_r·d), 1)); inside a segment of ≥ 2 frames,
    near-duplicate runs (similarity ≥ ignore) keep tokens in their last frame only, with salient tokens split
    evenly over the runs and anchors over every p-th run from the end, capped at M/2 and M."""
    per_frame = int(tokens * keep)
    plan = Plan([], [], [])
    start = 0
    for length in lengths:
        total = per_frame * length
        context = max(int(total * dtm_share), 1)
        salient = total - context
        if length == 1:
            plan.salient.append(salient)
            plan.anchors.append(context)
            plan.own_pool.append(False)
            start += 1
            continue
        inside = similarity[start : start + length - 1].tolist()
        run_ends = [i for i, value in enumerate(inside) if value < ignore] + [length - 1]
        runs = len(run_ends)
        parts = math.ceil(runs / anchor_every)
        salient_shares = _even_split(salient, runs)
        context_parts = _even_split(context, parts)
        salient_of = [0] * length
        anchors_of = [0] * length
        for run, end in enumerate(run_ends):
            from_end = runs - 1 - run
            ctx = (
                min(context_parts[from_end // anchor_every], tokens // 2)
                if from_end % anchor_every == 0
                else 0
            )
            anchors_of[end] = ctx
            salient_of[end] = min(salient_shares[run], tokens - ctx)
        plan.salient += salient_of
        plan.anchors += anchors_of
        plan.own_pool += [False] * length
        start += length
    return plan


def _even_split(total: int, parts: int) -> list[int]:
    """total over parts as evenly as possible, the first ones one more."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


# -- ATS, density peaks, DTM -------------------------------------------------------------------------------
def _select_and_merge(x: torch.Tensor, a: torch.Tensor, lengths: list[int], plan: Plan, *, variant: str,
                      beta: float, out_dtype: torch.dtype) -> FastVidSelection:  # fmt: skip
    num_frames, tokens, _ = x.shape
    salient_sets: list[torch.Tensor] = []
    rest_sets: list[torch.Tensor] = []
    anchor_sets: list[torch.Tensor] = []
    for t in range(num_frames):
        salient = _top(a[t], plan.salient[t])
        rest = _complement(salient, tokens, x.device)
        salient_sets.append(salient)
        rest_sets.append(rest)
        count = min(plan.anchors[t], rest.numel())
        anchor_sets.append(rest[_top(density_peaks(x[t, rest]), count)].sort().values if count else rest[:0])
    merged: dict[tuple[int, int], torch.Tensor] = {}
    start = 0
    for length in lengths:
        frames = range(start, start + length)
        for t in frames:
            anchors = anchor_sets[t]
            if anchors.numel() == 0:
                continue
            pool = _pool(
                x, t, frames, salient_sets, rest_sets, anchors, variant=variant, own=plan.own_pool[t]
            )
            values = merge(x[t, anchors], pool, beta=beta, counts_self=variant == "ov")
            merged.update({(t, int(m)): value for m, value in zip(anchors.tolist(), values, strict=True)})
        start += length
    return _selection(x, salient_sets, anchor_sets, merged, lengths, out_dtype, variant)


def _top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` largest scores (exact ties to the lower index)."""
    return scores.argsort(descending=True, stable=True)[:count] if count > 0 else scores.new_zeros(0).long()


def _complement(chosen: torch.Tensor, tokens: int, device: torch.device) -> torch.Tensor:
    mask = torch.ones(tokens, dtype=torch.bool, device=device)
    mask[chosen] = False
    return mask.nonzero(as_tuple=True)[0]  # ascending


def density_peaks(x: torch.Tensor) -> torch.Tensor:
    """σ = δ·ρ for the tokens x (N, D): ρ = exp(−mean of the 4 smallest squared distances, self included),
    δ = distance to the nearest denser token (the largest distance for the densest); distances /√D."""
    count, dim = x.shape
    distance = torch.cdist(x.unsqueeze(0), x.unsqueeze(0)).squeeze(0) / math.sqrt(dim)  # (N, N)
    nearest = distance.square().topk(min(DENSITY_NEIGHBOURS, count), dim=1, largest=False).values
    rho = torch.exp(-nearest.mean(dim=1))  # (N,)
    denser = rho.unsqueeze(0) > rho.unsqueeze(1)  # [i, j]: token j is denser than token i
    far = distance.max()
    delta = torch.where(denser, distance, torch.full_like(distance, math.inf)).min(dim=1).values
    delta = torch.where(torch.isinf(delta), far, delta)
    return delta * rho


def _pool(x: torch.Tensor, t: int, frames: range, salient_sets: list[torch.Tensor],
          rest_sets: list[torch.Tensor], anchors: torch.Tensor, *, variant: str,
          own: bool) -> torch.Tensor:  # fmt: skip
    """The tokens an anchor frame's anchors absorb.

    ov: a one-frame segment's remaining tokens (anchors included), else the remaining tokens of every frame
    of the segment. qwen: every token of the segment except its salient ones and this frame's anchors."""
    if variant == "ov":
        chosen = [t] if own else list(frames)
        return torch.cat([x[f, rest_sets[f]] for f in chosen])
    pieces = []
    for f in frames:
        mask = torch.ones(x.shape[1], dtype=torch.bool, device=x.device)
        mask[salient_sets[f]] = False
        if f == t:
            mask[anchors] = False
        pieces.append(x[f, mask])
    return torch.cat(pieces)


def merge(anchors: torch.Tensor, pool: torch.Tensor, *, beta: float, counts_self: bool) -> torch.Tensor:
    """Each pool token joins the anchor it is most similar to (cosine; first on ties); an anchor becomes
    w·anchor + (1 − w)·mean(members), w = max(β, 1/(n + 1)). With no members it stays as it is."""
    if pool.shape[0] == 0:
        return anchors.clone()
    unit_anchors = anchors / anchors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    unit_pool = pool / pool.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    owner = (unit_pool @ unit_anchors.T).argmax(dim=1)  # (P,): first maximum on ties
    counts = torch.bincount(owner, minlength=anchors.shape[0]).to(anchors.dtype)  # (A,)
    sums = torch.zeros_like(anchors).index_add_(0, owner, pool)
    means = sums / counts.clamp_min(1).unsqueeze(1)
    weight = torch.maximum(torch.full_like(counts, beta), 1 / (counts + 1)).unsqueeze(1)
    merged = weight * anchors + (1 - weight) * means
    if not counts_self:
        merged = torch.where(counts.unsqueeze(1) > 0, merged, anchors)
    return merged


def _selection(x: torch.Tensor, salient_sets: list[torch.Tensor], anchor_sets: list[torch.Tensor],
               merged: dict[tuple[int, int], torch.Tensor], lengths: list[int], out_dtype: torch.dtype,
               variant: str) -> FastVidSelection:  # fmt: skip
    indices, flags, values = [], [], []
    for t, (salient, anchors) in enumerate(zip(salient_sets, anchor_sets, strict=True)):
        kept = torch.cat([salient, anchors]).sort().values
        is_anchor = torch.isin(kept, anchors)
        indices.append(kept)
        flags.append(is_anchor)
        values += [merged[(t, int(m))] for m in kept[is_anchor].tolist()]
    dim = x.shape[2]
    return FastVidSelection(
        indices=indices,
        budgets=torch.tensor([len(k) for k in indices], dtype=torch.long, device=x.device),
        scores={
            "segment": torch.tensor([float(i) for i, n in enumerate(lengths) for _ in range(n)]),
            "salient": torch.tensor([float(s.numel()) for s in salient_sets]),
            "anchors": torch.tensor([float(a.numel()) for a in anchor_sets]),
        },
        anchor=torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool),
        values=(torch.stack(values) if values else x.new_zeros(0, dim)).to(out_dtype),
        segments=tuple(lengths),
        variant=variant,
    )


def _check_inputs(features: torch.Tensor, saliency: object, keep: object) -> None:
    check_features(features, "FastVID")
    if not isinstance(saliency, torch.Tensor) or tuple(saliency.shape) != tuple(features.shape[:2]):
        raise UsageError(f"FastVID needs a saliency of shape (T, M) = {tuple(features.shape[:2])}")
    check_keep(keep)


# -- the registered method -------------------------------------------------------------------------------
class FastVidParams(MethodParams):
    keep: float = Field(
        0.25, gt=0.0, le=1.0, description="r: the retention ratio (kept share ≈ r for ov, ≤ r for qwen)"
    )
    variant: Literal["auto", "ov", "qwen"] = Field(
        "auto", description="the reference's LLaVA-OV (ov) or Qwen (qwen) rules; auto picks by model family"
    )
    segments: int = Field(8, ge=1, description="c: the minimum number of segments (DySeg)")
    tau: float | None = Field(
        None, ge=-1.0, le=1.0, description="τ: cut below this similarity (ov 0.9, qwen 0.84)"
    )
    dtm_share: float = Field(0.4, ge=0.0, le=1.0, description="d: share of the budget merged into anchors")
    anchor_every: int = Field(4, ge=1, description="p: one anchor frame every p frames of a segment")
    beta: float = Field(0.6, ge=0.0, le=1.0, description="β: the anchor's own weight floor in a merge")
    siglip_head: bool = Field(
        True,
        description="LLaVA-OV: rank by the pretrained SigLIP head as the reference (downloads "
        "google/siglip-so400m-patch14-384 once); false: the head-free mean query",
    )


class FastVid(KeepRatioMethod):
    name = "fastvid"
    summary = (
        "FastVID (NeurIPS 2025): segments, the most salient tokens per frame, the rest merged into anchors"
    )
    Params = FastVidParams
    needs = frozenset({"saliency"})

    def saliency_mode(self, params: MethodParams) -> str | None:
        assert isinstance(params, FastVidParams)
        return "head" if params.siglip_head else "attention"

    def select(
        self, features: torch.Tensor, params: MethodParams, inputs: dict[str, Any] | None = None
    ) -> Selection:
        assert isinstance(params, FastVidParams)
        inputs = inputs or {}
        saliency = inputs.get("saliency")
        if saliency is None:
            raise UsageError("FastVID needs the vision tower's saliency, which this encoding lacks")
        variant = params.variant if params.variant != "auto" else inputs.get("variant", "qwen")
        return select(
            features, params.keep, saliency=saliency, frame_features=inputs.get("frame_features"),
            variant=variant, segments=params.segments, tau=params.tau, dtm_share=params.dtm_share,
            anchor_every=params.anchor_every, beta=params.beta,
        )  # fmt: skip


METHOD = FastVid()
