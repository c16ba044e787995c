"""Selections reach the LLM correctly: token counts, positions, the LLaVA newline, Qwen3-VL deepstack.

Checked directly on the tensors handed to `generate`, for every family, with VidCom² and DyCoke selections.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tiny_recent import ALL_FAMILIES
from vidqa.compress import dycoke, vidcom2
from vidqa.settings import SamplingSettings


@pytest.fixture(autouse=True)
def _inference_mode():  # the engine runs every phase under inference mode; so do these tests
    with torch.inference_mode():
        yield


def _prepare(engine, clip: Path, keep: float):
    encoding = engine.encode_video(clip, SamplingSettings(frames=8))
    selection = vidcom2.select(encoding.visual.features, keep=keep)
    t, m, _ = encoding.visual.shape
    prompt = engine.adapter.prompt("what happens ?", encoding.layout)
    return encoding, prompt, selection, selection.mask(m), t, m


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("keep", [0.25, 0.6])
def test_kept_tokens_and_positions(engines: dict, sample_clip: Path, family: str, keep: float) -> None:
    engine = engines[family]
    adapter = engine.adapter
    encoding, prompt, selection, mask, t, m = _prepare(engine, sample_clip, keep)
    visual = encoding.visual
    full = adapter.assemble(prompt, visual, None)
    kept = adapter.assemble(prompt, visual, mask)

    dropped = t * m - selection.kept
    assert kept.length == full.length - dropped
    assert kept.visual_positions.numel() == selection.kept
    assert full.visual_positions.numel() == t * m

    features = visual.features.flatten(0, 1)[mask.flatten()]
    full_text = torch.ones(full.length, dtype=torch.bool)
    full_text[full.visual_positions] = False
    kept_text = torch.ones(kept.length, dtype=torch.bool)
    kept_text[kept.visual_positions] = False
    if kept.inputs_embeds is not None:
        # The kept visual embeddings are exactly the selected features, in order.
        kept_visual = kept.inputs_embeds[0, kept.visual_positions]
        torch.testing.assert_close(kept_visual, features.to(kept_visual.dtype))
        # Every non-visual token survives (text, timestamps, frame labels, the LLaVA newline), in order.
        torch.testing.assert_close(kept.inputs_embeds[0, kept_text], full.inputs_embeds[0, full_text])
    else:  # Gemma 4: kept ids, the kept features handed over beside them, the token types cut alike
        assert torch.equal(kept.input_ids[0, kept_text], full.input_ids[0, full_text])
        (handed,) = kept.visual_inputs["mm_encoder_outputs"]["video"].pooler_output
        torch.testing.assert_close(handed, features)
        types = kept.sequence_inputs["mm_token_type_ids"][0]
        assert torch.equal(types[kept.visual_positions], torch.full_like(kept.visual_positions, 2))
        assert int(types[kept_text].sum()) == 0

    if kept.position_ids is None:  # 1-D families: positions re-indexed 0..L'-1 by generate
        assert full.position_ids is None
        if family == "llava_onevision":
            newline = adapter.model.model.image_newline
            after_video = int(kept.visual_positions[-1]) + 1
            torch.testing.assert_close(
                kept.inputs_embeds[0, after_video], newline.to(kept.inputs_embeds.dtype)
            )
    else:
        # M-RoPE: survivors keep the (t, h, w) positions they had in the full sequence.
        assert kept.position_ids.shape == (3, 1, kept.length)
        full_visual_positions = full.position_ids[:, 0, full.visual_positions]  # (3, T·M)
        torch.testing.assert_close(
            kept.position_ids[:, 0, kept.visual_positions], full_visual_positions[:, mask.flatten()]
        )
        torch.testing.assert_close(kept.position_ids[:, 0, kept_text], full.position_ids[:, 0, full_text])


def test_text_between_frames_is_never_dropped(engines: dict, sample_clip: Path) -> None:
    """Frame labels and timestamps sit between the frames' visual tokens; a keep mask leaves them all."""
    for family in ("qwen3_vl", "qwen3_5", "gemma4", "internvl", "smolvlm"):
        engine = engines[family]
        encoding, prompt, selection, mask, t, m = _prepare(engine, sample_clip, 0.25)
        ids = prompt["input_ids"][0]
        video = (ids == engine.adapter.video_token_id).nonzero()[:, 0]
        between = ids[int(video[0]) : int(video[-1]) + 1]
        text_inside = between[between != engine.adapter.video_token_id]
        assert text_inside.numel() >= t - 1, family  # something separates every frame from the next
        kept = engine.adapter.assemble(prompt, encoding.visual, mask)
        assert kept.length == ids.numel() - (t * m - selection.kept), family


