"""Generation options beyond greedy: sampling with a seed, stop strings (also while streaming), finish
reasons, cancellation, the context limit and a system message."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from vidqa.compress.registry import build_compression
from vidqa.errors import PromptTooLongError, UsageError
from vidqa.settings import GenerationSettings, SamplingSettings

FRAMES = SamplingSettings(frames=4)


def _session(engines: dict, sample_clip: Path, family: str = "llava_onevision") -> Any:
    return engines[family].session(sample_clip, build_compression("vidcom2", keep=0.5), sampling=FRAMES)


def test_stop_strings_end_the_answer_and_are_never_streamed(engines: dict, sample_clip: Path) -> None:
    session = _session(engines, sample_clip)
    full = session.ask("what happens?", generation=GenerationSettings(max_new_tokens=8))
    words = full.answer.split()
    assert len(words) >= 4 and full.finish_reason == "length"
    stop = " " + words[2]  # the third word: the answer ends before it
    pieces: list[str] = []
    cut = session.ask(
        "what happens?", generation=GenerationSettings(max_new_tokens=8, stop=(stop,)), on_text=pieces.append
    )
    expected = full.answer[: full.answer.index(stop)]
    assert cut.answer == expected and "".join(pieces).strip() == expected
    assert cut.finish_reason == "stop" and cut.generated_tokens < full.generated_tokens


def test_sampling_is_reproducible_with_a_seed_and_leaves_the_global_rng_alone(
    engines: dict, sample_clip: Path
) -> None:
    import torch

    session = _session(engines, sample_clip, "qwen2_vl")
    hot = GenerationSettings(max_new_tokens=8, temperature=1.5, seed=7)
    state = torch.random.get_rng_state()
    first, again = (session.ask("what happens?", generation=hot).answer for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first == again
    seeds = [dataclasses.replace(hot, seed=seed) for seed in range(1, 6)]
    others = {session.ask("what happens?", generation=settings).answer for settings in seeds}
    assert len(others) > 1  # sampling does sample


def test_should_stop_cancels_after_the_current_token(engines: dict, sample_clip: Path) -> None:
    session = _session(engines, sample_clip)
    calls = {"n": 0}

    def after_three() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    result = session.ask(
        "what happens?", generation=GenerationSettings(max_new_tokens=20), should_stop=after_three
    )
    assert result.finish_reason == "cancelled" and result.generated_tokens == 3


def test_a_prompt_beyond_the_context_is_refused(engines: dict, sample_clip: Path) -> None:
    session = _session(engines, sample_clip)
    limit = session.engine.adapter.model.config.get_text_config().max_position_embeddings
    with pytest.raises(PromptTooLongError, match=f"context of {limit} tokens"):
        session.ask("what happens?", generation=GenerationSettings(max_new_tokens=limit))


def test_a_system_message_comes_before_the_video(engines: dict, sample_clip: Path) -> None:
    session = _session(engines, sample_clip, "qwen2_vl")
    plain = session.ask("what happens?", generation=GenerationSettings(max_new_tokens=4))
    told = session.ask("what happens?", generation=GenerationSettings(max_new_tokens=4), system="Be brief.")
    text = session.engine.adapter.chat_text("what happens?", system="Be brief.")
    assert text.index("Be brief.") < text.index("<|vision_start|>")
    assert told.prompt_tokens > plain.prompt_tokens and told.prefix["source"] == "read"  # another prefix
    assert told.warnings == ["the prompt differs before the video's end: its prefix was read again"]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"stop": ("",)}, "stop string")],
)
def test_bad_generation_options_are_usage_errors(options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        GenerationSettings(**options)
