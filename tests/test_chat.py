"""`vidqa chat`: from a pipe (one JSON record per answer), its commands, bad questions, Ctrl-C mid-answer,
and on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from vidqa.cli import app
from vidqa.cli.chat import ChatState, converse
from vidqa.cli.output import Reporter
from vidqa.compress.registry import build_compression
from vidqa.settings import GenerationSettings, SamplingSettings

ENV = {"NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}
PROMPT = "› ".encode()


def chat(model: Path, clip: Path, lines: str, *extra: str) -> Any:
    args = [
        "chat",
        str(clip),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--frames",
        "4",
        "--max-new-tokens",
        "4",
    ]
    return CliRunner().invoke(app, [*args, "--no-cache", *extra], input=lines, env=ENV)


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_chat_from_a_pipe_answers_each_line_as_a_follow_up(tiny_checkpoints: dict, sample_clip: Path) -> None:
    result = chat(tiny_checkpoints["llava_onevision"], sample_clip, "what happens?\n\nand then?\n/history\n")
    assert result.exit_code == 0, result.stderr
    first, second = records(result.stdout)
    assert [first["turn"], second["turn"]] == [1, 2]
    assert first["prefix"]["source"] == "read" and second["prefix"]["source"] == "conversation"
    assert second["skipped"] == ["decode", "vision", "compress", "prefix"]
    assert second["prefix"]["reused_tokens"] > second["prefix"]["tokens"]  # the first turn too
    assert f"1. what happens?\n   {first['answer']}" in result.stderr  # /history


def test_chat_commands_reset_and_change_the_setting(tiny_checkpoints: dict, sample_clip: Path) -> None:
    lines = "q one\n/reset\nq two\n/keep 0.5\nq three\n/method none\nq four\n/param keep=x\n/frobnicate\n"
    lines += "/quit\nq five\n"
    result = chat(tiny_checkpoints["qwen2_vl"], sample_clip, lines, "--keep", "0.25")
    assert result.exit_code == 0, result.stderr
    out = records(result.stdout)
    assert [r["question"] for r in out] == ["q one", "q two", "q three", "q four"]  # /quit ended it
    assert [r["turn"] for r in out] == [1, 1, 2, 3]  # /reset started over; a new setting keeps the talk
    assert [(r["method"], r["keep"]) for r in out] == [("vidcom2", 0.25), ("vidcom2", 0.25), ("vidcom2", 0.5),
                                                       ("none", 1.0)]  # fmt: skip
    assert [r["prefix"]["source"] for r in out] == ["read", "memory", "read", "read"]
    assert "now vidcom2 0.5" in result.stderr and "vidqa: error: unknown command /frobnicate" in result.stderr
    assert "vidqa: error:" in result.stderr and "keep" in result.stderr  # the bad -p value, one line


def test_a_bad_question_gets_its_record_and_the_chat_goes_on(
    tiny_checkpoints: dict, sample_clip: Path
) -> None:
    result = chat(tiny_checkpoints["llava_onevision"], sample_clip, "fine\nabout <video> here\nstill fine\n")
    assert result.exit_code == 1
    out = records(result.stdout)
    assert [r["error"] is None for r in out] == [True, False, True]
    assert "placeholder" in out[1]["error"] and out[2]["turn"] == 2
    assert result.stderr.count("vidqa: error:") == 1


def test_chat_on_a_missing_video_is_one_line(tiny_checkpoints: dict, tmp_path: Path) -> None:
    result = chat(tiny_checkpoints["llava_onevision"], tmp_path / "nope.mp4", "q\n")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "nope.mp4" in result.stderr


class _StopFirstAnswer(Reporter):
    """A terminal reporter whose first streamed piece is interrupted, as Ctrl-C mid-answer."""

    def __init__(self) -> None:
        super().__init__(stdout=io.StringIO(), stderr=io.StringIO())
        self.stopped = False

    def text(self, piece: str) -> None:
        if not self.stopped:
            self.stopped = True
            raise KeyboardInterrupt
        super().text(piece)


def test_ctrl_c_mid_answer_stops_the_answer_not_the_chat(engines: dict, sample_clip: Path) -> None:
    engine = engines["llava_onevision"]
    generation = GenerationSettings(max_new_tokens=4)
    session = engine.session(
        sample_clip, build_compression("vidcom2", keep=0.5), sampling=SamplingSettings(frames=4)
    )
    state = ChatState(engine, session, generation)
    reporter = _StopFirstAnswer()
    failures = converse(state, reporter, iter(["first?", "second?"]), interactive=True, debug=False)
    assert failures == 0 and reporter.stopped
    assert [turn.question for turn in state.session.history] == ["second?"]  # the stopped one left no trace
    assert state.last is not None and state.last["turn"] == 1 and state.last["prefix"]["source"] == "memory"
    assert "vidqa: stopped: answer interrupted" in reporter.problems.file.getvalue()  # type: ignore[attr-defined]


def _read_until(fd: int, needle: bytes, seen: bytearray, start: int = 0, timeout: float = 60.0) -> int:
    """Read the terminal until `needle` appears after `start`; returns where it ends."""
    deadline = time.monotonic() + timeout
    while needle not in seen[start:]:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not seen; got {bytes(seen)[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen.extend(chunk)
    return seen.index(needle, start) + len(needle)


def _send(fd: int, keys: bytes) -> None:
    """Type at the terminal. A short pause first, as pexpect's `delaybeforesend`: a program that has just
    printed its prompt may not have set up its line editor yet, and Ctrl-C sent in that gap is lost."""
    time.sleep(0.2)
    os.write(fd, keys)


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty, so Ctrl-C there is a SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_chat_on_a_terminal_streams_and_ends_on_ctrl_d(tiny_checkpoints: dict, sample_clip: Path) -> None:
    controller, terminal = pty.openpty()
    env = {**os.environ, **ENV}
    command = [
        sys.executable,
        "-m",
        "vidqa",
        "chat",
        str(sample_clip),
        "--model",
        str(tiny_checkpoints["qwen2_vl"]),
    ]
    command += ["--device", "cpu", "--frames", "4", "--max-new-tokens", "4", "--no-cache"]
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True,
        preexec_fn=_own_terminal,
    )  # fmt: skip
    os.close(terminal)
    seen = bytearray()
    try:
        at = _read_until(controller, PROMPT, seen)
        assert b"vidqa: chat:" in seen and b"Ctrl-D to quit" in seen
        _send(controller, b"what happens?\r")
        at = _read_until(controller, b"first token", seen, at)  # streamed answer, then its timings
        at = _read_until(controller, PROMPT, seen, at)
        _send(controller, b"\x03")  # Ctrl-C at the prompt: the chat goes on
        at = _read_until(controller, b"/quit ends the chat", seen, at)
        _send(controller, b"and then?\r")
        at = _read_until(controller, b"prompt tokens reused", seen, at)
        _read_until(controller, PROMPT, seen, at)
        _send(controller, b"\x04")  # Ctrl-D: the end
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
