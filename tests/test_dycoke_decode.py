"""Tests for DyCoke stage 2 (`vidqa.compress.dycoke_decode`): decode-time visual KV pruning.

Most tests use an in-memory LLaVA-OV with a 4-layer LLM (so L = 2 leaves a non-scoring layer below L and two
pruned layers above) fed random embeddings: positions 0-4 and 35-39 are text, 5-34 the 30 visual tokens. Its
q/k projections are sharpened so attention is peaky and top-k boundaries are far from float noise. The
independent check is an eager replay: one full forward with `output_attentions=True` over the prompt plus the
generated tokens; layers below L see every key in both runs, so row P + t of layer L − 1 is decode step t's
score row exactly. End-to-end tests go through the real adapters on the tiny checkpoints.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AttentionInterface,
    AutoModelForImageTextToText,
    AutoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
)

from tests.tiny_models import tiny_frames
from vidqa.compress.dycoke_decode import DecodePruning, DecodePruningError, language_attention
from vidqa.compress.registry import build_compression
from vidqa.errors import UsageError
from vidqa.generation import generate_streaming
from vidqa.models import adapter_class
from vidqa.settings import GenerationSettings

HIDDEN = 32
PROMPT = 40
VISUAL = torch.arange(5, 35)  # (V,) = 30 visual positions
LAYER = 2
NEW_TOKENS = 10


def _deep_llava(layers: int = 4, seed: int = 0) -> LlavaOnevisionForConditionalGeneration:
    """A LLaVA-OV whose LLM has `layers` layers and peaky attention (q/k weights scaled up)."""
    config = LlavaOnevisionConfig(
        text_config=dict(
            model_type="qwen2",
            vocab_size=128,
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
        ),
        vision_config=dict(
            model_type="siglip_vision_model",
            image_size=16,
            patch_size=8,
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            vision_use_head=False,
        ),
        image_token_index=127,
        video_token_index=126,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[16, 16]],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    _sharpen(model)
    return model


def _sharpen(model: PreTrainedModel, factor: float = 8.0) -> None:
    """Scale every LLM q/k projection so attention rows are far from uniform."""
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(factor)
            layer.self_attn.k_proj.weight.mul_(factor)


@pytest.fixture(scope="module")
def llava() -> LlavaOnevisionForConditionalGeneration:
    return _deep_llava()


@pytest.fixture(scope="module")
def prompt() -> torch.Tensor:
    """Prompt embeddings (1, P, D)."""
    return torch.randn(1, PROMPT, HIDDEN, generator=torch.Generator().manual_seed(1))


class _Force(LogitsProcessor):
    """Forces a fixed token sequence, so every run decodes the same tokens whatever the pruning."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[input_ids.shape[1]]] = 0.0
        return forced


FORCED = [7, 19, 3, 88, 41, 41, 102, 9, 64, 27]


def _generate(model: PreTrainedModel, embeds: torch.Tensor, *, force: bool = False, **extra: Any) -> Any:
    """Greedy generate of NEW_TOKENS tokens with scores and the cache returned."""
    processors = LogitsProcessorList([_Force(FORCED)]) if force else None
    return model.generate(
        inputs_embeds=embeds,
        attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        pad_token_id=0,
        return_dict_in_generate=True,
        output_scores=True,
        logits_processor=processors,
        **extra,
    )


@contextmanager
def _eager(model: PreTrainedModel) -> Iterator[None]:
    """Run the LLM with eager attention (which can return weights), then restore its implementation."""
    before = language_attention(model)
    model.set_attn_implementation({"text_config": "eager"})
    try:
        yield
    finally:
        model.set_attn_implementation({"text_config": before})


