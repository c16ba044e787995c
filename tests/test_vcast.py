"""V-CAST: the reference's test vectors, a plain re-implementation agreeing on random shapes, the spec's
invariants, every family end to end, and the token budget (`--tokens`) of every method."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.tiny_recent import ALL_FAMILIES
from vidqa.cli.options import compression_from_flags
from vidqa.compress import vcast
from vidqa.compress.registry import build_compression
from vidqa.errors import UsageError
from vidqa.settings import GenerationSettings, SamplingSettings


def vectors_input(num_frames: int, tokens: int, dim: int) -> torch.Tensor:
    """The spec's input: sin(0.9·t·(d+1) + 0.37·m² + 0.11·d) + 0.05·d, +1.5 where t == 2 and m % 3 == 0."""
    t = torch.arange(num_frames, dtype=torch.float64).view(-1, 1, 1)
    m = torch.arange(tokens, dtype=torch.float64).view(1, -1, 1)
    d = torch.arange(dim, dtype=torch.float64).view(1, 1, -1)
    x = torch.sin(0.9 * t * (d + 1) + 0.37 * m**2 + 0.11 * d) + 0.05 * d
    return x + 1.5 * ((t == 2) & (m % 3 == 0)).to(torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_vectors(dtype: torch.dtype) -> None:
    a = vcast.select(vectors_input(4, 8, 6).to(dtype), keep=0.5)
    torch.testing.assert_close(
        a.scores["curvature"], torch.tensor([1, 1.905299, 1.178254, 1]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        a.scores["weight"], torch.tensor([0.144201, 0.525576, 0.186021, 0.144201]), atol=1e-6, rtol=0
    )
    assert a.budgets.tolist() == [4, 7, 3, 2]  # frame 0 took both leftovers over frame 3 (same fraction)
    assert [i.tolist() for i in a.indices] == [[2, 3, 5, 7], [0, 2, 3, 4, 5, 6, 7], [0, 3, 5], [3, 5]]
    x = vectors_input(4, 8, 6)
    scores = vcast.token_scores(x, vcast.unit(x.mean(dim=1)))[0]
    expected = [0.394386, 0.659761, 1.058033, 2.214329, 0.666111, 1.127269, 0.910884, 1.749261]
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)

    b = vcast.select(vectors_input(6, 16, 8).to(dtype), keep=0.25)
    torch.testing.assert_close(
        b.scores["curvature"], torch.tensor([1, 1.650761, 1.268175, 1.75298, 1.604803, 1]), atol=1e-6, rtol=0
    )
    assert b.budgets.tolist() == [2, 5, 3, 5, 7, 2]  # frame 4: the largest fraction, all 3 leftovers
    assert [i.tolist() for i in b.indices] == [
        [8, 14], [3, 5, 6, 12, 14], [5, 9, 14], [0, 3, 5, 12, 14], [2, 3, 5, 6, 11, 12, 14], [5, 12],
    ]  # fmt: skip


def plain_vcast(x: torch.Tensor, keep: float) -> list[list[int]]:
    """A deliberately plain V-CAST, loop by loop from the spec (float64)."""
    x = x.double()
    frames, tokens, _ = x.shape
    if frames <= 1:
        return [list(range(tokens)) for _ in range(frames)]

    def norm(v: torch.Tensor) -> float:
        return max(float(v.norm()), 1e-6)

    r = [x[t].mean(dim=0) / norm(x[t].mean(dim=0)) for t in range(frames)]
    c = [1.0] * frames
    for t in range(1, frames - 1):
        a, b = r[t] - r[t - 1], r[t + 1] - r[t]
        c[t] = 1 - float(a @ b) / (norm(a) * norm(b))
    e = [math.exp(v / 0.7) for v in c]
    w = [v / sum(e) for v in e]
    budget = max(min(max(round(frames * tokens * keep), 1), frames * tokens), frames)
    raw = [v * (budget - frames) for v in w]
    k = [1 + min(math.floor(v), tokens - 1) for v in raw]
    frac = [v - math.floor(v) if kk < tokens else -1.0 for v, kk in zip(raw, k, strict=True)]
    for _ in range(budget - sum(k)):
        best = max(range(frames), key=lambda i: (frac[i], -i))
        if frac[best] < 0:
            break
        k[best] += 1
        if k[best] >= tokens:
            frac[best] = -1.0
    kept = []
    for t in range(frames):
        norms = [float(x[t, m].norm()) for m in range(tokens)]
        low, high = min(norms), max(norms)
        score = [
            1 - float(x[t, m] @ r[t]) / (norm(x[t, m]) * norm(r[t])) + (norms[m] - low) / (high - low + 1e-6)
            for m in range(tokens)
        ]
        order = sorted(range(tokens), key=lambda m: (-score[m], m))
        kept.append(sorted(order[: k[t]]))
    return kept


def test_agrees_with_a_plain_implementation_on_random_shapes() -> None:
    generator = torch.Generator().manual_seed(7)
    for case in range(40):
        frames = int(torch.randint(1, 13, (1,), generator=generator))
        tokens = int(torch.randint(4, 50, (1,), generator=generator))
        dim = int(torch.randint(4, 40, (1,), generator=generator))
        keep = float(torch.empty(1).uniform_(0.02, 1.0, generator=generator))
        x = torch.randn(frames, tokens, dim, generator=generator, dtype=torch.float64)
        x += torch.randn(frames, 1, dim, generator=generator, dtype=torch.float64) * case / 10  # frame drift
        got = [i.tolist() for i in vcast.select(x, keep=keep).indices]
        assert got == plain_vcast(x, keep), (frames, tokens, dim, keep)


@pytest.mark.parametrize(
    ("frames", "tokens", "keep"), [(32, 196, 0.25), (16, 784, 0.1), (5, 7, 0.01), (3, 9, 1.0)]
)
def test_invariants(frames: int, tokens: int, keep: float) -> None:
    x = torch.randn(frames, tokens, 32, generator=torch.Generator().manual_seed(frames))
    selection = vcast.select(x, keep=keep)
    assert selection.kept == max(frames, round(keep * frames * tokens))  # exactly the budget
    for idx, budget in zip(selection.indices, selection.budgets.tolist(), strict=True):
        assert 1 <= budget <= tokens and len(idx) == budget
        assert bool((idx[1:] > idx[:-1]).all()) and int(idx.min()) >= 0 and int(idx.max()) < tokens
    assert bool(((selection.scores["curvature"] >= 0) & (selection.scores["curvature"] <= 2)).all())


def test_static_video_and_one_frame() -> None:
    still = torch.randn(1, 196, 16).expand(8, -1, -1)
    selection = vcast.select(still, keep=0.1)
    assert selection.scores["curvature"].tolist() == [1.0] * 8  # a zero step is curvature 1, not 0
    assert selection.budgets.tolist() == [24, 19, 19, 19, 19, 19, 19, 19]  # frame 0 takes the leftover
    assert vcast.select(torch.randn(1, 196, 16).expand(32, -1, -1), keep=0.25).budgets.tolist() == [49] * 32
    one = vcast.select(torch.randn(1, 50, 8), keep=0.1)
    assert one.kept == 50  # a one-frame video is passed through whole, as the reference does


def test_bf16_features_are_scored_in_float32() -> None:
    x = torch.randn(8, 64, 32, generator=torch.Generator().manual_seed(3)).bfloat16()
    same = vcast.select(x.float(), keep=0.3)
    assert [i.tolist() for i in vcast.select(x, keep=0.3).indices] == [i.tolist() for i in same.indices]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_family_end_to_end(engines: dict, sample_clip: Path, family: str) -> None:
    engine = engines[family]
    sampling = SamplingSettings(frames=8)
    generation = GenerationSettings(max_new_tokens=2)
    encoding = engine.encode_video(sample_clip, sampling)
    t, m, _ = encoding.visual.shape
    plain = engine.session(encoding, method="none", sampling=sampling).ask(
        "what happens?", generation=generation
    )
    pruned = engine.session(encoding, method="vcast", keep=0.3, sampling=sampling).ask(
        "what happens?", generation=generation
    )
    assert pruned.visual_kept == max(t, round(0.3 * t * m)) < t * m
    assert pruned.prompt_tokens == plain.prompt_tokens - (t * m - pruned.visual_kept)  # only video tokens go
    assert pruned.error is None and pruned.generated_tokens >= 1
    budget = engine.session(encoding, method="vcast", tokens=t + 5, sampling=sampling).ask(
        "what happens?", generation=generation
    )
    assert budget.visual_kept == t + 5 and budget.extra["tokens"] == t + 5
    assert budget.keep == pytest.approx((t + 5) / (t * m), abs=1e-6)


# -- the token budget --------------------------------------------------------------------------------------
def test_token_budget_per_method() -> None:
    frames, tokens = 32, 196  # LLaVA-OV geometry: 6272 tokens
    total = frames * tokens
    for method in ("vidcom2", "vcast"):
        resolved = build_compression(method).with_tokens(1568).for_video(frames, tokens)
        assert resolved.keep == 0.25 and resolved.tokens == 1568 and resolved.label == f"{method} 1568 tokens"
        assert resolved.to_dict()["tokens"] == 1568
    # 128 frames to the budget of 32 uncompressed ones: a quarter of the tokens each
    assert build_compression("vcast").with_tokens(total).for_video(4 * frames, tokens).keep == 0.25
    x = torch.randn(4 * frames, tokens, 16, generator=torch.Generator().manual_seed(0))
    assert build_compression("vcast").with_tokens(total).for_video(4 * frames, tokens).select(x).kept == total
    fastvid = build_compression("fastvid").with_tokens(627).for_video(frames, tokens)
    assert fastvid.keep == pytest.approx(627 / total, abs=1e-6) and fastvid.tokens == 627
    dycoke = build_compression("dycoke").with_tokens(3136).for_video(frames, tokens)  # keep 0.5
    assert dycoke.keep == pytest.approx(0.5, abs=1e-6) and dycoke.params.model_dump()[
        "prune"
    ] == pytest.approx(2 / 3)
    with pytest.raises(UsageError, match="--tokens 100 of this video's 6272 visual tokens"):
        build_compression("dycoke").with_tokens(100).for_video(frames, tokens)  # below DyCoke's 25 % floor
    whole = build_compression("vidcom2").with_tokens(10_000).for_video(frames, tokens)
    assert whole.is_identity  # a budget beyond the video is no compression
    with pytest.raises(UsageError, match="needs a compression method"):
        build_compression("none").with_tokens(100)
    with pytest.raises(UsageError, match="either --keep or --tokens"):
        compression_from_flags(preset=None, method="vcast", keep=0.3, params=None, tokens=100)
    with pytest.raises(UsageError, match="at least 1"):
        build_compression("vcast").with_tokens(0)
