"""The newer families through the installed CLI, by alias from a local hub cache, with every method."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.tiny_recent import RECENT_FAMILIES
from vidqa.cli import app
from vidqa.models import ALIASES, CATALOG, adapter_class

ENV = {"NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}
#: One alias per new family; its tiny checkpoint is placed in the hub cache under the alias's hub id.
ALIAS_OF = {
    "qwen3_5": "qwen3.5-2b",
    "qwen3_5_moe": "qwen3.5-35b-a3b",
    "gemma4": "gemma-4-e4b",
    "internvl": "internvl3.5-2b",
    "smolvlm": "smolvlm2-2.2b",
}


@pytest.fixture(scope="module")
def cached_aliases(tiny_checkpoints: dict[str, Path], hermetic_hf_env: Path) -> dict[str, str]:
    """The tiny checkpoints as the hub cache would hold the aliases' downloads (offline, as for a user)."""
    for family, alias in ALIAS_OF.items():
        repo = hermetic_hf_env / "hub" / f"models--{ALIASES[alias].replace('/', '--')}"
        snapshot = repo / "snapshots" / ("a" * 40)
        shutil.copytree(tiny_checkpoints[family], snapshot, dirs_exist_ok=True)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text("a" * 40)
    return ALIAS_OF


@pytest.mark.parametrize("family", RECENT_FAMILIES)
@pytest.mark.parametrize("method", ["none", "vidcom2", "dycoke"])
def test_every_method_by_alias_offline(
    cached_aliases: dict[str, str], sample_clip: Path, family: str, method: str
) -> None:
    alias = cached_aliases[family]
    flags = {"none": [], "vidcom2": ["--keep", "0.25"], "dycoke": ["--keep", "0.5", "-p", "layer=1"]}[method]
    result = CliRunner().invoke(
        app,
        ["ask", str(sample_clip), "what happens?", "--model", alias, "--device", "cpu", "--frames", "8",
         "--max-new-tokens", "3", "--method", method, *flags, "--json"],
        env=ENV,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["error"] is None and record["answer"] is not None and record["generated_tokens"] >= 1
    assert (
        record["model"] == ALIASES[alias]
        and record["settings"]["model"] == f"hub:{ALIASES[alias]}@{'a' * 40}"
    )
    tokens = record["visual_tokens"]
    if method == "none":
        assert tokens["kept"] == tokens["total"]
    else:
        assert 0 < tokens["kept"] < tokens["total"]
    if method == "dycoke":
        assert record["dycoke"]["decode_steps"] >= 0 and record["dycoke"]["visual_tokens"] == tokens["kept"]


@pytest.mark.parametrize(
    ("family", "layer", "message"),
    [
        ("qwen3_5", 2, "must be in [1, 1] for this LLM's 2 full-attention layers (of 4)"),
        ("gemma4", 3, "must be in [1, 1] for this LLM's 2 full-attention layers (of 4)"),
        ("internvl", 2, "must be in [1, 1] for this 2-layer LLM"),
    ],
)
def test_what_cannot_work_is_one_clear_error(
    tiny_checkpoints: dict[str, Path], sample_clip: Path, family: str, layer: int, message: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["ask", str(sample_clip), "q", "--model", str(tiny_checkpoints[family]), "--device", "cpu",
         "--method", "dycoke", "-p", f"layer={layer}"],
        env=ENV,
    )  # fmt: skip
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_llava_video_loads_through_the_llava_onevision_adapter() -> None:
    """LLaVA-Video-7B-Qwen2-hf is a LLaVA-OneVision checkpoint (SigLIP + Qwen2-7B, 196 tokens per frame and
    one newline per video in transformers): same model_type, same adapter, an alias."""
    from transformers import LlavaOnevisionConfig

    from benchmarks.real_shapes import llava_ov_7b_config
    from vidqa.models.llava_onevision import LlavaOnevisionAdapter

    entry = CATALOG["llava-video-7b"]
    assert entry.hub_id == "llava-hf/LLaVA-Video-7B-Qwen2-hf" and entry.family == "llava_onevision"
    assert adapter_class(entry.family) is LlavaOnevisionAdapter
    config = llava_ov_7b_config()  # LLaVA-Video-7B-Qwen2 has LLaVA-OV-7B's shapes (SigLIP-so400m, Qwen2-7B)
    assert isinstance(config, LlavaOnevisionConfig)
    with torch.device("meta"):
        from transformers import LlavaOnevisionForConditionalGeneration

        model = LlavaOnevisionForConditionalGeneration(config)
    adapter = LlavaOnevisionAdapter(model, processor=None)  # type: ignore[arg-type]
    assert adapter.tokens_per_frame == 196


def test_models_lists_every_alias_with_its_facts() -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    rows = {row["alias"]: row for row in data["models"]}
    assert set(rows) == set(CATALOG)
    assert {row["family"] for row in rows.values()} >= {
        "qwen3_5",
        "gemma4",
        "internvl",
        "smolvlm",
        "qwen3_vl",
    }
    assert rows["qwen3.5-2b"]["laptop"] is True and rows["qwen3.5-9b"]["laptop"] is False
    assert rows["internvl3.5-8b"]["frames"] == {"cpu": 8, "gpu": 16}
    assert sum(row["default"] for row in rows.values()) == 1
    assert set(data["model_types"]) >= set(RECENT_FAMILIES)
