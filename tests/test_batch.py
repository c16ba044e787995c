"""Scripting over folders: items, records that survive failures and interruptions, shards, the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest.mock import patch

import pytest
from typer.testing import CliRunner

from vidqa.cache import FeatureCache
from vidqa.cli import app
from vidqa.engine import Engine
from vidqa.items import Item, expand_videos, parse_shard, read_questions, shard
from vidqa.settings import SamplingSettings
from vidqa.synth import make_audio_only, make_clip

ENV = {"NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> Path:
    """Two good clips (one without an extension), a truncated one, text named .mp4, audio only, a README."""
    folder = tmp_path_factory.mktemp("mixed")
    good = folder / "a_good.mp4"
    good.write_bytes(sample_clip.read_bytes())
    make_clip(folder / "b.mkv", seconds=2, fps=10, size=(96, 64), codec="mpeg4")
    (folder / "b.mkv").rename(folder / "b_clip_without_extension")
    data = good.read_bytes()
    (folder / "c_truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "d_text.mp4").write_text("not a video\n" * 40)
    make_audio_only(folder / "e_audio.mp4", seconds=1)
    (folder / "README.txt").write_text("clips for tests\n")
    sub = folder / "sub"
    sub.mkdir()
    make_clip(sub / "f_nested.mkv", seconds=2, fps=10, size=(96, 64), codec="mpeg4")
    return folder


@pytest.fixture(scope="module")
def model_args(tiny_checkpoints: dict[str, Path]) -> list[str]:
    return [
        "--model",
        str(tiny_checkpoints["qwen2_vl"]),
        "--device",
        "cpu",
        "--frames",
        "4",
        "--max-new-tokens",
        "3",
        "--no-cache",
    ]


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_folder_expansion_recognises_videos_by_probing(mixed_folder: Path) -> None:
    flat = expand_videos([str(mixed_folder)])
    names = [Path(p).name for p in flat]
    assert names == ["a_good.mp4", "b_clip_without_extension", "c_truncated.mp4", "d_text.mp4", "e_audio.mp4"]
    deep = expand_videos([str(mixed_folder)], recursive=True)
    assert [Path(p).name for p in deep][-1] == "f_nested.mkv"


def test_mixed_folder_every_item_one_record(
    mixed_folder: Path, model_args: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "ask",
            str(mixed_folder),
            "-q",
            "what happens ?",
            "-q",
            "who ?",
            "--output",
            str(out),
            "--jsonl",
            *model_args,
        ],
        env=ENV,
    )
    assert result.exit_code == 1, result.stderr
    records = _records(out.read_text())
    assert len(records) == 10  # 5 videos × 2 questions, each exactly once
    assert len({(r["video"], r["question"]) for r in records}) == 10
    by_name = {Path(r["video"]).name: r for r in records}
    assert by_name["a_good.mp4"]["error"] is None and by_name["b_clip_without_extension"]["error"] is None
    assert "no video stream" in by_name["e_audio.mp4"]["error"]
    assert "not a video file" in by_name["d_text.mp4"]["error"]
    truncated = by_name["c_truncated.mp4"]  # decodes what is there, and says so
    assert truncated["error"] is None and truncated["warnings"][0].startswith("truncated: decoded up to")
    assert result.stdout == ""  # records went to the file instead
    errors = [line for line in result.stderr.splitlines() if line.startswith("vidqa: error:")]
    assert all(Path(r["video"]).name in "".join(errors) for r in records if r["error"])


def test_questions_files_and_stdin(sample_clip: Path, model_args: list[str], tmp_path: Path) -> None:
    plain = tmp_path / "questions.txt"
    plain.write_text("# comment\nwhat happens ?\n\nwho ?\n")
    shared, explicit = read_questions(plain)
    assert shared == ["what happens ?", "who ?"] and explicit == []
    jsonl = tmp_path / "questions.jsonl"
    jsonl.write_text(
        json.dumps({"video": str(sample_clip), "question": "where ?"})
        + "\n"
        + json.dumps({"question": "why ?"})
        + "\n"
    )
    shared, explicit = read_questions(jsonl)
    assert shared == ["why ?"] and explicit == [Item(str(sample_clip), "where ?")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "x.mp4"}\n')
    with pytest.raises(Exception, match="line 1"):
        read_questions(bad)

    result = CliRunner().invoke(
        app,
        ["ask", "-", "--questions", str(plain), "--jsonl", *model_args],
        input=f"{sample_clip}\n",
        env=ENV,
    )
    assert result.exit_code == 0, result.stderr
    assert [r["question"] for r in _records(result.stdout)] == ["what happens ?", "who ?"]


def test_shards_partition_the_items() -> None:
    items = [Item(f"clips/{v}.mp4", q) for v in range(40) for q in ("a", "b", "c")]
    shards = [shard(items, i, 3) for i in range(3)]
    merged = [item for part in shards for item in part]
    assert sorted(merged, key=items.index) == items  # every item in exactly one shard
    assert all(len(s) > 0 for s in shards)
    assert shard(items, 1, 3) == shard(list(items), 1, 3)  # deterministic
    for spec in ("3/3", "a/b", "1", "-1/2"):
        with pytest.raises(Exception, match="--shard"):
            parse_shard(spec)


def test_resume_after_sigterm_gives_every_record_once(
    mixed_folder: Path, sample_clip: Path, model_args: list[str], tmp_path: Path
) -> None:
    clips = []
    for i in range(6):
        clip = tmp_path / f"clip{i}.mp4"
        clip.write_bytes(sample_clip.read_bytes())
        clips.append(str(clip))
    out = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "vidqa",
        "ask",
        *clips,
        "-q",
        "what happens ?",
        "--output",
        str(out),
        *model_args,
    ]
    env = {**os.environ, **ENV}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr  # 128 + SIGTERM, as schedulers expect
    assert "re-run with --resume" in stderr
    partial = out.read_text()
    assert partial.endswith("\n")
    first = _records(partial)  # every line is a complete record
    assert 2 <= len(first) < 6

    with out.open("a") as handle:  # a run killed mid-write (SIGKILL) leaves half a line: resume repairs it
        handle.write('{"video": "half a rec')
    result = CliRunner().invoke(
        app, ["ask", *clips, "-q", "what happens ?", "--output", str(out), "--resume", *model_args], env=ENV
    )
    assert result.exit_code == 0, result.stderr
    final = _records(out.read_text())
    assert sorted(r["video"] for r in final) == sorted(clips)  # all, no duplicates, no partial line
    assert f"{len(first)} item(s) already in" in result.stderr


def test_feature_cache_hit_skips_decode_and_vision(
    tiny_checkpoints: dict[str, Path], sample_clip: Path, tmp_path: Path
) -> None:
    cache = FeatureCache(tmp_path / "cache", max_bytes=10**8)
    engine = Engine.load(str(tiny_checkpoints["qwen3_vl"]), device="cpu", cache=cache)
    cold = engine.ask(sample_clip, "what happens ?", method="vidcom2", keep=0.5, frames=4, max_new_tokens=4)
    with (
        patch.object(engine.adapter, "encode", wraps=engine.adapter.encode) as encode,
        patch.object(engine.adapter, "_process", wraps=engine.adapter._process) as pixels,
    ):
        warm = engine.ask(sample_clip, "another one", method="vidcom2", keep=0.5, frames=4, max_new_tokens=4)
        same = engine.ask(
            sample_clip, "what happens ?", method="vidcom2", keep=0.5, frames=4, max_new_tokens=4
        )
    assert encode.call_count == 0 and pixels.call_count == 0  # no processor over pixels on a hit
    assert warm.cached and same.cached and not cold.cached
    assert same.answer == cold.answer and warm.visual_kept == cold.visual_kept
    assert warm.frame_times == cold.frame_times
    # the second run finds the video prefix on disk too: no selection, no LLM pass over the video
    assert warm.skipped == ["decode", "vision", "compress", "prefix"] and warm.prefix["source"] == "disk"
    assert warm.timings.cache_read > 0 and warm.timings.decode == warm.timings.prefix == 0
    assert cold.timings.cache_write > 0 and cold.timings.vision > 0 and cold.timings.cache_read > 0

    key = engine.cache_key(sample_clip, SamplingSettings(frames=4))
    assert key != engine.cache_key(sample_clip, SamplingSettings(frames=6))
    other = Engine.load(str(tiny_checkpoints["qwen2_vl"]), device="cpu", cache=cache)
    assert key != other.cache_key(sample_clip, SamplingSettings(frames=4))
    half = Engine.load(str(tiny_checkpoints["qwen3_vl"]), device="cpu", dtype="bfloat16", cache=cache)
    assert key != half.cache_key(sample_clip, SamplingSettings(frames=4))

    # A damaged feature entry is ignored and rebuilt.
    entry = next(
        path
        for path in (tmp_path / "cache").rglob("tensors.safetensors")
        if '"kind": "features"' in (path.parent / "meta.json").read_text()
    )
    entry.write_bytes(entry.read_bytes()[:100])
    with patch.object(engine.adapter, "encode", wraps=engine.adapter.encode) as encode:
        rebuilt = engine.ask(
            sample_clip, "what happens ?", method="vidcom2", keep=0.5, frames=4, max_new_tokens=4
        )
    assert not rebuilt.cached and encode.call_count == 1 and rebuilt.answer == cold.answer
    assert engine.ask(sample_clip, "q", frames=4, max_new_tokens=1).cached


def test_cache_commands(tmp_path: Path, tiny_checkpoints: dict[str, Path], sample_clip: Path) -> None:
    cache_dir = tmp_path / "c"
    args = [
        "ask",
        str(sample_clip),
        "q",
        "--model",
        str(tiny_checkpoints["llava_onevision"]),
        "--device",
        "cpu",
        "--frames",
        "4",
        "--max-new-tokens",
        "2",
        "--cache-dir",
        str(cache_dir),
        "--jsonl",
    ]
    first = CliRunner().invoke(app, args, env=ENV)
    second = CliRunner().invoke(app, args, env=ENV)
    assert [_records(r.stdout)[0]["cached"] for r in (first, second)] == [False, True]
    info = CliRunner().invoke(app, ["cache", "info", "--cache-dir", str(cache_dir), "--json"], env=ENV)
    data = json.loads(info.stdout)
    assert info.exit_code == 0 and data["entries"] == 2 and data["kinds"] == {"features": 1, "prefix": 1}
    cleared = CliRunner().invoke(app, ["cache", "clear", "--cache-dir", str(cache_dir)], env=ENV)
    assert cleared.exit_code == 0 and cleared.stdout == f"removed 2 entries from {cache_dir}\n"
    info = CliRunner().invoke(app, ["cache", "info", "--cache-dir", str(cache_dir), "--json"], env=ENV)
    assert json.loads(info.stdout)["entries"] == 0


def test_progress_bar_only_on_a_terminal() -> None:
    import io

    from rich.console import Console

    from vidqa.ui import BatchProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    progress = BatchProgress(console, total=2, enabled=True)
    progress.advance(failed=True)
    progress.advance(failed=False)
    progress.stop()
    text = buffer.getvalue()
    assert "2/2" in text and "1 failed" in text
    quiet = BatchProgress(Console(file=io.StringIO(), force_terminal=False), total=2, enabled=True)
    assert not quiet.enabled  # not a terminal: no bar (logs stay clean)
