"""`vidqa bench`: configuration grid, interleaved timed rounds, medians and speed-ups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidqa.bench import BenchConfig, configurations, run_bench
from vidqa.cli import app
from vidqa.errors import UsageError
from vidqa.settings import SamplingSettings


def test_configuration_grid() -> None:
    configs, skipped = configurations(["none", "vidcom2", "dycoke"], [1, 0.25, 0.15])
    assert configs == [
        BenchConfig("none", 1.0),
        BenchConfig("vidcom2", 0.25),
        BenchConfig("vidcom2", 0.15),
        BenchConfig("dycoke", 0.25),
    ]
    assert len(skipped) == 1 and skipped[0].startswith("dycoke at keep 0.15 (") and "25 %" in skipped[0]
    configs, _ = configurations(["vidcom2"], [0.5])
    assert configs[0] == BenchConfig("none", 1.0)  # the baseline is always there
    with pytest.raises(UsageError):
        configurations(["magic"], [0.5])


def test_runs_are_interleaved_after_a_warm_up(engines: dict, sample_clip: Path) -> None:
    configs, _ = configurations(["none", "vidcom2"], [0.25])
    order: list[str] = []
    rows = run_bench(
        engines["llava_onevision"],
        sample_clip,
        "q",
        configs,
        sampling=SamplingSettings(frames=4),
        repeat=2,
        max_new_tokens=3,
        on_progress=order.append,
    )
    assert order == [
        "warm-up: none",
        "warm-up: vidcom2 0.25",
        "round 1/2: none",
        "round 1/2: vidcom2 0.25",
        "round 2/2: none",
        "round 2/2: vidcom2 0.25",
    ]
    none, vidcom = rows
    assert none["repeats"] == vidcom["repeats"] == 2
    assert none["generated_tokens"] == vidcom["generated_tokens"] == 3  # min_new_tokens = max_new_tokens
    assert vidcom["visual_tokens"]["kept"] < none["visual_tokens"]["kept"] == none["visual_tokens"]["total"]
    for row in rows:
        for name in ("decode", "vision", "prefill", "generate", "total"):
            assert row[name]["min"] <= row[name]["median"] <= row[name]["max"]
    assert none["speedup"]["total"] == pytest.approx(1.0)
    assert vidcom["speedup"]["prefill"] == pytest.approx(
        none["prefill"]["median"] / vidcom["prefill"]["median"]
    )


def test_bench_cli_json(tiny_checkpoints: dict[str, Path], sample_clip: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            str(sample_clip),
            "--model",
            str(tiny_checkpoints["qwen2_vl"]),
            "--device",
            "cpu",
            "--frames",
            "4",
            "--methods",
            "none,vidcom2",
            "--keep",
            "0.5",
            "--repeat",
            "1",
            "--max-new-tokens",
            "2",
            "--json",
        ],
        env={"NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [c["method"] for c in data["configurations"]] == ["none", "vidcom2"]
    assert "prefill ×" in result.stderr
