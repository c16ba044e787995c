"""Prefix KV reuse: a question after the first reads only its own tokens, in memory, from disk, and in a
conversation, and answers exactly what a cold full-prompt prefill answers, on every family and method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.tiny_recent import ALL_FAMILIES
from vidqa.cache import FeatureCache
from vidqa.compress.registry import Compression, build_compression
from vidqa.engine import Engine
from vidqa.errors import UsageError
from vidqa.generation import generate_streaming
from vidqa.models.base import Turn
from vidqa.prefix import cache_entry, croppable, restore_cache
from vidqa.session import Session
from vidqa.settings import GenerationSettings, SamplingSettings

QUESTIONS = ("what happens?", "video shows the a", "what 12 happens? the video")
FRAMES = SamplingSettings(frames=4)
#: forced length, so a reuse that shifted the cache cannot hide behind an early end-of-sequence
GENERATION = GenerationSettings(max_new_tokens=6, min_new_tokens=6)
SETTINGS = {
    "none": lambda: build_compression("none"),
    "vidcom2": lambda: build_compression("vidcom2", keep=0.5),
    "dycoke": lambda: build_compression("dycoke", keep=0.5, params={"layer": 1}),  # decode stage on
    "vcast": lambda: build_compression("vcast", keep=0.5),
}


def cold_answer(
    session: Session,
    question: str,
    history: tuple[Turn, ...] = (),
    generation: GenerationSettings = GENERATION,
) -> str:
    """The same question through one full-prompt generate (no prefix, no reuse): the reference."""
    adapter = session.engine.adapter
    prompt = adapter.prompt(question, session.encoding.layout, history)
    t, m, _ = session.encoding.visual.shape
    selection = session.selection
    inputs = adapter.assemble(
        prompt, session.encoding.visual, None if selection.kept == t * m else selection.mask(m)
    )
    stage = session.compression.decode_stage(adapter.model, inputs.visual_positions)
    with torch.inference_mode():
        answer, _ = generate_streaming(
            adapter, inputs, clock=session.engine.clock, start=0.0, generation=generation, decode_stage=stage
        )
    return answer


def cached_engine(engine: Any, directory: Path, max_bytes: int = 10**8) -> Engine:
    """The session's tiny engine with an on-disk cache (the model is shared, not loaded again)."""
    return Engine(
        engine.adapter, model_name=engine.model_name, cache=FeatureCache(directory, max_bytes=max_bytes)
    )


@pytest.mark.parametrize("method", list(SETTINGS))
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_reused_prefix_answers_like_a_cold_full_prefill(
    engines: dict, sample_clip: Path, family: str, method: str
) -> None:
    session = engines[family].session(sample_clip, SETTINGS[method](), sampling=FRAMES)
    results = [session.ask(q, generation=GENERATION) for q in QUESTIONS]
    assert [r.prefix["source"] for r in results] == ["read", "memory", "memory"]
    assert results[0].timings.prefix > 0 and all(r.timings.prefix == 0 for r in results[1:])
    for question, result in zip(QUESTIONS, results, strict=True):
        assert result.answer == cold_answer(session, question), question
        assert result.generated_tokens == GENERATION.max_new_tokens
    if method == "dycoke":  # the decode stage ran on the reused cache as on a cold one
        assert all(r.to_dict()["dycoke"]["pruned_steps"] > 0 for r in results)


