"""`vidqa inspect` and `Engine.inspect`: per-frame scores, budgets, JSON and the contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.tiny_recent import ALL_FAMILIES
from vidqa.cli import app
from vidqa.compress import vidcom2
from vidqa.settings import SamplingSettings


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_engine_inspect_matches_vidcom2_on_the_same_features(
    engines: dict, sample_clip: Path, family: str
) -> None:
    engine = engines[family]
    report = engine.inspect(sample_clip, keep=0.5, frames=8)
    features = engine.encode_video(sample_clip, SamplingSettings(frames=8)).visual.features
    expected = vidcom2.select(features, keep=0.5)
    assert report.budgets == expected.budgets.tolist()
    assert report.kept_indices == [idx.tolist() for idx in expected.indices]
    assert len(report.frame_times) == len(report.budgets) == features.shape[0]
    assert report.frame_times == sorted(report.frame_times)
    assert report.grid[0] * report.grid[1] == report.tokens_per_frame
    assert report.frames.shape[0] == features.shape[0]
    assert abs(sum(report.weights) - 1.0) < 1e-5


def test_inspect_cli_json_and_contact_sheet(
    tiny_checkpoints: dict[str, Path], sample_clip: Path, tmp_path: Path
):
    sheet = tmp_path / "sheet.png"
    args = [
        "inspect",
        str(sample_clip),
        "--model",
        str(tiny_checkpoints["llava_onevision"]),
        "--device",
        "cpu",
        "--frames",
        "8",
        "--keep",
        "0.25",
    ]
    result = CliRunner().invoke(app, [*args, "--json", "--save", str(sheet)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["frames"]) == 8 and data["tokens_per_frame"] == 16
    assert data["visual_tokens"]["kept"] == sum(f["budget"] for f in data["frames"])
    with Image.open(sheet) as image:
        assert image.format == "PNG"
        width, height = image.size
    # 6 columns of 224 px thumbnails (+ margins), 2 rows of square thumbnails + captions, a title strip
    assert width == 8 + 6 * (224 + 8)
    assert height == 34 + 8 + 2 * (168 + 40 + 8)

    human = CliRunner().invoke(app, args, env={"NO_COLOR": "1", "COLUMNS": "120"})
    assert human.exit_code == 0 and human.stdout == ""  # the chart is for eyes: stderr
    assert "uniqueness" in human.stderr and "visual tokens kept" in human.stderr
    assert human.stderr.count("/16") == 8


def test_inspect_rejects_bad_save_path() -> None:
    result = CliRunner().invoke(app, ["inspect", "clip.mp4", "--save", "sheet.jpg"])
    assert result.exit_code == 2 and "PNG" in result.stderr


def test_inspect_shows_the_chosen_methods_kept_tokens(
    tiny_checkpoints: dict[str, Path], sample_clip: Path, tmp_path: Path
) -> None:
    from vidqa.compress import dycoke

    args = [
        "inspect",
        str(sample_clip),
        "--model",
        str(tiny_checkpoints["llava_onevision"]),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(
        app, [*args, "--frames", "8", "--method", "dycoke", "--keep", "0.5", "--json"], env={"NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["method"] == "dycoke" and data["params"]["prune"] == dycoke.prune_for_keep(0.5)
    budgets = [frame["budget"] for frame in data["frames"]]
    kept_per_pruned_frame = int((1 - dycoke.prune_for_keep(0.5)) * 16)
    assert budgets == [16, *[kept_per_pruned_frame] * 3] * 2  # anchors whole, every 4th frame
    assert all(len(frame["kept"]) == frame["budget"] for frame in data["frames"])
    assert "uniqueness" not in data["frames"][0]  # DyCoke defines no per-frame score
    none = CliRunner().invoke(
        app, [*args, "--frames", "8", "--method", "none", "--json"], env={"NO_COLOR": "1"}
    )
    assert [frame["budget"] for frame in json.loads(none.stdout)["frames"]] == [16] * 8
