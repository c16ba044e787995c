"""CLI surface that needs no model: help stays light, usage errors exit 2, listings, model-load errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidqa.cli import app

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed entry point (python -m vidqa) in a clean, colourless, fixed-width environment."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "TERM": "dumb", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vidqa", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


@pytest.mark.parametrize("args", [["--help"], ["ask", "--help"], ["models"], ["--version"]])
def test_light_commands_do_not_import_torch_or_transformers(args: list[str]) -> None:
    code = (
        "import sys; from vidqa.cli import main; sys.argv = ['vidqa', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("HEAVY="), proc.stdout[-300:]


def test_version_and_help_mention_options() -> None:
    proc = _run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("vidqa ")
    helptext = _run("ask", "--help").stdout
    for flag in (
        "--model",
        "--frames",
        "--fps",
        "--max-frames",
        "--keep",
        "--method",
        "--preset",
        "--json",
        "--jsonl",
        "--no-stream",
        "--quiet",
        "--debug",
        "--device",
        "--dtype",
        "--attn",
    ):
        assert flag in helptext


def test_presets_listing_has_builtin_presets() -> None:
    result = runner.invoke(app, ["presets", "--json"])
    assert result.exit_code == 0
    names = {item["name"]: item for item in json.loads(result.stdout)}
    assert {"none", "vidcom2", "vidcom2-15", "dycoke"} <= set(names)
    assert names["vidcom2-15"]["keep"] == 0.15


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "clip.mp4"], "give a video and a question"),
        (["ask", "clip.mp4", "q", "--keep", "0"], "--keep must be a number in (0, 1]"),
        (["ask", "clip.mp4", "q", "--keep", "1.5"], "--keep must be a number in (0, 1]"),
        (["ask", "clip.mp4", "q", "--method", "magic"], "unknown method 'magic'"),
        (["ask", "clip.mp4", "q", "--frames", "0"], "--frames must be at least 1"),
        (["ask", "clip.mp4", "q", "--frames", "4", "--fps", "1"], "either --frames or --fps"),
        (["ask", "clip.mp4", "q", "--preset", "nope"], "unknown preset 'nope'"),
        (["ask", "clip.mp4", "q", "--json", "--jsonl"], "exclusive"),
        (
            ["ask", "clip.mp4", "q", "--attn", "flash_attention_2", "--device", "cpu"],
            "flash_attention_2 needs",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "clip.mp4", "q", "--model", "nobody/no-such-model-xyz"])
    assert result.exit_code == 2
    assert "nobody/no-such-model-xyz" in result.stderr
    assert "not (fully) in the local cache" in result.stderr or "not found" in result.stderr


def test_missing_local_model_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "clip.mp4", "q", "--model", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_unsupported_architecture_lists_supported(tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    result = runner.invoke(app, ["ask", "clip.mp4", "q", "--model", str(folder)])
    assert result.exit_code == 2
    assert "model type 'bert' is not supported" in result.stderr and "llava_onevision" in result.stderr


def test_bad_preset_file_is_rejected_with_the_key(tmp_path: Path) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text("method: vidcom2\nkeep: 0.3\nwindow: 4\n")
    result = runner.invoke(app, ["ask", "clip.mp4", "q", "--preset", str(preset)])
    assert result.exit_code == 2
    assert "unknown parameter 'window' for method vidcom2" in result.stderr and str(preset) in result.stderr


def test_cli_reference_is_in_sync_with_help() -> None:
    from vidqa.cli.reference import render

    checked_in = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    assert render() == checked_in, "docs/cli.md is stale: python -m vidqa.cli.reference > docs/cli.md"