def test_a_second_question_feeds_the_llm_only_its_own_tokens(engines: dict, sample_clip: Path) -> None:
    engine = engines["qwen2_vl"]
    session = engine.session(sample_clip, build_compression("vidcom2", keep=0.5), sampling=FRAMES)
    session.ask(QUESTIONS[0], generation=GENERATION)
    lengths: list[int] = []
    decoder = engine.adapter.model.get_decoder()

    def record(_module: Any, _args: tuple, kwargs: dict) -> None:
        lengths.append(int(kwargs["inputs_embeds"].shape[1]))

    handle = decoder.register_forward_pre_hook(record, with_kwargs=True)
    try:
        result = session.ask(QUESTIONS[1], generation=GENERATION)
    finally:
        handle.remove()
    prompt = engine.adapter.prompt(QUESTIONS[1], session.encoding.layout)
    full = int(prompt["input_ids"].shape[1]) - (result.visual_total - result.visual_kept)
    assert lengths[0] == full - result.prefix["tokens"]  # the question's tokens, nothing of the video
    assert result.prefix["reused_tokens"] == result.prefix["tokens"] > result.visual_kept
    assert lengths[1:] == [1] * (GENERATION.max_new_tokens - 1)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_follow_ups_see_the_conversation_and_answer_like_a_cold_prefill(
    engines: dict, sample_clip: Path, family: str
) -> None:
    engine = engines[family]
    session = engine.session(sample_clip, build_compression("vidcom2", keep=0.5), sampling=FRAMES)
    first = session.ask(QUESTIONS[0], generation=GENERATION, follow_up=True)
    second = session.ask(QUESTIONS[1], generation=GENERATION, follow_up=True)
    history = (Turn(QUESTIONS[0], first.answer),)
    # the follow-up's prompt holds the first question and its answer, after the video
    text = engine.adapter.chat_text(QUESTIONS[1], history)
    assert text.index(QUESTIONS[0]) < text.index(first.answer) < text.index(QUESTIONS[1])
    assert second.answer == cold_answer(session, QUESTIONS[1], history)
    assert session.history == [Turn(QUESTIONS[0], first.answer), Turn(QUESTIONS[1], second.answer)]
    if croppable(prefix_cache(session)):
        # attention-only models continue from the previous answer's cache: more than the video is reused
        assert second.prefix["source"] == "conversation"
        assert second.prefix["reused_tokens"] > second.prefix["tokens"]
    else:  # sliding-window or linear-attention layers cannot be cut back: the video prefix is reused
        assert second.prefix["source"] == "memory"
    session.reset()
    again = session.ask(QUESTIONS[1], generation=GENERATION, follow_up=True)
    assert again.answer == cold_answer(session, QUESTIONS[1]) and session.history == [
        Turn(QUESTIONS[1], again.answer)
    ]


def prefix_cache(session: Session) -> Any:
    assert session._prefix is not None
    return session._prefix.cache


