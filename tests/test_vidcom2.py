"""VidCom² selection: the reference code's test vectors, invariants, and an independent plain version.

The plain version below is written token by token with Python floats on purpose, so that it shares no
vectorisation tricks (chunked variance, masked channels, expanded distances) with `vidcom2.select`.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from vidqa.compress.vidcom2 import (
    frame_budgets,
    frame_weights,
    low_variance_channels,
    retention_ratios,
    select,
    similarities,
)
from vidqa.errors import UsageError, VidqaError

RATIOS = (0.05, 0.15, 0.25, 0.5, 0.9, 1.0)


# --- an independent, deliberately plain float64 VidCom² -----------------------------------------------


def _plain_kernel(a: list[float], b: list[float]) -> float:
    dist_sq = sum((p - q) ** 2 for p, q in zip(a, b, strict=True))
    return sum(math.exp(-dist_sq / (2 * alpha)) for alpha in (0.125, 0.25, 0.5, 1.0, 2.0))


def _plain_normalise(token: list[float], channels: list[int]) -> list[float]:
    values = [token[d] for d in channels]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / max(norm, 1e-12) for v in values]


def plain_vidcom2(x: torch.Tensor, keep: float) -> tuple[list[int], list[list[int]], list[list[float]]]:
    """VidCom² as the reference code runs it, one token at a time. Returns (budgets, kept, scores)."""
    frames: list[list[list[float]]] = x.double().tolist()  # T × M × D
    num_frames, tokens_per_frame, dim = len(frames), len(frames[0]), len(frames[0][0])
    tokens = [token for frame in frames for token in frame]
    n = len(tokens)
    means = [sum(token[d] for token in tokens) / n for d in range(dim)]
    variances = [sum((token[d] - means[d]) ** 2 for token in tokens) / n for d in range(dim)]
    channels = sorted(range(dim), key=variances.__getitem__)[: dim // 2]
    y = [[_plain_normalise(token, channels) for token in frame] for frame in frames]
    video_centre = [sum(token[c] for frame in y for token in frame) / n for c in range(len(channels))]
    frame_centres = [
        [sum(token[c] for token in frame) / tokens_per_frame for c in range(len(channels))] for frame in y
    ]
    video_sim = [[_plain_kernel(token, video_centre) for token in frame] for frame in y]
    frame_sim = [
        [_plain_kernel(token, centre) for token in frame]
        for frame, centre in zip(y, frame_centres, strict=True)
    ]
    uniqueness = [-sum(row) / tokens_per_frame for row in video_sim]
    exps = [math.exp((u - max(uniqueness)) / 0.01) for u in uniqueness]
    sigma = [e / sum(exps) for e in exps]
    ratios = [min(1.0, keep * (1 + s - sum(sigma) / num_frames)) for s in sigma]
    budgets = [max(1, round(r * tokens_per_frame)) for r in ratios]  # round() is half-to-even
    scores = [
        [a + b for a, b in zip(rv, rf, strict=True)] for rv, rf in zip(video_sim, frame_sim, strict=True)
    ]
    kept = [
        sorted(sorted(range(tokens_per_frame), key=row.__getitem__)[:k])
        for row, k in zip(scores, budgets, strict=True)
    ]
    return budgets, kept, scores


def _random_shapes(count: int, seed: int, max_values: int = 60_000) -> list[tuple[int, int, int, float]]:
    """(T, M, D, keep) over T 1..64, M 1..300, D 4..1024, with T·M·D small enough for the plain version."""
    rng = random.Random(seed)
    shapes = [(64, 300, 4, 0.25), (1, 1, 1024, 0.5), (1, 57, 1024, 0.15), (64, 1, 8, 0.9), (3, 7, 5, 1.0)]
    while len(shapes) < count:
        t, m = rng.randint(1, 64), rng.randint(1, 300)
        d = rng.randint(4, max(4, min(1024, max_values // (t * m))))
        shapes.append((t, m, d, RATIOS[len(shapes) % len(RATIOS)]))
    return shapes


def _random_video(t: int, m: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Features with per-channel scales and per-frame offsets, so channels and frames really differ."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(t, m, d, generator=g, dtype=torch.float64)
    scale = torch.rand(d, generator=g, dtype=torch.float64) * 2 + 0.1
    offset = torch.randn(t, 1, d, generator=g, dtype=torch.float64) * torch.rand(t, 1, 1, generator=g)
    return (base * scale + offset).to(dtype)


def _as_lists(indices: list[torch.Tensor]) -> list[list[int]]:
    return [idx.tolist() for idx in indices]


@pytest.mark.parametrize(("t", "m", "d", "keep"), _random_shapes(32, seed=2025))
def test_select_agrees_with_plain_version(t: int, m: int, d: int, keep: float) -> None:
    x = _random_video(t, m, d, seed=t * 100_000 + m * 1_000 + d)
    budgets, kept, _ = plain_vidcom2(x, keep)
    selection = select(x, keep=keep)
    assert selection.budgets.tolist() == budgets
    assert _as_lists(selection.indices) == kept


@pytest.mark.parametrize(("t", "m", "d"), [(5, 40, 2), (9, 30, 3), (64, 12, 2)])
def test_single_channel_ties_keep_lowest_scores(t: int, m: int, d: int) -> None:
    """D < 4 leaves one channel: normalised tokens are ±1, so scores tie; any tied choice is right."""
    x = _random_video(t, m, d, seed=7)
    budgets, _, scores = plain_vidcom2(x, 0.25)
    selection = select(x, keep=0.25)
    assert selection.budgets.tolist() == budgets
    for row, idx, k in zip(scores, selection.indices, budgets, strict=True):
        chosen = sorted(row[i] for i in idx.tolist())
        assert chosen == pytest.approx(sorted(row)[:k], abs=1e-9)


# --- the reference code's test vectors (shared/specs/vidcom2.md) ----------------------------------------


def _spec_video(t: int, m: int, d: int) -> torch.Tensor:
    ti = torch.arange(t, dtype=torch.float64).view(t, 1, 1)
    mi = torch.arange(m, dtype=torch.float64).view(1, m, 1)
    di = torch.arange(d, dtype=torch.float64).view(1, 1, d)
    x = torch.sin(0.9 * ti * (di + 1) + 0.37 * mi**2 + 0.11 * di) + 0.05 * di
    return x + 1.5 * ((ti == 2) & (mi % 3 == 0)).double()


def test_spec_vector_a() -> None:
    x = _spec_video(4, 8, 6)
    assert set(low_variance_channels(x.reshape(-1, 6)).tolist()) == {0, 1, 2}
    uniqueness = -similarities(x)[0].mean(dim=1)
    assert uniqueness.tolist() == pytest.approx([-2.120525, -2.057309, -2.119568, -1.960655], abs=1e-6)
    ratios = retention_ratios(frame_weights(uniqueness), 0.5)
    assert ratios.tolist() == pytest.approx([0.375, 0.375032, 0.375, 0.874968], abs=1e-6)
    selection = select(x, keep=0.5)
    assert selection.uniqueness is not None
    assert selection.uniqueness.tolist() == pytest.approx(uniqueness.tolist(), abs=1e-6)
    assert selection.budgets.tolist() == [3, 3, 3, 7]
    assert _as_lists(selection.indices) == [[3, 4, 7], [2, 3, 5], [2, 5, 7], [0, 2, 3, 4, 5, 6, 7]]


def test_spec_vector_b() -> None:
    x = _spec_video(6, 16, 8)
    assert set(low_variance_channels(x.reshape(-1, 8)).tolist()) == {0, 1, 4, 6}
    selection = select(x, keep=0.25)
    assert selection.budgets.tolist() == [3, 3, 3, 3, 3, 7]
    expected = [[3, 12, 14], [3, 12, 14], [2, 5, 14], [3, 12, 14], [3, 8, 14], [3, 5, 8, 9, 12, 14, 15]]
    assert _as_lists(selection.indices) == expected


def test_spec_vectors_match_plain_version() -> None:
    for (t, m, d), keep in (((4, 8, 6), 0.5), ((6, 16, 8), 0.25)):
        x = _spec_video(t, m, d)
        budgets, kept, _ = plain_vidcom2(x, keep)
        assert select(x, keep=keep).budgets.tolist() == budgets
        assert _as_lists(select(x, keep=keep).indices) == kept


# --- invariants ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", RATIOS)
def test_indices_and_budgets_are_consistent(keep: float) -> None:
    t, m = 12, 49
    selection = select(_random_video(t, m, 64, seed=3, dtype=torch.float32), keep=keep)
    assert selection.budgets.dtype == torch.long
    assert selection.budgets.shape == (t,)
    assert len(selection.indices) == t
    for idx, k in zip(selection.indices, selection.budgets.tolist(), strict=True):
        assert idx.dtype == torch.long
        assert k >= 1
        assert len(idx) == k
        assert bool((idx[1:] > idx[:-1]).all())  # strictly ascending, hence unique
        assert int(idx.min()) >= 0 and int(idx.max()) < m
    assert selection.kept == int(selection.budgets.sum())
    assert selection.mask(m).sum(dim=1).tolist() == selection.budgets.tolist()


def test_scores_are_float32_frame_vectors() -> None:
    selection = select(_random_video(10, 30, 16, seed=4), keep=0.25)
    assert selection.uniqueness is not None and selection.weights is not None
    assert selection.uniqueness.dtype == selection.weights.dtype == torch.float32
    assert selection.uniqueness.shape == selection.weights.shape == (10,)
    assert float(selection.weights.sum()) == pytest.approx(1.0, abs=1e-6)
    # similarity to the video centre lies in (0, 5], so uniqueness lies in [-5, 0)
    assert bool((selection.uniqueness < 0).all()) and bool((selection.uniqueness >= -5).all())
    assert int(selection.weights.argmax()) == int(selection.uniqueness.argmax())


@pytest.mark.parametrize("keep", [0.05, 0.15, 0.25, 0.5])
def test_ratios_sum_to_keep_times_frames_without_cap(keep: float) -> None:
    """r ≤ 2·keep ≤ 1 here, so no frame is capped and the budget is conserved exactly."""
    for seed in range(5):
        weights = frame_weights(-similarities(_random_video(17, 20, 12, seed=seed))[0].mean(dim=1))
        ratios = retention_ratios(weights, keep)
        assert float(ratios.max()) < 1
        assert float(ratios.sum()) == pytest.approx(keep * 17, rel=1e-12)


def test_cap_discards_budget_of_dominant_frame() -> None:
    x = _random_video(8, 50, 16, seed=11)
    weights = frame_weights(-similarities(x)[0].mean(dim=1))
    ratios = retention_ratios(weights, 0.9)
    assert float(ratios.max()) == 1.0
    assert float(ratios.sum()) < 0.9 * 8
    assert int(select(x, keep=0.9).budgets[int(ratios.argmax())]) == 50


def _one_novel_frame_video(novel: int) -> torch.Tensor:
    """32 frames × 196 tokens sharing one mean direction, except one frame of unrelated content."""
    g = torch.Generator().manual_seed(99)
    x = torch.randn(128, generator=g) + torch.randn(32, 196, 128, generator=g)
    x[novel] = torch.randn(196, 128, generator=g)
    return x


@pytest.mark.parametrize(
    ("keep", "others", "novel_budget"), [(0.25, 47, 96), (0.15, 28, 58), (1.0, 190, 196)]
)
def test_one_novel_frame_takes_the_extra_budget(keep: float, others: int, novel_budget: int) -> None:
    """sigma ≈ one-hot, so r = R·(1 − 1/32) elsewhere and R·(2 − 1/32) (capped at 1) on the novel frame.

    At R = 0.25 that is 31·47 + 96 = 1553 tokens, the spec's LLaVA-OV figure, not 0.25·6272 = 1568;
    at R = 1 it keeps 6086 of 6272 (97 %).
    """
    selection = select(_one_novel_frame_video(novel=7), keep=keep)
    assert selection.weights is not None
    assert int(selection.weights.argmax()) == 7
    assert float(selection.weights[7]) > 0.999
    expected = [others] * 32
    expected[7] = novel_budget
    assert selection.budgets.tolist() == expected


def test_keep_one_still_drops_tokens() -> None:
    """R = 1 caps the most unique frame and shrinks the others: why the engine skips select at keep 1."""
    x = _random_video(8, 50, 16, seed=12)
    selection = select(x, keep=1.0)
    assert selection.kept < 8 * 50
    assert int(selection.budgets.max()) == 50


@pytest.mark.parametrize(("t", "m", "keep"), [(8, 196, 0.25), (5, 49, 0.15), (3, 10, 0.5), (16, 7, 0.9)])
def test_static_video_keeps_the_same_budget_in_every_frame(t: int, m: int, keep: float) -> None:
    frame = torch.randn(1, m, 32, generator=torch.Generator().manual_seed(t))
    selection = select(frame.expand(t, m, 32).contiguous(), keep=keep)
    assert selection.budgets.tolist() == [max(1, round(keep * m))] * t
    assert all(idx.tolist() == selection.indices[0].tolist() for idx in selection.indices)


def test_frame_budgets_round_half_to_even_with_floor_one() -> None:
    ratios = torch.tensor([0.5 / 10, 1.5 / 10, 2.5 / 10, 0.0001, 1.0], dtype=torch.float64)
    assert frame_budgets(ratios, 10).tolist() == [1, 2, 2, 1, 10]


def test_permuting_tokens_inside_a_frame_permutes_its_kept_set() -> None:
    """Channel variance and both centres ignore token order, so only that frame's indices move."""
    t, m, frame = 6, 40, 3
    x = _random_video(t, m, 24, seed=21)
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(5))
    permuted = x.clone()
    permuted[frame] = x[frame, perm]  # new token j is old token perm[j]
    before, after = select(x, keep=0.25), select(permuted, keep=0.25)
    assert after.budgets.tolist() == before.budgets.tolist()
    old_kept = set(before.indices[frame].tolist())
    assert after.indices[frame].tolist() == [j for j in range(m) if int(perm[j]) in old_kept]
    for other in range(t):
        if other != frame:
            assert after.indices[other].tolist() == before.indices[other].tolist()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input_scores_like_float32(dtype: torch.dtype) -> None:
    x = _random_video(10, 36, 48, seed=31, dtype=dtype)
    low, full = select(x, keep=0.25), select(x.float(), keep=0.25)
    assert low.budgets.tolist() == full.budgets.tolist()
    assert _as_lists(low.indices) == _as_lists(full.indices)
    assert low.uniqueness is not None and full.uniqueness is not None
    assert torch.equal(low.uniqueness, full.uniqueness)


