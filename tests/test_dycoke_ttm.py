"""DyCoke stage 1 (token temporal merging): vidqa's vectorised version against a plain one written here.

The plain version loops over windows and frames and spells out the rules of docs/methods.md, so a
vectorisation slip (wrong reference frame, wrong window edge, wrong m) shows up as a different kept set.
It can also reproduce the reference code's last-window rule, to tie vidqa to the reference's published
token counts.
"""

from __future__ import annotations

import random

import pytest
import torch

from vidqa.compress.base import Selection
from vidqa.compress.dycoke import prune_for_keep, temporal_merge
from vidqa.errors import UsageError

PRUNES = (0.0, 0.3, 0.5, 0.7, 0.9)


# --- a plain re-implementation --------------------------------------------------------------------------


def plain_m(tokens_per_frame: int, prune: float) -> int:
    """Tokens kept per pruned frame: the reference's int((1 - K) * M), at least one."""
    return max(1, int((1 - prune) * tokens_per_frame))


def plain_cosine(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Cosine of a[n] and b[n] for every position n, in float64; a, b: (M, D)."""
    a, b = a.double(), b.double()
    dot = (a * b).sum(dim=1)
    norm = (a * a).sum(dim=1).sqrt() * (b * b).sum(dim=1).sqrt()
    return (dot / norm).tolist()


def least_similar(similarity: list[float], m: int) -> list[int]:
    """Ascending positions of the m smallest similarities (ties: lower position first)."""
    ranked = sorted(range(len(similarity)), key=lambda n: (similarity[n], n))
    return sorted(ranked[:m])


def plain_ttm(features: torch.Tensor, prune: float, reference_last_window: bool = False) -> list[list[int]]:
    """Kept positions per frame, window by window.

    reference_last_window: follow the reference code, whose second pass stops before the last window,
    so that window's frame a+2 stays whole (only meaningful when 4 divides T).
    """
    num_frames, tokens_per_frame, _ = features.shape
    m = plain_m(tokens_per_frame, prune)
    everything = list(range(tokens_per_frame))
    kept: list[list[int]] = []
    for a in range(0, num_frames, 4):
        last_window = a + 4 >= num_frames
        for t in range(a, min(a + 4, num_frames)):
            reference_keeps_whole = t == a + 2 and last_window and reference_last_window
            if t == a or reference_keeps_whole:
                kept.append(everything)
            else:
                reference = a + 2 if t == a + 3 else a
                kept.append(least_similar(plain_cosine(features[t], features[reference]), m))
    return kept


def as_lists(selection: Selection) -> list[list[int]]:
    return [idx.tolist() for idx in selection.indices]


def random_shapes(count: int, seed: int) -> list[tuple[int, int, int]]:
    rng = random.Random(seed)
    fixed = [(1, 1, 2), (1, 7, 3), (2, 5, 4), (3, 9, 8), (4, 16, 16), (5, 12, 6), (7, 300, 2), (40, 11, 5)]
    drawn = [(rng.randint(1, 40), rng.randint(1, 300), rng.randint(2, 512)) for _ in range(count)]
    return fixed + drawn


# --- agreement with the plain version --------------------------------------------------------------------


@pytest.mark.parametrize("shape", random_shapes(12, seed=0))
def test_matches_plain_version_float64(shape: tuple[int, int, int]) -> None:
    features = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=torch.float64)
    for prune in PRUNES:
        selection = temporal_merge(features, prune=prune)
        expected = plain_ttm(features, prune)
        assert as_lists(selection) == expected, (shape, prune)
        assert selection.budgets.tolist() == [len(k) for k in expected]
        assert selection.kept == sum(len(k) for k in expected)


@pytest.mark.parametrize("shape", [(8, 196, 64), (13, 50, 512), (3, 300, 32)])
def test_matches_plain_version_float32_up_to_rounding(shape: tuple[int, int, int]) -> None:
    """In float32 a kept set may differ from the exact one only by swaps at a rounding-level near-tie."""
    features = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    num_frames = shape[0]
    for prune in PRUNES:
        selection = temporal_merge(features, prune=prune)
        expected = plain_ttm(features, prune)
        assert selection.budgets.tolist() == [len(k) for k in expected]
        for t in range(num_frames):
            got, want = set(selection.indices[t].tolist()), set(expected[t])
            if got == want:
                continue
            a = t - t % 4
            reference = a + 2 if t % 4 == 3 else a
            similarity = plain_cosine(features[t], features[reference])
            swapped = [similarity[n] for n in got ^ want]
            assert max(swapped) - min(swapped) < 1e-5, (t, prune)


def test_indices_are_ascending_int64_on_the_features_device() -> None:
    features = torch.randn(9, 40, 16, generator=torch.Generator().manual_seed(2))
    selection = temporal_merge(features, prune=0.5)
    assert selection.num_frames == 9
    for idx in selection.indices:
        assert idx.dtype == torch.int64
        assert idx.device == features.device
        assert bool((idx[1:] > idx[:-1]).all())
    assert selection.budgets.dtype == torch.int64
    assert selection.uniqueness is None and selection.weights is None


# --- token counts: the reference's and vidqa's -----------------------------------------------------------


@pytest.mark.parametrize(("prune", "reference_count"), [(0.3, 4915), (0.5, 4018), (0.7, 3098)])
def test_token_counts_against_the_reference(prune: float, reference_count: int) -> None:
    """T=32, M=196: the reference keeps frame 30 whole; vidqa prunes it like every other a+2 frame."""
    features = torch.randn(32, 196, 24, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    m = int((1 - prune) * 196)
    selection = temporal_merge(features, prune=prune)
    assert selection.kept == 8 * 196 + 24 * m  # K=0.7: 1568 + 24 * 58 = 2960

    reference_rule = plain_ttm(features, prune, reference_last_window=True)
    assert sum(len(k) for k in reference_rule) == reference_count
    vidqa = as_lists(selection)
    assert reference_rule[30] == list(range(196)) and len(vidqa[30]) == m
    assert [k for t, k in enumerate(reference_rule) if t != 30] == [k for t, k in enumerate(vidqa) if t != 30]


def test_m_uses_the_reference_float_formula() -> None:
    """int((1 - 0.7) * 196) = 58 (58.8 truncated); M=10: K=0.7 gives 3, K=0.9 gives 0, raised to 1."""
    features = torch.randn(4, 196, 8, generator=torch.Generator().manual_seed(4))
    assert temporal_merge(features, prune=0.7).budgets.tolist() == [196, 58, 58, 58]
    small = torch.randn(4, 10, 8, generator=torch.Generator().manual_seed(4))
    assert temporal_merge(small, prune=0.7).budgets.tolist() == [10, 3, 3, 3]
    assert int((1 - 0.9) * 10) == 0  # the reference would keep nothing here
    assert temporal_merge(small, prune=0.9).budgets.tolist() == [10, 1, 1, 1]


# --- kept-set semantics on constructed inputs ------------------------------------------------------------


def test_changed_positions_are_exactly_the_kept_ones() -> None:
    """A pruned frame equal to its reference except at m known positions keeps exactly those."""
    tokens_per_frame, channels = 20, 6
    generator = torch.Generator().manual_seed(5)
    frames = [torch.randn(tokens_per_frame, channels, generator=generator) for _ in range(7)]
    changed = {1: [2, 7, 11, 19], 2: [0, 3, 4, 15], 3: [5, 6, 12, 13], 5: [1, 8, 9, 10], 6: [14, 16, 17, 18]}
    for t, positions in changed.items():  # in order, so frame 2 is final before frame 3 copies it
        reference = {1: 0, 2: 0, 3: 2, 5: 4, 6: 4}[t]
        frames[t] = frames[reference].clone()
        frames[t][positions] = -frames[reference][positions]  # cosine -1 there, +1 elsewhere
    features = torch.stack(frames)  # (7, 20, 6)
    selection = temporal_merge(features, prune=0.78)  # m = int(0.22 * 20) = 4
    assert selection.budgets.tolist() == [20, 4, 4, 4, 20, 4, 4]
    for t, positions in changed.items():
        assert selection.indices[t].tolist() == positions


def orthogonal_to(v: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    w = torch.randn(v.shape, generator=generator)
    return w - (w @ v) / (v @ v) * v


def test_a_plus_3_is_compared_with_a_plus_2_not_the_anchor() -> None:
    """Against the anchor frame 3 differs most at {8, 9} (cosine -1); against frame 2 only at {0, 1}."""
    generator = torch.Generator().manual_seed(6)
    anchor = torch.randn(10, 4, generator=generator)
    frame2 = anchor.clone()
    frame2[[8, 9]] = -anchor[[8, 9]]
    frame3 = frame2.clone()
    for n in (0, 1):
        frame3[n] = orthogonal_to(frame2[n], generator)  # cosine 0 to frame 2 and to the anchor
    features = torch.stack([anchor, anchor.clone(), frame2, frame3])
    selection = temporal_merge(features, prune=0.75)  # m = 2
    assert selection.indices[2].tolist() == [8, 9]
    assert selection.indices[3].tolist() == [0, 1]


def test_exact_ties_keep_the_lower_positions() -> None:
    """Zeroed tokens have similarity exactly 0; with more of them than m, the lower positions are kept."""
    features = torch.randn(2, 10, 4, generator=torch.Generator().manual_seed(12))
    features[1] = features[0]
    features[1, [3, 5, 6, 8]] = 0.0
    selection = temporal_merge(features, prune=0.75)  # m = 2
    assert selection.indices[1].tolist() == [3, 5]


def test_no_pruning_keeps_everything() -> None:
    features = torch.randn(6, 30, 8, generator=torch.Generator().manual_seed(7))
    selection = temporal_merge(features, prune=0.0)
    assert bool(selection.mask(30).all())
    assert selection.kept == 6 * 30


def test_single_frame_and_short_videos() -> None:
    for num_frames, expected in [(1, [12]), (2, [12, 3]), (3, [12, 3, 3]), (5, [12, 3, 3, 3, 12])]:
        features = torch.randn(num_frames, 12, 5, generator=torch.Generator().manual_seed(num_frames))
        assert temporal_merge(features, prune=0.75).budgets.tolist() == expected


def test_zero_vectors_do_not_produce_nan() -> None:
    """A zero token has similarity 0 (not NaN) to anything, a zero one included."""
    features = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(8))
    features[1:] = features[0]
    features[0, 2] = 0.0
    features[1, 2] = 0.0  # zero against zero
    features[1, 4] = 0.0  # zero against a token
    selection = temporal_merge(features, prune=0.6)  # m = int(0.4 * 6) = 2
    assert selection.budgets.tolist() == [6, 2, 2, 2]
    assert selection.indices[1].tolist() == [2, 4]


# --- dtypes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input_selects_like_float32_of_the_same_values(dtype: torch.dtype) -> None:
    features = torch.randn(10, 64, 32, generator=torch.Generator().manual_seed(9)).to(dtype)
    low = temporal_merge(features, prune=0.7)
    full = temporal_merge(features.float(), prune=0.7)
    assert as_lists(low) == as_lists(full)
    assert as_lists(full) == plain_ttm(features.double(), prune=0.7)  # no near-ties in this draw


# --- prune_for_keep and input validation -----------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.25, 0.3, 0.475, 0.5, 0.8, 1.0])
def test_prune_for_keep_gives_the_nominal_share(keep: float) -> None:
    prune = prune_for_keep(keep)
    assert 0.0 <= prune <= 1.0
    assert (1 + 3 * (1 - prune)) / 4 == pytest.approx(keep)
    features = torch.randn(8, 100, 4, generator=torch.Generator().manual_seed(10))
    selection = temporal_merge(features, prune=prune)  # every keep in range is usable as is
    assert selection.kept == 2 * 100 + 6 * max(1, int((1 - prune) * 100))


def test_prune_for_keep_boundaries() -> None:
    assert prune_for_keep(1.0) == 0.0
    assert prune_for_keep(0.25) == 1.0
    features = torch.randn(8, 196, 4, generator=torch.Generator().manual_seed(11))
    assert temporal_merge(features, prune=prune_for_keep(1.0)).kept == 8 * 196
    # keep 0.25: anchors whole plus the single most-changed token of every other frame
    assert temporal_merge(features, prune=prune_for_keep(0.25)).budgets.tolist() == [196, 1, 1, 1] * 2


@pytest.mark.parametrize("keep", [0.2499, 0.15, 0.01])
def test_prune_for_keep_below_a_quarter_suggests_vidcom2(keep: float) -> None:
    with pytest.raises(UsageError, match=r"25 %.*vidcom2"):
        prune_for_keep(keep)


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.01, 2.0, float("nan"), float("inf")])
def test_prune_for_keep_rejects_non_fractions(keep: float) -> None:
    with pytest.raises(UsageError, match="--keep"):
        prune_for_keep(keep)


@pytest.mark.parametrize("prune", [-0.1, 1.5, float("nan"), True, "0.7", None])
def test_temporal_merge_rejects_bad_prune(prune: object) -> None:
    with pytest.raises(UsageError, match="prune"):
        temporal_merge(torch.randn(4, 5, 3), prune=prune)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "features",
    [
        torch.randn(5, 3),
        torch.randn(2, 4, 5, 3),
        torch.ones(4, 5, 3, dtype=torch.int64),
        torch.randn(0, 5, 3),
    ],
    ids=["2-d", "4-d", "integer", "no-frames"],
)
def test_temporal_merge_rejects_bad_features(features: torch.Tensor) -> None:
    with pytest.raises(UsageError):
        temporal_merge(features, prune=0.5)
