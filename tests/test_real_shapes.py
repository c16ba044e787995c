"""The real-shape benchmark checkpoints (benchmarks/real_shapes.py) have the published shapes and load.

The 0.5B and 7B recipes are checked field by field and built on the `meta` device (no memory, no weights);
the scaled CPU recipe is built for real once and answered through `vidqa.Engine`, so a benchmark never
discovers a broken checkpoint after minutes of setup.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import real_shapes as rs
from vidqa import Engine, synth


def _text(config: object) -> object:
    return config.get_text_config()  # type: ignore[attr-defined]


def test_llava_ov_05b_has_the_published_shapes() -> None:
    config = rs.llava_ov_05b_config()
    text, vision = _text(config), config.vision_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (896, 4864, 24)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (14, 2, 152000)
    assert text.rope_parameters["rope_theta"] == 1e6 and text.tie_word_embeddings
    assert (vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers) == (1152, 4304, 26)
    assert (vision.num_attention_heads, vision.patch_size, vision.image_size) == (16, 14, 384)
    assert (config.image_token_index, config.video_token_index) == (151646, 151647)
    assert config.vision_feature_select_strategy == "full" and len(config.image_grid_pinpoints) == 36

    model = rs.build_on_meta("llava-ov-0.5b")
    assert model.model.language_model.embed_tokens.weight.shape == (152000, 896)
    assert next(model.parameters()).device.type == "meta"
    assert 0.88e9 < rs.parameter_count(model) < 0.91e9  # "0.9B"


def test_7b_recipes_have_the_published_shapes() -> None:
    llava = _text(rs.llava_ov_7b_config())
    assert (llava.hidden_size, llava.intermediate_size, llava.num_hidden_layers) == (3584, 18944, 28)
    assert (llava.num_attention_heads, llava.num_key_value_heads, llava.vocab_size) == (28, 4, 152128)
    assert not llava.tie_word_embeddings

    qwen = rs.qwen25_vl_7b_config()
    text, vision = _text(qwen), qwen.vision_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (3584, 18944, 28)
    assert (text.num_key_value_heads, text.vocab_size) == (4, 152064)
    section = text.rope_parameters["mrope_section"]
    assert section == [16, 24, 24] and sum(section) == text.hidden_size // text.num_attention_heads // 2
    assert (vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads) == (
        32,
        1280,
        3420,
        16,
    )
    assert (vision.out_hidden_size, vision.window_size, vision.fullatt_block_indexes) == (
        3584,
        112,
        [7, 15, 23, 31],
    )
    assert (qwen.video_token_id, qwen.vision_start_token_id, qwen.vision_end_token_id) == (
        151656,
        151652,
        151653,
    )

    for name in ("llava-ov-7b", "qwen2.5-vl-7b"):
        assert 7.9e9 < rs.parameter_count(rs.build_on_meta(name)) < 8.4e9, name


def test_7b_shapes_refuse_a_cpu_build(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--device cuda"):
        rs.build_checkpoint("llava-ov-7b", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_tokenizers_put_special_tokens_at_their_real_ids() -> None:
    llava = rs.llava_tokenizer()
    assert llava.convert_tokens_to_ids(["<video>", "<image>", "<|im_end|>"]) == [151647, 151646, 151645]
    qwen = rs.qwen_vl_tokenizer()
    assert qwen.convert_tokens_to_ids(["<|video_pad|>", "<|vision_start|>"]) == [151656, 151652]
    ids = llava("<|im_start|>user\n<video>\nwhat happens?<|im_end|>")["input_ids"]
    assert ids.count(151647) == 1 and llava.unk_token_id not in ids


def test_cpu_recipe_keeps_the_real_video_geometry() -> None:
    config = rs.llava_ov_cpu_config()
    text, vision = _text(config), config.vision_config
    assert (vision.image_size, vision.patch_size) == (384, 14)
    assert (vision.num_hidden_layers, vision.hidden_size) == (2, 256)
    assert (text.num_hidden_layers, text.hidden_size, text.vocab_size) == (8, 512, 152000)

    processor = rs.llava_onevision_processor(rs.llava_tokenizer())
    frames = torch.zeros(2, 360, 640, 3, dtype=torch.uint8).numpy()
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what happens?"}]}],
        add_generation_prompt=True,
    )
    batch = processor(text=[prompt], videos=[frames], return_tensors="pt")
    assert tuple(batch["pixel_values_videos"].shape) == (1, 2, 3, 384, 384)
    assert int((batch["input_ids"] == 151647).sum()) == 2 * 196 + 1  # 27x27 pooled to 14x14, + newline


def test_qwen_recipe_processor_expands_a_video_to_its_grid() -> None:
    from transformers.video_utils import VideoMetadata

    processor = rs.qwen25_vl_processor(rs.qwen_vl_tokenizer())
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what happens?"}]}],
        add_generation_prompt=True,
    )
    metadata = VideoMetadata(
        total_num_frames=2, fps=2.0, width=640, height=360, duration=1.0, frames_indices=[0, 1]
    )
    frames = torch.zeros(2, 360, 640, 3, dtype=torch.uint8).numpy()
    batch = processor(
        text=[prompt], videos=[frames], video_metadata=[metadata], do_sample_frames=False, return_tensors="pt"
    )
    # 640x360 lies inside the video pixel bounds: rounded to multiples of 28 -> 46x26 patches of 14 px
    assert batch["video_grid_thw"].tolist() == [[1, 26, 46]]
    assert int((batch["input_ids"] == 151656).sum()) == 26 * 46 // 4
    assert "mm_token_type_ids" in batch


def test_cpu_checkpoint_loads_and_answers(tmp_path: Path) -> None:
    folder = rs.build_checkpoint("llava-ov-cpu", tmp_path / "model")
    assert list(folder.glob("*.safetensors"))
    video = synth.make_clip(tmp_path / "clip.mp4", seconds=1.0, fps=4, size=(64, 48))
    engine = Engine.load(str(folder), device="cpu")
    result = engine.ask(video, "what happens?", method="vidcom2", keep=0.25, frames=2, max_new_tokens=2)
    record = result.to_dict()
    assert result.error is None and result.answer is not None
    assert record["visual_tokens"]["total"] == 2 * 196
    assert record["visual_tokens"]["kept"] < record["visual_tokens"]["total"]
    assert engine.adapter.model.config.get_text_config().num_hidden_layers == 8


def test_qwen3_vl_8b_has_the_published_shapes() -> None:
    config = rs.qwen3_vl_8b_config()
    text, vision = _text(config), config.vision_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (4096, 12288, 36)
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (32, 8, 128)
    assert text.rope_parameters["mrope_section"] == [24, 20, 20] and not text.tie_word_embeddings
    assert (vision.depth, vision.hidden_size, vision.out_hidden_size) == (27, 1152, 4096)
    assert vision.deepstack_visual_indexes == [8, 16, 24] and vision.patch_size == 16
    assert 8.76e9 < rs.parameter_count(rs.build_on_meta("qwen3-vl-8b")) < 8.78e9  # 8.767 B upstream


def test_gpu_check_dry_run_writes_its_table(tmp_path: Path) -> None:
    """The prepared GPU command, on tiny shapes of the same three families, on the CPU."""
    import json

    from benchmarks import gpu_check

    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--frames", "4", "--repeat", "1",
                           "--max-new-tokens", "3"]) == 0  # fmt: skip
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = report["rows"]
    count = len(gpu_check.settings())
    assert [r["model"] for r in rows] == [m for m in gpu_check.MODELS for _ in range(count)]
    assert {r["label"] for r in rows} == {
        "none", "vidcom2 0.25", "vidcom2 0.15", "dycoke 0.475", "vcast 0.25", "fastvid 0.25",
    }  # fmt: skip
    for row in rows:
        assert (
            row["generated_tokens"] == 3
            and row["prefill"]["median"] > 0
            and row["peak_memory_bytes"]["median"] > 0
        )
        if row["method"] != "none":
            assert row["visual_tokens"]["kept"] < row["visual_tokens"]["total"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.count("| qwen3-vl-8b | 4 |") == count and "prefill ×" in table


@pytest.mark.parametrize(
    ("name", "billions"),
    [
        ("qwen3.5-0.8b", 0.853),  # published count from the checkpoint's tensors
        ("qwen3-vl-2b", 2.128),  # published count from the checkpoint's tensors
        ("smolvlm2-2.2b", 2.247),
        ("gemma-4-e2b", 4.797),  # 5.10 B with the audio tower the recipe leaves out
        ("qwen3.5-2b", 2.213),
        ("qwen3.5-9b", 9.410),
        ("gemma-4-e4b", 7.632),
        ("internvl3.5-8b", 8.528),
    ],
)
def test_recent_recipes_have_their_parameter_counts(name: str, billions: float) -> None:
    assert rs.parameter_count(rs.build_on_meta(name)) / 1e9 == pytest.approx(billions, abs=5e-4)


def test_hybrid_recipes_keep_their_layer_pattern() -> None:
    from vidqa.compress.dycoke_decode import attention_layers

    qwen = rs.build_on_meta("qwen3.5-2b")
    assert attention_layers(qwen) == [3, 7, 11, 15, 19, 23]  # one full-attention layer in four
    gemma = rs.build_on_meta("gemma-4-e4b")
    assert attention_layers(gemma) == list(range(5, 42, 6))  # five sliding layers, then one full
