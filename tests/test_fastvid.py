"""FastVID: the reference's test vectors for both variants, a plain re-implementation agreeing on random
shapes, the spec's invariants, the reference's crash cases handled, the vision tower's saliency, and merged
features landing in the right slots on every family."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.tiny_recent import ALL_FAMILIES
from vidqa.compress import fastvid
from vidqa.compress.registry import build_compression
from vidqa.models.saliency import pseudo_cls, recorded_attention, resized_attention
from vidqa.models.siglip_head import SIGLIP_REPO, SiglipHead, load_siglip_head
from vidqa.session import with_replacements
from vidqa.settings import GenerationSettings, SamplingSettings


def vectors() -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(6, dtype=torch.float64).view(6, 1, 1)
    m = torch.arange(16, dtype=torch.float64).view(1, 16, 1)
    d = torch.arange(8, dtype=torch.float64).view(1, 1, 8)
    x = torch.sin(0.37 * m**2 + 0.11 * d * (d + 1)) + 0.05 * d + 0.3 * torch.sin(0.9 * t * (d + 1))
    x = (
        x
        + 2.0 * (t >= 3).double() * torch.cos(1.7 * d + 0.5)
        - 0.25 * (t == 4).double() * torch.sin(0.9 * t * (d + 1))
    )
    a = torch.softmax(3 * torch.cos(1.3 * m[..., 0] + 0.7 * t[..., 0]), dim=1)
    return x, a


def anchors_of(selection: fastvid.FastVidSelection) -> list[list[int]]:
    out, offset = [], 0
    for idx in selection.indices:
        flags = selection.anchor[offset : offset + len(idx)]
        out.append(idx[flags].tolist())
        offset += len(idx)
    return out


def output_sum(x: torch.Tensor, selection: fastvid.FastVidSelection) -> float:
    total, offset, value = 0.0, 0, 0
    for t, idx in enumerate(selection.indices):
        for j, m in enumerate(idx.tolist()):
            if selection.anchor[offset + j]:
                total += float(selection.values[value].sum())
                value += 1
            else:
                total += float(x[t, m].sum())
        offset += len(idx)
    return total


CASES = {
    "ov": {
        "keep": [[0, 3, 5, 10, 11, 13, 14, 15], [0, 3, 4, 5, 7, 9, 11, 14], [1, 4, 5, 8, 9, 10, 13, 14],
                 [3, 4, 8, 12, 13], [3, 7, 8, 12, 13], [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15]],
        "anchors": [[3, 11, 13], [3, 7, 11], [1, 5, 10], [], [], [0, 1, 4, 5, 6, 9, 10, 14, 15]],
        "first": [
            [-0.124489, -0.286277, -0.601794, -0.834334, -0.522485, 0.528189, 1.291518, 0.347391],
            [0.110509, 0.005878, -0.47358, -0.96709, -0.815744, 0.296359, 1.296562, 0.585491],
            [0.759158, 0.545405, 0.721497, 1.269338, 0.68756, -0.630066, -0.519684, 1.006085],
            [1.554254, -0.843726, -0.529659, 2.47183, 1.980618, -1.535959, -1.257374, 1.993224],
        ],
        "sum": 89.999883,
    },
    "qwen": {
        "keep": [[0, 3, 5, 10, 11, 13, 14, 15], [0, 3, 4, 5, 7, 9, 11, 14], [1, 4, 5, 8, 9, 10, 13, 14],
                 [], [], list(range(16))],
        "anchors": [[3, 11, 13], [3, 7, 11], [1, 5, 10], [], [], [0, 4, 5, 9, 10, 13, 14, 15]],
        "first": [
            [-0.061683, -0.225405, -0.553359, -0.820613, -0.561004, 0.466473, 1.287642, 0.409957],
            [0.173315, 0.066749, -0.425145, -0.95337, -0.854263, 0.234644, 1.292686, 0.648057],
            [0.780236, 0.559765, 0.720702, 1.247005, 0.652151, -0.646391, -0.493296, 1.030499],
            [1.67275, -0.805394, -0.496846, 2.490307, 1.960172, -1.651674, -1.252696, 2.112286],
        ],
        "sum": 74.939356,
    },
}  # fmt: skip


@pytest.mark.parametrize("variant", ["ov", "qwen"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_vectors(variant: str, dtype: torch.dtype) -> None:
    x, a = vectors()
    torch.testing.assert_close(
        fastvid.frame_similarity(x.mean(dim=1)),
        torch.tensor([0.674137, 0.638824, 0.835232, 0.989042, 0.998926], dtype=torch.float64),
        atol=1e-6, rtol=0,
    )  # fmt: skip
    selection = fastvid.select(
        x.to(dtype), 0.5, saliency=a, frame_features=x.mean(dim=1), variant=variant, segments=2
    )
    case = CASES[variant]
    assert selection.segments == (1, 1, 1, 3)
    assert [i.tolist() for i in selection.indices] == case["keep"]
    assert anchors_of(selection) == case["anchors"]
    firsts, position = [], 0
    for anchors in case["anchors"]:
        if anchors:
            firsts.append(selection.values[position].double())
        position += len(anchors)
    tolerance = 1e-6 if dtype == torch.float64 else 3e-6
    torch.testing.assert_close(
        torch.stack(firsts), torch.tensor(case["first"], dtype=torch.float64), atol=tolerance, rtol=0
    )
    assert output_sum(x, selection) == pytest.approx(case["sum"], abs=1e-5)


# -- a plain re-implementation -----------------------------------------------------------------------------
def plain_fastvid(
    x: torch.Tensor, a: torch.Tensor, keep: float, variant: str, c: int = 8
) -> tuple[list, list, dict]:
    """FastVID loop by loop from the spec, float64: (kept per frame, anchors per frame, merged features)."""
    x, a = x.double(), a.double()
    frames, tokens, dim = x.shape
    tau, ignore = (0.9, 1.0) if variant == "ov" else (0.84, 0.95)
    g = [x[t].mean(dim=0) for t in range(frames)]
    unit = [v / max(float(v.norm()), 1e-12) for v in g]
    sims = [float(unit[i] @ unit[i + 1]) for i in range(frames - 1)]
    order = sorted(range(len(sims)), key=lambda i: (sims[i], i))
    cuts = set(order[: min(c - 1, frames - 1)]) | {i for i, s in enumerate(sims) if s < tau}
    segments, start = [], 0
    for i in sorted(cuts):
        segments.append(list(range(start, i + 1)))
        start = i + 1
    segments.append(list(range(start, frames)))
    salient_n, anchor_n, own = [0] * frames, [0] * frames, [False] * frames
    n_r = int(tokens * keep)
    for seg in segments:
        length = len(seg)
        if variant == "ov":
            n_c = int(n_r * 0.4)
            q = math.ceil(length / 4)
            anchor_frames = [seg[-1] - 4 * j for j in range(q)]
            for f in seg:
                salient_n[f] = n_r - n_c
                anchor_n[f] = min(n_c * length // q, tokens - (n_r - n_c)) if f in anchor_frames else 0
                own[f] = anchor_n[f] == n_c
        else:
            s_r = n_r * length
            s_c = max(int(s_r * 0.4), 1)
            s_s = s_r - s_c
            if length == 1:
                salient_n[seg[0]], anchor_n[seg[0]] = s_s, s_c
                continue
            ends = [seg[i] for i in range(length - 1) if sims[seg[i]] < ignore] + [seg[-1]]
            v_count = len(ends)
            sal = [s_s // v_count + (1 if i < s_s % v_count else 0) for i in range(v_count)]
            q = math.ceil(v_count / 4)
            parts = [s_c // q + (1 if i < s_c % q else 0) for i in range(q)]
            for v, end in enumerate(ends):
                back = v_count - 1 - v
                ctx = min(parts[back // 4], tokens // 2) if back % 4 == 0 else 0
                anchor_n[end] = ctx
                salient_n[end] = min(sal[v], tokens - ctx)
    salient, rest, anchors = [], [], []
    for t in range(frames):
        ranked = sorted(range(tokens), key=lambda m: (-float(a[t, m]), m))
        chosen = sorted(ranked[: salient_n[t]])
        remaining = [m for m in range(tokens) if m not in chosen]
        salient.append(chosen)
        rest.append(remaining)
        count = min(anchor_n[t], len(remaining))
        if count == 0:
            anchors.append([])
            continue
        pts = x[t, remaining]
        dist = [
            [float((pts[i] - pts[j]).norm()) / math.sqrt(dim) for j in range(len(remaining))]
            for i in range(len(remaining))
        ]
        rho = [
            math.exp(-sum(sorted(v * v for v in row)[: min(4, len(row))]) / min(4, len(row))) for row in dist
        ]
        far = max(max(row) for row in dist)
        sigma = []
        for i in range(len(remaining)):
            denser = [dist[i][j] for j in range(len(remaining)) if rho[j] > rho[i]]
            sigma.append((min(denser) if denser else far) * rho[i])
        top = sorted(range(len(remaining)), key=lambda i: (-sigma[i], i))[:count]
        anchors.append(sorted(remaining[i] for i in top))
    merged = {}
    for seg in segments:
        for f in seg:
            if not anchors[f]:
                continue
            if variant == "ov":
                pool = [(h, m) for h in ([f] if own[f] else seg) for m in rest[h]]
            else:
                pool = [(h, m) for h in seg for m in range(tokens)
                        if m not in salient[h] and not (h == f and m in anchors[f])]  # fmt: skip
            members: dict[int, list] = {m: [] for m in anchors[f]}
            for h, m in pool:
                norm = max(float(x[h, m].norm()), 1e-12)
                cos = [
                    float(x[h, m] @ x[f, n]) / (norm * max(float(x[f, n].norm()), 1e-12)) for n in anchors[f]
                ]
                members[anchors[f][cos.index(max(cos))]].append(x[h, m])
            for n in anchors[f]:
                count = len(members[n])
                if count == 0 and variant == "qwen":
                    merged[(f, n)] = x[f, n]
                    continue
                w = max(0.6, 1 / (count + 1))
                mean = (
                    torch.stack(members[n]).sum(dim=0) / max(count, 1)
                    if count
                    else torch.zeros(dim, dtype=x.dtype)
                )
                merged[(f, n)] = w * x[f, n] + (1 - w) * mean
    kept = [sorted(salient[t] + anchors[t]) for t in range(frames)]
    return kept, anchors, merged


@pytest.mark.parametrize("variant", ["ov", "qwen"])
def test_agrees_with_a_plain_implementation_on_random_shapes(variant: str) -> None:
    generator = torch.Generator().manual_seed(11)
    for _ in range(12):
        frames = int(torch.randint(1, 12, (1,), generator=generator))
        tokens = int(torch.randint(6, 40, (1,), generator=generator))
        dim = int(torch.randint(4, 16, (1,), generator=generator))
        keep = float(torch.empty(1).uniform_(0.1, 0.9, generator=generator))
        base = torch.randn(1, tokens, dim, generator=generator, dtype=torch.float64)
        x = base + 0.5 * torch.randn(frames, tokens, dim, generator=generator, dtype=torch.float64)
        x[frames // 2 :] += torch.randn(dim, generator=generator, dtype=torch.float64)  # a scene change
        a = torch.softmax(torch.randn(frames, tokens, generator=generator, dtype=torch.float64), dim=1)
        got = fastvid.select(x, keep, saliency=a, variant=variant)
        kept, anchors, merged = plain_fastvid(x, a, keep, variant)
        assert [i.tolist() for i in got.indices] == kept, (frames, tokens, dim, keep)
        assert anchors_of(got) == anchors
        expected = [merged[(t, m)] for t, frame in enumerate(anchors) for m in frame]
        if expected:
            torch.testing.assert_close(got.values, torch.stack(expected), atol=1e-9, rtol=0)


# -- invariants and the reference's crash cases -------------------------------------------------------------
def test_invariants_on_llava_geometry() -> None:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(32, 196, 64, generator=generator) + torch.randn(
        4, 1, 1, 64, generator=generator
    ).repeat_interleave(8, 0).view(32, 1, 64)
    a = torch.softmax(torch.randn(32, 196, generator=generator), dim=1)
    ov = fastvid.select(x, 0.1, saliency=a, variant="ov")
    n_r = int(196 * 0.1)
    n_c = int(n_r * 0.4)
    expected = 32 * (n_r - n_c) + sum(math.ceil(n / 4) * (n_c * n // math.ceil(n / 4)) for n in ov.segments)
    assert ov.kept == expected
    assert len(ov.segments) >= 8 and sum(ov.segments) == 32
    offset = 0
    for t, idx in enumerate(ov.indices):
        assert bool((idx[1:] > idx[:-1]).all())
        flags = ov.anchor[offset : offset + len(idx)]
        salient = idx[~flags]
        torch.testing.assert_close(a[t, salient].min(), a[t].sort(descending=True).values[len(salient) - 1])
        offset += len(idx)
    low, high = x.min(dim=1).values.min(dim=0).values, x.max(dim=1).values.max(dim=0).values
    assert bool(((ov.values >= low - 1e-5) & (ov.values <= high + 1e-5)).all())  # convex combinations
    qwen = fastvid.select(x, 0.27, saliency=a, variant="qwen")
    assert qwen.kept <= int(196 * 0.27) * 32


@pytest.mark.parametrize(
    ("frames", "tokens", "keep", "variant"),
    [(3, 196, 0.25, "ov"), (5, 4, 0.5, "ov"), (6, 16, 0.15, "ov"), (4, 196, 0.5, "ov"), (1, 16, 0.05, "qwen"),
     (1, 8, 0.3, "qwen"), (8, 4, 0.5, "qwen")],
)  # fmt: skip
def test_where_the_reference_crashes_vidqa_does_not(
    frames: int, tokens: int, keep: float, variant: str
) -> None:
    """T < c, fewer than 4 tokens left, no anchor budget, more anchors than a frame has, no salient token."""
    x = torch.randn(frames, tokens, 8, generator=torch.Generator().manual_seed(frames))
    x[frames // 2 :] += 3.0
    a = torch.softmax(torch.randn(frames, tokens, generator=torch.Generator().manual_seed(1)), dim=1)
    selection = fastvid.select(x, keep, saliency=a, variant=variant)
    assert selection.kept >= 0 and selection.values.shape[0] == int(selection.anchor.sum())
    for idx in selection.indices:
        assert len(set(idx.tolist())) == len(idx)


def test_keep_1_is_no_compression() -> None:
    x = torch.randn(4, 16, 8)
    assert build_compression("fastvid", keep=1.0).select(x).kept == 64


# -- the vision tower's saliency ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision"])
def test_saliency_is_recorded_without_changing_the_vision_tower(
    engines: dict, sample_clip: Path, family: str
) -> None:
    engine = engines[family]
    sampling = SamplingSettings(frames=8)
    plain = engine.encode_video(sample_clip, sampling)
    recorded = engine.encode_video(sample_clip, sampling, saliency="attention")
    torch.testing.assert_close(recorded.visual.features, plain.visual.features)  # sdpa underneath, unchanged
    saliency = recorded.visual.saliency
    t, m, _ = plain.visual.shape
    assert saliency.shape == (t, m) and plain.visual.saliency is None
    if family != "llava_onevision":  # a softmax over each frame's tokens (LLaVA's is resized to the grid)
        torch.testing.assert_close(saliency.sum(dim=1), torch.ones(t))
    assert engine.adapter.model.config.vision_config._attn_implementation == "sdpa"  # switched back


def test_pseudo_cls_by_hand() -> None:
    query = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # (1, 1 head, 2 patches, 2)
    key = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]]])
    # mean query (0.5, 0.5); scores (1, 0) / √2 → softmax
    expected = torch.softmax(torch.tensor([1.0, 0.0]) / math.sqrt(2), dim=0)
    torch.testing.assert_close(pseudo_cls(query, key)[0], expected)
    assert pseudo_cls(query.repeat(1, 1, 2, 1), key.repeat(1, 1, 2, 1), group=2).shape == (1, 2)


def test_recording_is_scoped(engines: dict) -> None:
    attention = engines["qwen2_vl"].adapter.saliency_module()
    with recorded_attention(attention):
        assert attention.config._attn_implementation == "vidqa_capture"
    assert attention.config._attn_implementation == "sdpa"


def test_cached_features_without_saliency_are_encoded_again(
    tiny_checkpoints: dict, sample_clip: Path, tmp_path: Path
) -> None:
    from vidqa.cache import FeatureCache
    from vidqa.engine import Engine

    cache = FeatureCache(tmp_path / "cache", max_bytes=10**9)
    engine = Engine.load(
        str(tiny_checkpoints["qwen2_vl"]), device="cpu", dtype="float32", attn="sdpa", cache=cache
    )
    sampling = SamplingSettings(frames=8)
    first = engine.encode_video(sample_clip, sampling)  # stored without saliency
    assert first.visual.saliency is None
    again = engine.encode_video(sample_clip, sampling, saliency="attention")
    assert not again.cached and again.visual.saliency is not None  # the entry lacked it: encoded again
    third = engine.encode_video(sample_clip, sampling, saliency="attention")
    assert third.cached and torch.equal(third.visual.saliency, again.visual.saliency)  # now stored with it


# -- every family ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_merged_features_land_in_their_slots_on_every_family(
    engines: dict, sample_clip: Path, family: str
) -> None:
    engine = engines[family]
    sampling = SamplingSettings(frames=8)
    encoding = engine.encode_video(sample_clip, sampling, saliency="attention")
    params = {"siglip_head": False}  # LLaVA-OV's head-free rule (the head has its own test)
    session = engine.session(encoding, method="fastvid", keep=0.5, params=params, sampling=sampling)
    selection = session.selection
    t, m, d = encoding.visual.shape
    assert selection.values is not None and selection.values.shape[0] == int(selection.anchor.sum()) > 0
    mask = selection.mask(m)
    visual = with_replacements(encoding.visual, selection)
    expected = visual.features.view(t * m, d)[mask.flatten()]  # kept tokens, anchors replaced
    kept_positions = mask.flatten().nonzero(as_tuple=True)[0]
    torch.testing.assert_close(
        visual.features.view(t * m, d)[kept_positions[selection.anchor]], selection.values.to(visual.features)
    )
    untouched = kept_positions[~selection.anchor]  # salient tokens keep their features exactly
    assert torch.equal(
        visual.features.view(t * m, d)[untouched], encoding.visual.features.view(t * m, d)[untouched]
    )
    prompt = engine.adapter.prompt("what happens ?", encoding.layout)
    with torch.inference_mode():
        inputs = engine.adapter.assemble(prompt, visual, mask)
        full = engine.adapter.assemble(prompt, encoding.visual, None)
    assert inputs.length == full.length - (t * m - selection.kept)
    if inputs.inputs_embeds is not None:
        torch.testing.assert_close(
            inputs.inputs_embeds[0, inputs.visual_positions], expected.to(inputs.inputs_embeds.dtype)
        )
        text, full_text = (torch.ones(x.length, dtype=torch.bool) for x in (inputs, full))
        text[inputs.visual_positions] = False
        full_text[full.visual_positions] = False
        torch.testing.assert_close(
            inputs.inputs_embeds[0, text], full.inputs_embeds[0, full_text]
        )  # text as is
    else:  # Gemma 4 hands the kept features over beside the ids
        (handed,) = inputs.visual_inputs["mm_encoder_outputs"]["video"].pooler_output
        torch.testing.assert_close(handed.reshape(-1, d), expected.to(handed.dtype))
    result = session.ask("what happens?", generation=GenerationSettings(max_new_tokens=2))
    assert result.error is None and result.visual_kept == selection.kept
    assert result.extra["fastvid"]["variant"] == engine.adapter.fastvid_variant


# -- LLaVA-OV with the SigLIP pooling head -----------------------------------------------------------------
@pytest.fixture()
def cached_siglip_head(hermetic_hf_env: Path, engines: dict) -> Iterator[SiglipHead]:
    """A random head of the tiny tower's width where the hub cache keeps google/siglip-so400m-patch14-384."""
    from safetensors.torch import save_file

    config = engines["llava_onevision"].adapter.model.config.vision_config
    torch.manual_seed(0)
    head = SiglipHead(
        config.hidden_size, config.num_attention_heads, 2 * config.hidden_size, config.layer_norm_eps
    )
    repo = hermetic_hf_env / "hub" / f"models--{SIGLIP_REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    state = {f"vision_model.{name}": value.contiguous() for name, value in head.state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("b" * 40)
    load_siglip_head.cache_clear()
    yield head.eval()
    shutil.rmtree(repo)
    load_siglip_head.cache_clear()