def test_outputs_live_on_the_features_device() -> None:
    selection = select(_random_video(4, 9, 8, seed=1, dtype=torch.float32), keep=0.5)
    assert selection.budgets.device.type == "cpu"
    assert all(idx.device.type == "cpu" for idx in selection.indices)


def test_non_contiguous_features_are_accepted() -> None:
    x = _random_video(5, 20, 16, seed=41)
    transposed = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    assert _as_lists(select(transposed, keep=0.25).indices) == _as_lists(select(x, keep=0.25).indices)


# --- validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([[[1.0, 2.0]]], "tensor"),
        (torch.zeros(4, 8), "shape"),
        (torch.zeros(1, 4, 8, 2), "shape"),
        (torch.zeros(0, 4, 8), "at least"),
        (torch.zeros(4, 0, 8), "at least"),
        (torch.zeros(4, 8, 1), "at least"),
        (torch.zeros(4, 8, 6, dtype=torch.long), "floating"),
    ],
)
def test_bad_features_are_usage_errors(features: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        select(features, keep=0.25)  # type: ignore[arg-type]


@pytest.mark.parametrize("keep", [0, 0.0, -0.1, 1.0001, 2, float("nan"), float("inf"), True, "0.5", None])
def test_bad_keep_is_a_usage_error(keep: object) -> None:
    with pytest.raises(UsageError, match="keep"):
        select(torch.randn(2, 4, 8), keep=keep)  # type: ignore[arg-type]


def test_non_finite_features_are_reported() -> None:
    x = torch.randn(3, 5, 8)
    x[1] = float("inf")
    with pytest.raises(VidqaError, match="NaN or infinity") as caught:
        select(x, keep=0.25)
    assert not isinstance(caught.value, UsageError)