def _replay_scores(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    generated: torch.Tensor,
    *,
    layer: int,
    visual: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode step t's head-averaged layer-(L−1) attention at the visual positions: (steps, V).

    One eager forward over prompt + generated[:-1] (the tokens fed back as queries); row P + t is step t.
    """
    fed = generated[:-1]
    full = torch.cat([embeds, model.get_input_embeddings()(fed)[None]], dim=1)  # (1, P + steps, D)
    kwargs: dict[str, Any] = {}
    if position_ids is not None:  # Qwen M-RoPE: generate extends positions by last + 1 per token
        tail = position_ids[..., -1:] + torch.arange(1, len(fed) + 1)
        kwargs["position_ids"] = torch.cat([position_ids, tail], dim=-1)
    with _eager(model), torch.no_grad():
        out = model(inputs_embeds=full, output_attentions=True, use_cache=False, **kwargs)
    rows = out.attentions[layer - 1][0].mean(0)  # (P + steps, P + steps), head-averaged
    prompt_len = embeds.shape[1]
    return rows[prompt_len - 1 + torch.arange(1, len(fed) + 1)][:, visual].float()


def _top_k(scores: torch.Tensor, visual: torch.Tensor, keep: int) -> list[int]:
    """The kept visual positions (ascending) per the rule; asserts the k-th/(k+1)-th gap is not noise."""
    order = scores.sort(descending=True)
    if keep < len(scores):
        assert float(order.values[keep - 1] - order.values[keep]) > 1e-5, "top-k boundary within float noise"
    return sorted(visual[order.indices[:keep]].tolist())


def _cosines(replayed: torch.Tensor) -> list[float]:
    """Reference similarity per step: 0 at the first step, then cosine with the previous step."""
    sims = [0.0]
    for t in range(1, len(replayed)):
        sims.append(float(F.cosine_similarity(replayed[t], replayed[t - 1], dim=0)))
    return sims


# -- exactness ---------------------------------------------------------------------------------------------
def test_prune_zero_reproduces_stock_generation(llava: Any, prompt: torch.Tensor) -> None:
    stock = _generate(llava, prompt)
    stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.0, gate=1.1)
    with stage:
        ours = _generate(llava, prompt)
    assert torch.equal(ours.sequences, stock.sequences)
    for mine, theirs in zip(ours.scores, stock.scores, strict=True):
        assert torch.equal(mine, theirs)
    assert stage.stats() == {
        "dycoke": {
            "decode_steps": NEW_TOKENS - 1,
            "pruned_steps": NEW_TOKENS - 1,  # every step "pruned", to all V tokens
            "mean_visual_attended": float(len(VISUAL)),
            "visual_tokens": len(VISUAL),
        }
    }


def test_pruned_selection_is_top_k_of_independent_scores(llava: Any, prompt: torch.Tensor) -> None:
    stock = _generate(llava, prompt)
    stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.5, gate=1.1, record=True)
    with stage:
        out = _generate(llava, prompt)
    keep = int(len(VISUAL) * 0.5)
    replayed = _replay_scores(llava, prompt, out.sequences[0], layer=LAYER, visual=VISUAL)
    history = stage.history
    assert len(history) == NEW_TOKENS - 1 == len(replayed)
    for record, scores in zip(history, replayed, strict=True):
        assert record.pruned and record.kept_visual is not None
        assert record.kept_visual.tolist() == _top_k(scores, VISUAL, keep)
    assert stage.stats()["dycoke"]["mean_visual_attended"] == keep
    # The first token comes from the unpruned prefill; pruning changes the later logits.
    assert torch.equal(out.scores[0], stock.scores[0])
    assert not torch.equal(out.scores[1], stock.scores[1])


def test_layers_below_l_see_all_keys_and_layers_from_l_see_the_kept_index(
    llava: Any, prompt: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    seen: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []

    def spy(
        module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *a: Any, **k: Any
    ) -> Any:
        seen.append((int(module.layer_idx), int(query.shape[2]), key.clone(), value.clone()))
        return sdpa_attention_forward(module, query, key, value, *a, **k)

    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", spy)
    stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.7, gate=1.1, record=True)
    with stage:
        out = _generate(llava, prompt)
    cache = out.past_key_values
    decode_calls = [call for call in seen if call[1] == 1]
    assert len(decode_calls) == (NEW_TOKENS - 1) * 4
    non_visual = sorted(set(range(PROMPT + NEW_TOKENS)) - set(VISUAL.tolist()))
    for step, record in enumerate(stage.history):
        keys = PROMPT + step + 1  # prompt + generated tokens fed so far
        kept = torch.tensor(sorted([p for p in non_visual if p < keys] + record.kept_visual.tolist()))
        assert len(kept) == keys - len(VISUAL) + int(len(VISUAL) * 0.3)
        for layer_idx, _, key, value in decode_calls[step * 4 : step * 4 + 4]:
            full_k = cache.layers[layer_idx].keys[:, :, :keys]
            full_v = cache.layers[layer_idx].values[:, :, :keys]
            index = torch.arange(keys) if layer_idx < LAYER else kept
            assert torch.equal(key, full_k[:, :, index])
            assert torch.equal(value, full_v[:, :, index])
    # Pruned entries stay in the cache: it still holds every position.
    assert cache.layers[3].keys.shape[2] == PROMPT + NEW_TOKENS - 1


def test_eager_original_prunes_with_its_mask_and_is_restored(llava: Any, prompt: torch.Tensor) -> None:
    with _eager(llava):
        stock = _generate(llava, prompt)
        with DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.0, gate=1.1):
            same = _generate(llava, prompt)
        stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.5, gate=1.1, record=True)
        with stage:
            out = _generate(llava, prompt)
        assert language_attention(llava) == "eager"
    for mine, theirs in zip(same.scores, stock.scores, strict=True):
        assert torch.equal(mine, theirs)
    replayed = _replay_scores(llava, prompt, out.sequences[0], layer=LAYER, visual=VISUAL)
    for record, scores in zip(stage.history, replayed, strict=True):
        assert record.kept_visual.tolist() == _top_k(scores, VISUAL, 15)


def test_flash_style_original_sees_its_own_name_and_mask(llava: Any, prompt: torch.Tensor) -> None:
    """A stand-in for flash attention (no GPU here): flash loads its kernel by the name in
    `module.config._attn_implementation` and takes the flash mask (None or 2-D), so both must be its own."""
    from transformers import AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    seen: list[tuple[str, int, int, int]] = []

    def fake_flash(
        module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any, **k: Any
    ):
        assert mask is None or mask.ndim == 2
        seen.append((module.config._attn_implementation, module.layer_idx, query.shape[2], key.shape[2]))
        return sdpa_attention_forward(module, query, key, value, None, **k)

    name = "vidqa_test_flash"
    AttentionInterface.register(name, fake_flash)
    AttentionMaskInterface.register(name, flash_attention_mask)
    try:
        llava.set_attn_implementation({"text_config": name})
        stock = _generate(llava, prompt)
        seen.clear()
        with DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.0, gate=1.1):
            same = _generate(llava, prompt)
        assert {call[0] for call in seen} == {name}
        with DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.5, gate=1.1):
            seen.clear()
            _generate(llava, prompt)
        assert language_attention(llava) == name
    finally:
        llava.set_attn_implementation({"text_config": "sdpa"})
        del AttentionInterface._global_mapping[name]
        del AttentionMaskInterface._global_mapping[name]
    assert name not in ALL_ATTENTION_FUNCTIONS and name not in ALL_MASK_ATTENTION_FUNCTIONS
    assert all(torch.equal(a, b) for a, b in zip(same.scores, stock.scores, strict=True))
    kept = PROMPT - len(VISUAL) + len(VISUAL) // 2  # keys at layers >= L on decode step 0
    for step in range(NEW_TOKENS - 1):
        lengths = [keys for _, layer, q_len, keys in seen if q_len == 1][step * 4 : step * 4 + 4]
        assert lengths == [PROMPT + step + 1] * LAYER + [kept + step + 1] * 2


# -- the gate ----------------------------------------------------------------------------------------------
def test_gate_prunes_exactly_the_steps_whose_cosine_is_below_tau(llava: Any, prompt: torch.Tensor) -> None:
    probe = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.5, gate=1.1)
    with probe:
        out = _generate(llava, prompt, force=True)
    assert out.sequences[0].tolist() == FORCED
    sims = _cosines(_replay_scores(llava, prompt, out.sequences[0], layer=LAYER, visual=VISUAL))
    assert [r.similarity for r in probe.history] == pytest.approx(sims, abs=1e-5)
    assert sims[0] == 0.0 and all(s > 0 for s in sims[1:])

    later = sorted(sims[1:])
    middle = len(later) // 2
    assert later[middle] - later[middle - 1] > 1e-4, "need two distinct similarities to place tau between"
    tau = (later[middle] + later[middle - 1]) / 2
    stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.5, gate=tau)
    with stage:
        _generate(llava, prompt, force=True)
    decisions = [r.pruned for r in stage.history]
    assert decisions == [s < tau for s in sims]
    assert decisions[0]  # no previous vector: similarity 0 < tau, as in the reference
    assert any(decisions[1:]) and not all(decisions[1:])
    assert stage.stats()["dycoke"]["pruned_steps"] == sum(decisions)


def test_gate_at_zero_never_prunes_and_matches_stock(llava: Any, prompt: torch.Tensor) -> None:
    stock = _generate(llava, prompt)
    stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.7, gate=0.0)
    with stage:
        out = _generate(llava, prompt)
    assert stage.stats()["dycoke"]["pruned_steps"] == 0
    assert stage.stats()["dycoke"]["mean_visual_attended"] is None
    for mine, theirs in zip(out.scores, stock.scores, strict=True):
        assert torch.equal(mine, theirs)


# -- state -------------------------------------------------------------------------------------------------
def test_second_request_starts_fresh(llava: Any, prompt: torch.Tensor) -> None:
    runs = []
    for _ in range(2):
        stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.5, gate=0.9, record=True)
        with stage:
            out = _generate(llava, prompt, force=True)
        runs.append((stage.history, out.scores))
    (first, first_scores), (second, second_scores) = runs
    assert second[0].similarity == 0.0 and second[0].pruned
    assert [(r.similarity, r.pruned) for r in second] == [(r.similarity, r.pruned) for r in first]
    assert all(torch.equal(a, b) for a, b in zip(first_scores, second_scores, strict=True))
    # A leak would have compared request 2's first vector with request 1's last one:
    assert first[-1].similarity > 0.0


def test_a_new_prefill_in_one_context_starts_a_new_sequence(llava: Any, prompt: torch.Tensor) -> None:
    stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.5, gate=0.9)
    with stage:
        _generate(llava, prompt, force=True)
        _generate(llava, prompt, force=True)
    history = stage.history
    assert len(history) == 2 * (NEW_TOKENS - 1)
    first, second = history[: NEW_TOKENS - 1], history[NEW_TOKENS - 1 :]
    assert second[0].similarity == 0.0
    assert [(r.similarity, r.pruned) for r in second] == [(r.similarity, r.pruned) for r in first]


def test_reentering_one_instance_resets_its_state(llava: Any, prompt: torch.Tensor) -> None:
    stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.5, gate=1.1)
    for _ in range(2):
        with stage:
            _generate(llava, prompt)
        assert stage.stats()["dycoke"]["decode_steps"] == NEW_TOKENS - 1


def test_implementation_restored_after_exit_and_exceptions(llava: Any, prompt: torch.Tensor) -> None:
    vision = llava.config.vision_config._attn_implementation
    stock = _generate(llava, prompt)
    with DecodePruning(llava, visual_positions=VISUAL, layer=LAYER):
        assert language_attention(llava) == "vidqa_dycoke"
        assert llava.config.vision_config._attn_implementation == vision
    assert language_attention(llava) == "sdpa"

    with (
        pytest.raises(RuntimeError, match="boom"),
        DecodePruning(llava, visual_positions=VISUAL, layer=LAYER),
    ):
        raise RuntimeError("boom")
    assert language_attention(llava) == "sdpa"

    beyond = torch.tensor([5, PROMPT + 50])  # a position the cache never holds: fails inside generate
    with (
        pytest.raises(DecodePruningError, match="beyond"),
        DecodePruning(llava, visual_positions=beyond, layer=1),
    ):
        _generate(llava, prompt)
    assert language_attention(llava) == "sdpa"
    after = _generate(llava, prompt)
    assert all(torch.equal(a, b) for a, b in zip(after.scores, stock.scores, strict=True))


def test_other_threads_decode_unpruned(llava: Any, prompt: torch.Tensor) -> None:
    stock = _generate(llava, prompt)
    results: list[Any] = []
    stage = DecodePruning(llava, visual_positions=VISUAL, layer=LAYER, prune=0.7, gate=1.1)
    with stage:
        worker = threading.Thread(target=lambda: results.append(_generate(llava, prompt)))
        worker.start()
        worker.join()
    assert stage.stats()["dycoke"]["decode_steps"] == 0  # the worker never saw this request's state
    assert all(torch.equal(a, b) for a, b in zip(results[0].scores, stock.scores, strict=True))


def test_nested_users_of_one_model_restore_once(llava: Any) -> None:
    with DecodePruning(llava, visual_positions=VISUAL, layer=LAYER):
        with DecodePruning(llava, visual_positions=VISUAL, layer=LAYER):
            assert language_attention(llava) == "vidqa_dycoke"
        assert language_attention(llava) == "vidqa_dycoke"
    assert language_attention(llava) == "sdpa"


# -- validation --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": 0}, "layer"),
        ({"layer": 4}, "layer"),
        ({"prune": 1.0}, "decode_prune"),
        ({"prune": -0.1}, "decode_prune"),
        ({"gate": float("nan")}, "gate"),
        ({"visual_positions": torch.tensor([7, 5])}, "ascending"),
        ({"visual_positions": torch.tensor([0.5])}, "integer"),
    ],
)
def test_invalid_parameters_are_usage_errors(llava: Any, kwargs: dict[str, Any], message: str) -> None:
    arguments = {"visual_positions": VISUAL, "layer": LAYER, **kwargs}
    with pytest.raises(UsageError, match=message):
        DecodePruning(llava, **arguments)


def test_flex_attention_is_refused_and_nothing_switched(llava: Any) -> None:
    config = llava.config.get_text_config()
    config._attn_implementation_internal = "flex_attention"
    try:
        with pytest.raises(UsageError, match="flex_attention"), DecodePruning(llava, visual_positions=VISUAL):
            pass
        assert language_attention(llava) == "flex_attention"
    finally:
        config._attn_implementation_internal = "sdpa"


# -- end to end through the adapters ----------------------------------------------------------------------
def _adapter(checkpoint: Path) -> Any:
    processor = AutoProcessor.from_pretrained(checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint).eval()
    _sharpen(model)
    return adapter_class(model.config.model_type)(model, processor)


def _clip(frames: int = 4) -> Any:
    info = types.SimpleNamespace(fps=2.0, duration=frames / 2.0, num_frames=frames)
    return types.SimpleNamespace(
        frames=tiny_frames(frames),
        times=[(i + 0.5) / 2.0 for i in range(frames)],
        frame_indices=list(range(frames)),
        info=info,
    )


def _answer(adapter: Any, inputs: Any, stage: Any) -> tuple[str, Any]:
    clock = types.SimpleNamespace(now=lambda: 0.0)
    with torch.no_grad():
        return generate_streaming(
            adapter,
            inputs,
            clock=clock,
            start=0.0,
            generation=GenerationSettings(max_new_tokens=6, min_new_tokens=6),
            decode_stage=stage,
        )


@pytest.mark.parametrize("family", ["llava_onevision", "qwen2_vl", "qwen3_vl"])
def test_end_to_end_through_the_adapter(tiny_checkpoints: dict[str, Path], family: str) -> None:
    adapter = _adapter(tiny_checkpoints[family])
    model = adapter.model
    with torch.no_grad():
        visual, layout = adapter.encode(_clip())
    batch = adapter.prompt("what happens?", layout)
    with torch.no_grad():
        t, m, _ = visual.shape
        keep = torch.ones(t, m, dtype=torch.bool)
        keep[1:, ::3] = False  # drop some tokens at prefill, as stage 1 would
        inputs = adapter.assemble(batch, visual, keep)
    positions = inputs.visual_positions
    assert len(positions) == int(keep.sum())

    settings = build_compression("dycoke", params={"layer": 1, "decode_prune": 0.0})
    assert settings.decode_stage(model, positions) is None
    assert build_compression("dycoke", keep=1.0, params={"layer": 1}).decode_stage(model, positions) is None
    settings = build_compression("dycoke", params={"layer": 1})
    default_stage = settings.decode_stage(model, positions)
    assert isinstance(default_stage, DecodePruning)
    assert (default_stage.layer, default_stage.prune, default_stage.gate) == (1, 0.7, 0.9)

    stock_text, _ = _answer(adapter, inputs, None)
    identity_text, _ = _answer(
        adapter, inputs, DecodePruning(model, visual_positions=positions, layer=1, prune=0.0)
    )
    assert identity_text == stock_text

    stage = DecodePruning(model, visual_positions=positions, layer=1, prune=0.5, gate=1.1, record=True)
    _, stats = _answer(adapter, inputs, stage)
    kept = int(len(positions) * 0.5)
    assert stats.tokens == 6
    assert stats.extra == {
        "dycoke": {
            "decode_steps": 5,
            "pruned_steps": 5,
            "mean_visual_attended": float(kept),
            "visual_tokens": len(positions),
        }
    }
    assert language_attention(model) == "sdpa"
    if family == "qwen3_vl":
        return  # its deepstack injection needs the adapter's prefill hooks, which the replay does not run
    generated = torch.tensor(_stage_tokens(adapter, inputs, stage))
    replayed = _replay_scores(
        model, inputs.inputs_embeds, generated, layer=1, visual=positions, position_ids=inputs.position_ids
    )
    for record, scores in zip(stage.history, replayed, strict=True):
        assert record.kept_visual.tolist() == _top_k(scores, positions, kept)


def _stage_tokens(adapter: Any, inputs: Any, stage: DecodePruning) -> list[int]:
    """Re-run the pruned generation to get its token ids (generate_streaming returns text)."""
    with torch.no_grad(), inputs.hooks_installed(), stage:
        out = adapter.model.generate(
            **inputs.generate_kwargs(), max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0
        )
    return out[0].tolist()


def test_kept_index_follows_each_layers_device() -> None:
    """--device-map spreads layers over GPUs: the index chosen at layer L − 1 must reach every later layer's
    device (here the meta device stands in for a second GPU)."""
    from vidqa.compress.dycoke_decode import _gather_keys, _RequestState

    state = _RequestState(
        config_id=0, layer=1, ordinals={0: 0, 1: 1}, prune=0.5, gate=0.9, visual_cpu=torch.arange(2, 6),
        record=False, key_length=8,
    )  # fmt: skip
    state.set_keep_index(torch.tensor([0, 1, 3, 6, 7]))
    other = torch.device("meta")
    key = torch.empty(1, 2, 8, 4, device=other)
    mask = torch.zeros(1, 1, 1, 8, dtype=torch.bool, device=other)
    kept_key, kept_value, kept_mask = _gather_keys(state, key, key.clone(), mask)
    assert kept_key.shape == kept_value.shape == (1, 2, 5, 4)
    assert kept_mask is not None and kept_mask.shape == (1, 1, 1, 5)
    assert state.index_on[other].device == other and state.keep_index.device.type == "cpu"
    state.set_keep_index(None)
    assert state.index_on == {}  # a new step forgets the old copies