def test_llava_ov_ranks_with_the_siglip_head(
    engines: dict, sample_clip: Path, cached_siglip_head: SiglipHead
) -> None:
    engine = engines["llava_onevision"]
    sampling = SamplingSettings(frames=8)
    layer = engine.adapter.model.model.vision_tower.encoder.layers[-1]
    outputs: list[torch.Tensor] = []
    hooks_before = len(layer._forward_hooks)
    handle = layer.register_forward_hook(
        lambda _m, _a, out: outputs.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        encoding = engine.encode_video(sample_clip, sampling, saliency="head")
    finally:
        handle.remove()
    attention, pooled = cached_siglip_head(outputs[-1])  # by hand: the head on the last layer's output
    visual = encoding.visual
    assert visual.saliency_mode == "head" and len(layer._forward_hooks) == hooks_before  # vidqa's was scoped
    torch.testing.assert_close(visual.saliency, resized_attention(attention, visual.grid))
    torch.testing.assert_close(visual.frame_features, pooled)
    session = engine.session(encoding, method="fastvid", keep=0.5, sampling=sampling)
    expected = fastvid.select(
        visual.features, 0.5, saliency=visual.saliency, frame_features=pooled, variant="ov"
    )  # the head's pooled output is the frame feature DySeg cuts on
    assert [i.tolist() for i in session.selection.indices] == [i.tolist() for i in expected.indices]
    result = session.ask("what happens?", generation=GenerationSettings(max_new_tokens=2))
    assert result.error is None and result.extra["fastvid"]["variant"] == "ov"


def test_llava_ov_without_the_head_offline_is_one_clear_error(engines: dict, sample_clip: Path) -> None:
    from vidqa.errors import ModelLoadError

    load_siglip_head.cache_clear()
    with pytest.raises(ModelLoadError, match="siglip_head=false for the head-free rule"):
        engines["llava_onevision"].encode_video(sample_clip, SamplingSettings(frames=8), saliency="head")