def test_qwen3_deepstack_is_dropped_with_the_same_mask(engines: dict, sample_clip: Path) -> None:
    engine = engines["qwen3_vl"]
    adapter = engine.adapter
    encoding, prompt, selection, mask, _, _ = _prepare(engine, sample_clip, 0.25)
    inputs = adapter.assemble(prompt, encoding.visual, mask)
    seen: list[dict] = []

    def capture(_module, _args, kwargs):
        if kwargs.get("visual_pos_masks") is not None:
            seen.append({"mask": kwargs["visual_pos_masks"], "deepstack": kwargs["deepstack_visual_embeds"]})

    language_model = adapter.model.model.language_model
    with inputs.hooks_installed():
        handle = language_model.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            with torch.inference_mode():
                adapter.model.generate(**inputs.generate_kwargs(), max_new_tokens=3, do_sample=False)
        finally:
            handle.remove()
    assert len(seen) == 1  # prefill only, never on decode steps
    assert int(seen[0]["mask"].sum()) == selection.kept
    assert seen[0]["mask"][0].nonzero(as_tuple=True)[0].tolist() == inputs.visual_positions.tolist()
    levels = encoding.visual.per_token["deepstack"]  # (levels, T, M, D)
    assert len(seen[0]["deepstack"]) == levels.shape[0]
    for level, injected in zip(levels, seen[0]["deepstack"], strict=True):
        torch.testing.assert_close(injected, level.flatten(0, 1)[mask.flatten()])
    assert not language_model._forward_pre_hooks or all(  # our hook is gone after generate
        getattr(h, "__name__", "") != "inject" for h in language_model._forward_pre_hooks.values()
    )


def test_qwen3_deepstack_changes_the_output(engines: dict, sample_clip: Path) -> None:
    """Without the deepstack injection the logits differ: the hook is doing real work."""
    adapter = engines["qwen3_vl"].adapter
    encoding = engines["qwen3_vl"].encode_video(sample_clip, SamplingSettings(frames=8))
    inputs = adapter.assemble(adapter.prompt("q", encoding.layout), encoding.visual, None)
    with torch.inference_mode():
        with inputs.hooks_installed():
            with_deepstack = adapter.model(**inputs.generate_kwargs()).logits
        without = adapter.model(**inputs.generate_kwargs()).logits
    assert not torch.allclose(with_deepstack, without)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("method", ["vidcom2", "dycoke"])
def test_ask_with_compression_reports_kept_tokens(engines: dict, sample_clip: Path, family: str, method: str):
    engine = engines[family]
    keep = 0.25 if method == "vidcom2" else 0.5
    result = engine.ask(
        sample_clip,
        "what happens ?",
        method=method,
        keep=keep,
        frames=8,
        max_new_tokens=3,
        params={"decode_prune": 0.0} if method == "dycoke" else None,
    )
    record = result.to_dict()
    features = engine.encode_video(sample_clip, SamplingSettings(frames=8)).visual.features
    if method == "vidcom2":
        expected = vidcom2.select(features, keep=keep).kept
    else:
        expected = dycoke.temporal_merge(features, prune=dycoke.prune_for_keep(keep)).kept
    assert record["visual_tokens"]["kept"] == expected < record["visual_tokens"]["total"]
    assert record["method"] == method and record["keep"] == keep
    assert record["answer"] is not None and record["generated_tokens"] >= 1
    assert record["timings"]["compress"] > 0


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_dycoke_both_stages_end_to_end(engines: dict, sample_clip: Path, family: str) -> None:
    """--method dycoke with stage 2 on (layer 1: the tiny LLMs have 2 layers) for every family."""
    result = engines[family].ask(
        sample_clip,
        "what happens ?",
        method="dycoke",
        keep=0.5,
        frames=8,
        max_new_tokens=4,
        min_new_tokens=4,
        params={"layer": 1, "gate": 1.0},
    )
    record = result.to_dict()
    stats = record["dycoke"]
    assert record["error"] is None and record["generated_tokens"] == 4
    assert stats["decode_steps"] == 3 and stats["pruned_steps"] == 3  # gate 1.0: every decode step prunes
    assert stats["visual_tokens"] == record["visual_tokens"]["kept"]
    assert 0 < stats["mean_visual_attended"] < stats["visual_tokens"]
    attn = engines[family].adapter.model.config.get_text_config()._attn_implementation
    assert attn == "sdpa"  # restored after the answer
