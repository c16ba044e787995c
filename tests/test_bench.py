"""`vidqa bench`: configuration grid, interleaved timed rounds, medians and speed-ups."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from unittest.mock import patch

import pytest
from typer.testing import CliRunner

from vidqa.bench import configurations, run_bench
from vidqa.cli import app
from vidqa.compress.registry import build_compression
from vidqa.errors import UsageError
from vidqa.settings import GenerationSettings, SamplingSettings


def test_configuration_grid() -> None:
    configs, skipped = configurations(["none", "vidcom2", "dycoke"], [1, 0.25, 0.15])
    assert [(c.method, c.keep) for c in configs] == [
        ("none", 1.0),
        ("vidcom2", 0.25),
        ("vidcom2", 0.15),
        ("dycoke", 0.25),
    ]
    assert len(skipped) == 1 and skipped[0].startswith("dycoke at keep 0.15 (") and "25 %" in skipped[0]
    configs, _ = configurations(["vidcom2"], [0.5])
    assert configs[0] == build_compression("none")  # the baseline is always there, first
    with pytest.raises(UsageError, match="unknown method"):
        configurations(["magic"], [0.5])


def test_params_reach_the_methods_that_have_them_and_presets_join_the_grid() -> None:
    from vidqa.presets import load_preset

    configs, _ = configurations(
        ["vidcom2", "dycoke"], [0.5], params={"layer": 2}, extra=[load_preset("vidcom2-15").settings()]
    )
    assert [c.label for c in configs] == ["none", "vidcom2 0.5", "dycoke 0.5", "vidcom2 0.15"]
    assert configs[2].params.layer == 2  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="no benchmarked method"):
        configurations(["vidcom2"], [0.5], params={"layer": 2})


def test_runs_are_interleaved_after_a_warm_up(engines: dict, sample_clip: Path) -> None:
    from vidqa.session import Session

    configs, _ = configurations(["none", "vidcom2"], [0.25])
    order: list[str] = []
    seen: list[dict] = []
    real_ask = Session.ask

    def spy(self: Session, *args: object, **kwargs: object) -> object:
        result = real_ask(self, *args, **kwargs)
        seen.append(result.to_dict())
        return result

    with patch.object(Session, "ask", spy):
        rows = run_bench(
            engines["llava_onevision"],
            sample_clip,
            "q",
            configs,
            sampling=SamplingSettings(frames=4),
            generation=GenerationSettings(max_new_tokens=3, min_new_tokens=3),
            repeat=2,
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
    assert none["generated_tokens"] == vidcom["generated_tokens"] == 3
    assert vidcom["visual_tokens"]["kept"] < none["visual_tokens"]["kept"] == none["visual_tokens"]["total"]
    timed = {"none": seen[2::2], "vidcom2": seen[3::2]}  # the warm-up runs are not counted
    for row in rows:
        runs = timed[row["method"]]
        for name in ("decode", "vision", "prefix", "generate", "total"):
            values = [r["timings"][name] for r in runs]
            assert row[name] == {"median": statistics.median(values), "min": min(values), "max": max(values)}
        whole = [r["timings"]["prefix"] + r["timings"]["prefill"] for r in runs]  # bench's prefill: all of it
        assert row["prefill"] == {"median": statistics.median(whole), "min": min(whole), "max": max(whole)}
        assert all(r["timings"]["decode"] > 0 and r["skipped"] == [] for r in runs)  # every run is cold
    prefill = [
        statistics.median(r["timings"]["prefix"] + r["timings"]["prefill"] for r in timed[m])
        for m in ("none", "vidcom2")
    ]
    assert vidcom["speedup"]["prefill"] == pytest.approx(prefill[0] / prefill[1])


def test_bench_refuses_a_cached_engine(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from vidqa.cache import FeatureCache
    from vidqa.engine import Engine

    engine = Engine.load(str(tiny_checkpoints["qwen2_vl"]), device="cpu", cache=FeatureCache(tmp_path))
    with pytest.raises(UsageError, match="cold"):
        run_bench(
            engine, "x.mp4", "q", [build_compression("none")], sampling=SamplingSettings(),
            generation=GenerationSettings(),
        )  # fmt: skip


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
            "none,vidcom2,dycoke",
            "-p",
            "layer=1",
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
    assert [c["method"] for c in data["configurations"]] == ["none", "vidcom2", "dycoke"]
    assert data["configurations"][2]["params"]["layer"] == 1
    assert data["settings"]["sampling"]["frames"] == 4
    assert "prefill ×" in result.stderr