def test_an_interrupted_follow_up_leaves_the_conversation_as_it_was(engines: dict, sample_clip: Path) -> None:
    session = engines["llava_onevision"].session(
        sample_clip, build_compression("vidcom2", keep=0.5), sampling=FRAMES
    )
    first = session.ask(QUESTIONS[0], generation=GENERATION, follow_up=True)

    def stop(_piece: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.ask(QUESTIONS[1], generation=GENERATION, follow_up=True, on_text=stop)
    assert session.history == [Turn(QUESTIONS[0], first.answer)]
    second = session.ask(QUESTIONS[2], generation=GENERATION, follow_up=True)
    assert second.answer == cold_answer(session, QUESTIONS[2], (Turn(QUESTIONS[0], first.answer),))


# -- on disk ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["vidcom2", "dycoke"])
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_a_new_session_reads_the_prefix_from_disk(
    engines: dict, sample_clip: Path, tmp_path: Path, family: str, method: str
) -> None:
    engine = cached_engine(engines[family], tmp_path / "cache")
    first = engine.session(sample_clip, SETTINGS[method](), sampling=FRAMES).ask(
        QUESTIONS[0], generation=GENERATION
    )
    assert first.prefix["source"] == "read" and first.timings.prefix_write > 0
    assert engine.cache is not None and engine.cache.info().kinds == {"features": 1, "prefix": 1}
    later = engine.session(sample_clip, SETTINGS[method](), sampling=FRAMES)
    result = later.ask(QUESTIONS[1], generation=GENERATION)
    assert result.prefix["source"] == "disk" and result.cached
    assert result.skipped == ["decode", "vision", "compress", "prefix"]
    assert result.timings.vision == result.timings.compress == result.timings.prefix == 0
    assert result.timings.prefix_write == 0 and result.visual_kept == first.visual_kept
    assert result.answer == cold_answer(later, QUESTIONS[1])


def test_prefix_entry_round_trips_every_cache_layer(engines: dict, sample_clip: Path) -> None:
    """Qwen3.5 holds linear-attention states, Gemma 4 sliding windows: all restored exactly."""
    for family in ("qwen3_5", "gemma4", "llava_onevision"):
        session = engines[family].session(
            sample_clip, build_compression("vidcom2", keep=0.5), sampling=FRAMES
        )
        session.ask(QUESTIONS[0], generation=GENERATION)
        assert session._prefix is not None
        tensors, meta = cache_entry(session._prefix)
        restored = restore_cache(session.engine.adapter.model, tensors, meta)
        assert restored is not None and restored.length == session._prefix.length
        for old, new in zip(session._prefix.cache.layers, restored.cache.layers, strict=True):
            assert type(old) is type(new)
            for name, value in vars(old).items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(value, getattr(new, name)), (family, name)
                elif isinstance(value, dict):
                    for key, item in value.items():
                        got = getattr(new, name)[key]
                        assert torch.equal(item, got) if isinstance(item, torch.Tensor) else item == got


@pytest.mark.parametrize(
    ("family", "dtype"),
    [
        ("llava_onevision", "float32"),
        ("qwen2_vl", "float32"),
        ("qwen3_5", "float32"),
        ("qwen3_5", "bfloat16"),
    ],
)
def test_the_documented_entry_size_formula_matches_real_entries(
    engines: dict, tiny_checkpoints: dict, sample_clip: Path, family: str, dtype: str
) -> None:
    from benchmarks.prefix_sizes import entry_bytes

    engine = (
        engines[family] if dtype == "float32" else Engine.load(str(tiny_checkpoints[family]), dtype=dtype)
    )
    session = engine.session(sample_clip, build_compression("vidcom2", keep=0.5), sampling=FRAMES)
    session.ask(QUESTIONS[0], generation=GENERATION)
    assert session._prefix is not None
    tensors, _ = cache_entry(session._prefix)
    stored = sum(t.numel() * t.element_size() for name, t in tensors.items() if name.startswith("layer."))
    config = session.engine.adapter.model.config.get_text_config()
    width = 4 if dtype == "float32" else 2
    assert stored == entry_bytes(config, session._prefix.length, bytes_per_value=width)


def test_a_prefix_entry_for_another_layout_is_not_used(engines: dict, sample_clip: Path) -> None:
    session = engines["llava_onevision"].session(
        sample_clip, build_compression("vidcom2", keep=0.5), sampling=FRAMES
    )
    session.ask(QUESTIONS[0], generation=GENERATION)
    assert session._prefix is not None
    tensors, meta = cache_entry(session._prefix)
    other_model = engines["qwen3_5"].adapter.model  # different layers: the entry does not fit
    assert restore_cache(other_model, tensors, meta) is None


def test_a_damaged_prefix_entry_is_read_again_and_replaced(
    engines: dict, sample_clip: Path, tmp_path: Path
) -> None:
    engine = cached_engine(engines["qwen3_vl"], tmp_path / "cache")
    engine.session(sample_clip, SETTINGS["vidcom2"](), sampling=FRAMES).ask(
        QUESTIONS[0], generation=GENERATION
    )
    prefix_dirs = [p for p in (tmp_path / "cache").glob("*/*") if '"prefix"' in (p / "meta.json").read_text()]
    assert len(prefix_dirs) == 1
    tensors_file = prefix_dirs[0] / "tensors.safetensors"
    data = bytearray(tensors_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tensors_file.write_bytes(bytes(data))
    session = engine.session(sample_clip, SETTINGS["vidcom2"](), sampling=FRAMES)
    result = session.ask(QUESTIONS[1], generation=GENERATION)
    assert result.prefix["source"] == "read" and result.answer == cold_answer(session, QUESTIONS[1])
    assert engine.cache is not None and engine.cache.info().kinds == {"features": 1, "prefix": 1}
    again = engine.session(sample_clip, SETTINGS["vidcom2"](), sampling=FRAMES).ask(
        QUESTIONS[2], generation=GENERATION
    )
    assert again.prefix["source"] == "disk"


def test_the_prefix_key_covers_the_setting_and_the_video(
    engines: dict, sample_clip: Path, tmp_path: Path
) -> None:
    engine = cached_engine(engines["qwen2_5_vl"], tmp_path / "cache")

    def source(compression: Compression, sampling: SamplingSettings = FRAMES) -> str:
        return (
            engine.session(sample_clip, compression, sampling=sampling)
            .ask("q ?", generation=GENERATION)
            .prefix["source"]
        )

    assert source(build_compression("vidcom2", keep=0.5)) == "read"
    assert source(build_compression("vidcom2", keep=0.5)) == "disk"
    assert source(build_compression("vidcom2", keep=0.25)) == "read"  # another keep
    assert source(build_compression("dycoke", keep=0.5, params={"layer": 1})) == "read"  # another method
    dycoke = {"layer": 1, "gate": 0.5}
    assert source(build_compression("dycoke", keep=0.5, params=dycoke)) == "read"  # another parameter
    assert (
        source(build_compression("vidcom2", keep=0.5), SamplingSettings(frames=6)) == "read"
    )  # other frames
    assert engine.cache is not None and engine.cache.info().kinds == {"features": 2, "prefix": 5}


def test_a_prefix_larger_than_the_bound_is_not_written(
    engines: dict, sample_clip: Path, tmp_path: Path
) -> None:
    big = cached_engine(engines["llava_onevision"], tmp_path / "big")
    big.session(sample_clip, SETTINGS["none"](), sampling=FRAMES).ask(QUESTIONS[0], generation=GENERATION)
    assert big.cache is not None
    sizes = {_kind(p): sum(f.stat().st_size for f in p.iterdir()) for p in (tmp_path / "big").glob("*/*")}
    assert sizes["prefix"] > sizes["features"]
    small = cached_engine(engines["llava_onevision"], tmp_path / "small", max_bytes=sizes["prefix"] - 1)
    result = small.session(sample_clip, SETTINGS["none"](), sampling=FRAMES).ask(
        QUESTIONS[0], generation=GENERATION
    )
    assert result.error is None and result.warnings == []
    assert small.cache is not None and small.cache.info().kinds == {"features": 1}


def _kind(entry: Path) -> str:
    return "prefix" if '"prefix"' in (entry / "meta.json").read_text() else "features"


def test_two_writers_of_one_prefix_leave_one_good_entry(
    engines: dict, sample_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second process that looked before the first one wrote writes the same key: one entry, still good."""
    engine = cached_engine(engines["qwen2_vl"], tmp_path / "cache")
    engine.session(sample_clip, SETTINGS["vidcom2"](), sampling=FRAMES).ask(
        QUESTIONS[0], generation=GENERATION
    )
    assert engine.cache is not None
    real_get = engine.cache.get
    features = engine.cache_key(sample_clip, FRAMES)  # the features are found, the prefix is missed
    monkeypatch.setattr(engine.cache, "get", lambda key: real_get(key) if key == features else None)
    late = engine.session(sample_clip, SETTINGS["vidcom2"](), sampling=FRAMES)
    result = late.ask(QUESTIONS[1], generation=GENERATION)
    assert result.prefix["source"] == "read" and result.warnings == []
    monkeypatch.undo()
    assert engine.cache.info().kinds == {"features": 1, "prefix": 1}
    reread = engine.session(sample_clip, SETTINGS["vidcom2"](), sampling=FRAMES)
    final = reread.ask(QUESTIONS[2], generation=GENERATION)
    assert final.prefix["source"] == "disk" and final.answer == cold_answer(reread, QUESTIONS[2])


# -- API -------------------------------------------------------------------------------------------------
def test_session_takes_a_method_by_name(engines: dict, sample_clip: Path) -> None:
    engine = engines["llava_onevision"]
    session = engine.session(sample_clip, method="dycoke", keep=0.5, params={"layer": 1}, sampling=FRAMES)
    assert session.compression == build_compression("dycoke", keep=0.5, params={"layer": 1})
    assert engine.session(session.encoding).compression == build_compression("vidcom2", keep=0.25)
    with pytest.raises(UsageError, match="either"):
        engine.session(session.encoding, build_compression("none"), method="vidcom2")


def test_a_single_question_without_a_cache_reads_the_prompt_in_one_piece(
    engines: dict, sample_clip: Path, tmp_path: Path
) -> None:
    """Nothing would reuse the prefix: no split, no kept cache. With a disk cache, the prefix is kept."""
    engine = engines["qwen3_vl"]
    alone = engine.ask(sample_clip, QUESTIONS[0], method="vidcom2", keep=0.5, frames=4, max_new_tokens=6)
    assert alone.prefix["source"] == "none" and alone.timings.prefix == 0 and "prefix" not in alone.skipped
    session = engine.session(sample_clip, build_compression("vidcom2", keep=0.5), sampling=FRAMES)
    assert alone.answer == cold_answer(session, QUESTIONS[0], generation=GenerationSettings(max_new_tokens=6))
    stored = cached_engine(engine, tmp_path / "cache")
    kept = stored.ask(sample_clip, QUESTIONS[0], method="vidcom2", keep=0.5, frames=4, max_new_tokens=6)
    assert kept.prefix["source"] == "read" and kept.answer == alone.answer


def test_prefix_entries_are_evicted_least_recently_used_first(
    engines: dict, sample_clip: Path, tmp_path: Path
) -> None:
    first, second = SETTINGS["vidcom2"](), SETTINGS["dycoke"]()
    probe = cached_engine(engines["qwen2_vl"], tmp_path / "probe")
    for setting in (first, second):
        probe.session(sample_clip, setting, sampling=FRAMES).ask(QUESTIONS[0], generation=GENERATION)
    total = sum(f.stat().st_size for entry in (tmp_path / "probe").glob("*/*") for f in entry.iterdir())
    engine = cached_engine(engines["qwen2_vl"], tmp_path / "cache", max_bytes=total - 1)  # one entry too many

    def source(setting: Compression) -> str:
        session = engine.session(sample_clip, setting, sampling=FRAMES)
        return session.ask(QUESTIONS[1], generation=GENERATION).prefix["source"]

    assert [source(first), source(second)] == ["read", "read"]  # the second write evicted the first prefix
    assert engine.cache is not None and engine.cache.info().kinds == {"features": 1, "prefix": 1}
    assert [source(second), source(first)] == ["disk", "read"]


def test_text_before_the_video_that_depends_on_the_question_is_read_again_and_said(
    engines: dict, sample_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No supported template does this; a custom one might: reuse what is shared (the selection), say so."""
    engine = engines["llava_onevision"]
    adapter = engine.adapter
    template = adapter.chat_text
    monkeypatch.setattr(
        adapter, "chat_text", lambda q, history=(), system=None: f"{q} " + template(q, history, system)
    )
    session = engine.session(sample_clip, SETTINGS["vidcom2"](), sampling=FRAMES)
    first = session.ask(QUESTIONS[0], generation=GENERATION)
    second = session.ask(QUESTIONS[1], generation=GENERATION)
    assert first.warnings == [] and second.prefix["source"] == "read" and "compress" in second.skipped
    assert second.warnings == ["the prompt differs before the video's end: its prefix was read again"]
    assert second.answer == cold_answer(session, QUESTIONS[1])
