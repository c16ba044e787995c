"""`vidqa ask` end to end through the installed entry point on a tiny checkpoint and synthetic clips.

stdout must carry only the answer (or JSON), stderr the timing table and messages; exit codes as design.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidqa.cli import app


def vidqa(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("vidqa") or str(Path(sys.executable).parent / "vidqa")
    command = [exe] if Path(exe).exists() else [sys.executable, "-m", "vidqa"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, input=stdin, timeout=300
    )


def vidqa_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The same command through Typer's runner, in this process (no torch import per call)."""
    result = CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"})
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def model(tiny_checkpoints: dict[str, Path]) -> list[str]:
    return [
        "--model",
        str(tiny_checkpoints["llava_onevision"]),
        "--device",
        "cpu",
        "--frames",
        "4",
        "--max-new-tokens",
        "5",
    ]


def test_answer_on_stdout_table_on_stderr(model: list[str], sample_clip: Path) -> None:
    proc = vidqa("ask", str(sample_clip), "what happens ?", "--method", "none", *model)
    assert proc.returncode == 0, proc.stderr
    answer_lines = proc.stdout.splitlines()
    assert len(answer_lines) == 1 and answer_lines[0].strip()  # only the answer
    for column in ("decode", "vision", "prefill", "generate", "total", "visual tokens"):
        assert column in proc.stderr
    assert "4 frames" in proc.stderr


def test_json_record_is_the_only_stdout(model: list[str], sample_clip: Path) -> None:
    proc = vidqa_in_process("ask", str(sample_clip), "what happens ?", "--json", "--method", "none", *model)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["video"] == str(sample_clip) and record["error"] is None
    assert (
        record["frames"]["count"] == 4 and record["visual_tokens"]["kept"] == record["visual_tokens"]["total"]
    )


def test_quiet_and_no_stream(model: list[str], sample_clip: Path) -> None:
    proc = vidqa_in_process(
        "ask", str(sample_clip), "q", "--quiet", "--no-stream", "--method", "none", *model
    )
    assert proc.returncode == 0
    assert proc.stderr == "" and proc.stdout.strip()


def test_several_questions_give_several_records(model: list[str], sample_clip: Path) -> None:
    proc = vidqa_in_process(
        "ask", str(sample_clip), "-q", "who ?", "-q", "where ?", "--jsonl", "--method", "none", *model
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["question"] for r in records] == ["who ?", "where ?"]
    assert records[1]["cached"] is True


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda d: d / "absent.mp4", "no such file"),
        (lambda d: _write(d / "empty.mp4", b""), "empty file"),
        (lambda d: _write(d / "notes.mp4", b"this is not a video at all\n" * 50), "not a video file"),
    ],
)
def test_bad_input_is_one_line_exit_1(model: list[str], tmp_path: Path, make, cause: str) -> None:
    bad = make(tmp_path)
    proc = vidqa_in_process("ask", str(bad), "q", *model)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vidqa: error:")]
    assert len(errors) == 1 and str(bad) in errors[0] and cause in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_folder_without_videos_is_a_usage_error(model: list[str], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    proc = vidqa_in_process("ask", str(tmp_path), "q", *model)
    assert proc.returncode == 2 and f"no video files found in {tmp_path}" in proc.stderr


def test_batch_keeps_going_and_every_item_has_a_record(
    model: list[str], sample_clip: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.mp4"
    proc = vidqa("ask", str(missing), str(sample_clip), "q", "--jsonl", "--method", "none", *model)
    assert proc.returncode == 1
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["video"] for r in records] == [str(missing), str(sample_clip)]
    assert "no such file" in records[0]["error"] and records[0]["answer"] is None
    assert records[1]["error"] is None and records[1]["answer"] is not None


def test_debug_shows_traceback(model: list[str], tmp_path: Path) -> None:
    proc = vidqa_in_process("ask", str(tmp_path / "absent.mp4"), "q", "--debug", *model)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_dycoke_through_the_cli_with_a_preset_file(
    model: list[str], sample_clip: Path, tmp_path: Path
) -> None:
    preset = tmp_path / "dycoke-tiny.yaml"
    preset.write_text("method: dycoke\nprune: 0.5\nlayer: 1\ndecode_prune: 0.5\ngate: 1.0\n")
    proc = vidqa_in_process(
        "ask", str(sample_clip), "what happens ?", "--preset", str(preset), "--json", *model
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["method"] == "dycoke" and record["keep"] == pytest.approx(0.625)
    assert record["visual_tokens"]["kept"] < record["visual_tokens"]["total"]
    assert record["dycoke"]["pruned_steps"] >= 1


def test_keep_below_a_quarter_with_dycoke_suggests_vidcom2(model: list[str], sample_clip: Path) -> None:
    proc = vidqa_in_process("ask", str(sample_clip), "q", "--method", "dycoke", "--keep", "0.2", *model)
    assert proc.returncode == 2 and "vidcom2" in proc.stderr


# -- errors are always visible; --quiet hides only what is for eyes -----------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "cause"),
    [
        (["--keep", "0"], 2, "--keep must be"),  # usage
        (["--preset", "nope"], 2, "unknown preset 'nope'"),  # preset
        (["--model", "/no/such/model/folder"], 2, "does not exist"),  # model load
        (["--method", "dycoke", "-p", "layer=9"], 2, "'layer' must be in [1, 1]"),  # needs the model
        (["--frames", "1", "--max-frames", "1", "--model", "QWEN"], 2, "--max-frames must be at least 2"),
    ],
)
def test_errors_survive_quiet(
    model: list[str], tiny_checkpoints: dict[str, Path], sample_clip: Path, args: list[str], code: int,
    cause: str,
) -> None:  # fmt: skip
    args = [str(tiny_checkpoints["qwen2_vl"]) if a == "QWEN" else a for a in args]
    proc = vidqa_in_process("ask", str(sample_clip), "q", *model, *args, "--quiet")
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("vidqa: error:") == 1 and cause in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_item_errors_and_warnings_survive_quiet(model: list[str], sample_clip: Path, tmp_path: Path) -> None:
    from vidqa.synth import make_clip

    data = make_clip(tmp_path / "long.mp4", seconds=6, fps=10, size=(96, 64)).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # the moov atom is at the front: half the frames remain
    missing = tmp_path / "missing.mp4"
    proc = vidqa_in_process("ask", str(missing), str(truncated), "q", *model, "--quiet", "--jsonl")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines == [
        f"vidqa: error: {missing}: no such file",
        next(
            line
            for line in lines
            if line.startswith(f"vidqa: warning: {truncated}: truncated: decoded up to")
        ),
    ], proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records[1]["error"] is None and records[1]["warnings"][0].startswith("truncated:")


@pytest.mark.parametrize("command", ["inspect", "bench"])
def test_other_commands_keep_errors_under_quiet(model: list[str], tmp_path: Path, command: str) -> None:
    extra = ["--methods", "none"] if command == "bench" else []
    proc = vidqa_in_process(command, str(tmp_path / "absent.mp4"), *model[:4], *extra, "--quiet")
    assert proc.returncode == 1 and proc.stderr.startswith("vidqa: error:") and "no such file" in proc.stderr


def test_a_closed_stdout_stops_the_run_at_once(model: list[str], sample_clip: Path, tmp_path: Path) -> None:
    """`vidqa ask clips/ -q q | head -1`: once the reader is gone, no further item runs."""
    clips = []
    for index in range(12):
        clips.append(tmp_path / f"clip{index:02}.mp4")
        clips[-1].write_bytes(sample_clip.read_bytes())
    out = tmp_path / "records.jsonl"
    exe = shutil.which("vidqa") or str(Path(sys.executable).parent / "vidqa")
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.Popen(
        [exe, "ask", str(tmp_path), "-q", "q", "--method", "none", "--output", str(out), *model],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `head -1`
    _, stderr = proc.communicate(timeout=300)
    assert first.strip()
    assert proc.returncode == 141, stderr
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr
    assert len(out.read_text().splitlines()) <= 2  # the answered item (and at most the one cut off)
