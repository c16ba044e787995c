"""The CLI → library contract, with a recording fake engine: exactly which settings reach the library.

No model runs here: `load_engine` is replaced by a fake that records every call and answers with canned
results, so precedence rules (flag > preset > default), conflicts, resume and output shapes are tested
cheaply and exactly (the llm / fastapi-cli way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vidqa.cli import app
from vidqa.compress.registry import Compression
from vidqa.items import Item
from vidqa.record import Result
from vidqa.settings import GenerationSettings, SamplingSettings

ENV = {"NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}


class FakeEngine:
    """Records what the CLI hands it; answers every item with 'an answer'."""

    def __init__(
        self, options: Any, *, fail_on: set[str] | None = None, stop_after: int | None = None
    ) -> None:
        self.options = options
        self.model_name = options.model
        self.device = "cpu"
        self.cache = None
        self.calls: list[tuple[str, Any]] = []
        self.fail_on = fail_on or set()
        self.stop_after = stop_after

    def validate(self, compression: Compression) -> None:
        self.calls.append(("validate", compression))

    def settings(self, sampling: SamplingSettings, generation: GenerationSettings) -> dict[str, Any]:
        return {
            "model": f"folder:{self.model_name}",
            "dtype": "float32",
            "sampling": sampling.to_dict(),
            "max_new_tokens": generation.max_new_tokens,
        }

    def run(
        self,
        items: list[Item],
        *,
        compression: Compression,
        sampling: SamplingSettings,
        generation: GenerationSettings,
        on_text: Any = None,
    ) -> Iterator[Result]:
        self.calls.append(
            (
                "run",
                {
                    "items": list(items),
                    "compression": compression,
                    "sampling": sampling,
                    "generation": generation,
                },
            )
        )
        for count, item in enumerate(items):
            if self.stop_after is not None and count == self.stop_after:
                raise KeyboardInterrupt
            common = dict(
                method=compression.method,
                keep=compression.keep,
                params=compression.params.model_dump(),
                settings=self.settings(sampling, generation),
            )
            if item.video in self.fail_on:
                yield Result.failure(item.video, item.question, f"{item.video}: no such file", **common)
                continue
            callback = on_text(item) if on_text else None
            if callback:
                callback("an answer")
            yield Result(video=item.video, question=item.question, answer="an answer", **common)

    @property
    def run_call(self) -> dict[str, Any]:
        return next(value for name, value in self.calls if name == "run")


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace model loading in every command; `fake['engine']` is the last engine made."""
    made: dict[str, Any] = {"loads": 0}

    def load(reporter: Any, options: Any, **kwargs: Any) -> FakeEngine:
        made["loads"] += 1
        made["engine"] = FakeEngine(options, **made.get("behaviour", {}))
        made["load_kwargs"] = kwargs
        return made["engine"]

    for module in ("vidqa.cli.ask", "vidqa.cli.tools"):
        monkeypatch.setattr(f"{module}.load_engine", load)
    return made


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded by the fake engine")
    return path


def invoke(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=ENV, input=stdin)


def compression_of(fake: dict[str, Any]) -> Compression:
    return fake["engine"].run_call["compression"]


# -- precedence: flag > preset > default ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "method", "params"),
    [
        ([], "vidcom2", {"keep": 0.25}),  # the default preset
        (["--keep", "0.3"], "vidcom2", {"keep": 0.3}),  # --keep alone: the default method at R
        (["--preset", "vidcom2-15"], "vidcom2", {"keep": 0.15}),
        (["--preset", "vidcom2-15", "--keep", "0.3"], "vidcom2", {"keep": 0.3}),  # flag beats preset
        (["--preset", "dycoke", "--method", "vidcom2"], "vidcom2", {"keep": 0.25}),  # other method: defaults
        (["--method", "dycoke"], "dycoke", {"prune": 0.7, "layer": 3, "decode_prune": 0.7, "gate": 0.9}),
        (
            ["--method", "dycoke", "--keep", "0.5", "-p", "layer=4"],
            "dycoke",
            {"prune": pytest.approx(2 / 3), "layer": 4, "decode_prune": 0.7, "gate": 0.9},
        ),
        (
            ["--preset", "dycoke", "-p", "gate=0.5"],
            "dycoke",
            {"prune": 0.7, "layer": 3, "decode_prune": 0.7, "gate": 0.5},
        ),
        (
            ["--method", "dycoke", "--keep", "1"],
            "dycoke",
            {"prune": 0.0, "layer": 3, "decode_prune": 0.0, "gate": 0.9},
        ),
        (["--method", "none"], "none", {}),
        (["--method", "none", "--keep", "1"], "none", {}),
    ],
)
def test_compression_precedence(
    fake: dict[str, Any], clip: Path, flags: list[str], method: str, params: dict[str, Any]
) -> None:
    result = invoke("ask", str(clip), "q", *flags, "--jsonl")
    assert result.exit_code == 0, result.stderr
    compression = compression_of(fake)
    assert compression.method == method and compression.params.model_dump() == params
    assert ("validate", compression) in fake["engine"].calls  # checked against the model before the run


def test_a_preset_file_value_loses_to_the_flag(fake: dict[str, Any], clip: Path, tmp_path: Path) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text("method: dycoke\nkeep: 0.5\nlayer: 2\n")
    assert invoke("ask", str(clip), "q", "--preset", str(preset), "--jsonl").exit_code == 0
    assert compression_of(fake).params.model_dump()["layer"] == 2
    assert compression_of(fake).keep == pytest.approx(0.5)
    assert invoke("ask", str(clip), "q", "--preset", str(preset), "--keep", "0.75", "--jsonl").exit_code == 0
    assert compression_of(fake).keep == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--method", "none", "--keep", "0.25"], "method none keeps every visual token"),
        (["--method", "dycoke", "--keep", "0.5", "-p", "prune=0.3"], "either keep or the parameter prune"),
        (["--method", "dycoke", "--keep", "0.2"], "--method vidcom2"),
        (["-p", "layer=2"], "unknown parameter 'layer' for method vidcom2 (known: keep)"),
        (["--method", "dycoke", "-p", "layer=0"], "dycoke parameter 'layer'"),
        (["--method", "dycoke", "-p", "gate"], "--param expects name=value"),
        (["--method", "dycoke", "-p", "gate=high"], "dycoke parameter 'gate'"),
        (["--method", "magic"], "unknown method 'magic'"),
        (["--keep", "0"], "--keep must be a number in (0, 1]"),
    ],
)
def test_conflicts_and_bad_values_are_usage_errors_before_loading(
    fake: dict[str, Any], clip: Path, flags: list[str], message: str
) -> None:
    result = invoke("ask", str(clip), "q", *flags, "--quiet")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidqa: error:") and message in lines[0], result.stderr
    assert fake["loads"] == 0  # refused before any model was loaded


# -- the same model options reach the library from every command ---------------------------------------------
MODEL_FLAGS = [
    "--model",
    "some/model",
    "--device",
    "cpu",
    "--dtype",
    "bfloat16",
    "--attn",
    "eager",
    "--device-map",
    "auto",
    "--revision",
    "v2",
    "--trust-remote-code",
]


@pytest.mark.parametrize("command", ["ask", "inspect", "bench"])
def test_model_options_are_the_same_everywhere(fake: dict[str, Any], clip: Path, command: str) -> None:
    args = [command, str(clip), *(["q"] if command == "ask" else []), *MODEL_FLAGS]
    invoke(*args)  # the fake cannot inspect or bench; only what reached load_engine matters here
    options = fake["engine"].options
    assert (options.model, options.device, options.dtype, options.attn) == (
        "some/model",
        "cpu",
        "bfloat16",
        "eager",
    )
    assert (options.device_map, options.revision, options.trust_remote_code) == ("auto", "v2", True)


def test_sampling_and_generation_reach_the_run(fake: dict[str, Any], clip: Path) -> None:
    result = invoke(
        "ask", str(clip), "q", "--fps", "2", "--max-frames", "16", "--max-new-tokens", "9", "--jsonl"
    )
    assert result.exit_code == 0, result.stderr
    call = fake["engine"].run_call
    assert call["sampling"] == SamplingSettings(frames=None, fps=2.0, max_frames=16)
    assert call["generation"] == GenerationSettings(max_new_tokens=9)
    assert fake["load_kwargs"]["full_hash"] is False


# -- inputs --------------------------------------------------------------------------------------------------
def test_per_video_questions_file_needs_no_positional(fake: dict[str, Any], tmp_path: Path) -> None:
    questions = tmp_path / "pv.jsonl"
    questions.write_text(
        '# per video\n{"video": "a.mp4", "question": "who?"}\n{"video": "b.mp4", "question": "why?"}\n'
    )
    result = invoke("ask", "--questions", str(questions), "--jsonl")
    assert result.exit_code == 0, result.stderr
    assert fake["engine"].run_call["items"] == [Item("a.mp4", "who?"), Item("b.mp4", "why?")]
    assert [json.loads(line)["video"] for line in result.stdout.splitlines()] == ["a.mp4", "b.mp4"]


def test_questions_without_a_video_is_a_usage_error(fake: dict[str, Any]) -> None:
    result = invoke("ask", "-q", "who?")
    assert result.exit_code == 2 and "no video given" in result.stderr


# -- output shape --------------------------------------------------------------------------------------------
def test_json_shape_follows_the_command_line_not_the_folder(fake: dict[str, Any], clip: Path) -> None:
    one = invoke("ask", str(clip), "q", "--json")
    assert isinstance(json.loads(one.stdout), dict)
    folder = invoke("ask", str(clip.parent), "-q", "q", "--json")  # a folder holding one clip
    assert isinstance(json.loads(folder.stdout), list) and len(json.loads(folder.stdout)) == 1
    two = invoke("ask", str(clip), "-q", "q1", "-q", "q2", "--json")
    assert [r["question"] for r in json.loads(two.stdout)] == ["q1", "q2"]


def test_json_prints_what_finished_when_interrupted(fake: dict[str, Any], clip: Path, tmp_path: Path) -> None:
    fake["behaviour"] = {"stop_after": 2}
    result = invoke("ask", str(clip), "-q", "q1", "-q", "q2", "-q", "q3", "--json")
    assert result.exit_code == 130
    assert [r["question"] for r in json.loads(result.stdout)] == ["q1", "q2"]
    assert "interrupted: 2 of 3 item(s) done" in result.stderr


def test_records_carry_method_params_and_settings(fake: dict[str, Any], clip: Path) -> None:
    record = json.loads(invoke("ask", str(clip), "q", "--method", "dycoke", "-p", "layer=2", "--json").stdout)
    assert record["method"] == "dycoke" and record["params"]["layer"] == 2
    assert record["settings"]["model"] == "folder:qwen3.5-2b" and record["settings"]["max_new_tokens"] == 128


# -- resume --------------------------------------------------------------------------------------------------
def _resume(clip: Path, out: Path, *extra: str) -> Any:
    return invoke(
        "ask",
        str(clip),
        "-q",
        "q1",
        "-q",
        "q2",
        "-q",
        "q3",
        "--output",
        str(out),
        "--resume",
        "--jsonl",
        *extra,
    )


def test_resume_retries_failures_and_the_newest_record_wins(
    fake: dict[str, Any], clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    fake["behaviour"] = {"fail_on": {str(clip)}}
    first = invoke("ask", str(clip), "-q", "q1", "--output", str(out), "--jsonl")
    assert first.exit_code == 1 and json.loads(out.read_text())["error"]  # a failure was recorded
    fake["behaviour"] = {}
    assert invoke("ask", str(clip), "-q", "q2", "--output", str(out), "--jsonl").exit_code == 0
    result = _resume(clip, out)
    assert result.exit_code == 0, result.stderr
    # q1 failed before: retried; q2 succeeded: skipped; q3 never ran: run
    assert fake["engine"].run_call["items"] == [Item(str(clip), "q1"), Item(str(clip), "q3")]
    assert "1 item(s) already in" in result.stderr
    assert _resume(clip, out).stderr.count("3 item(s) already in") == 1  # now everything is done
    assert fake["loads"] == 4


def test_resume_with_other_settings_is_refused(fake: dict[str, Any], clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert (
        invoke("ask", str(clip), "-q", "q1", "--output", str(out), "--jsonl", "--keep", "0.3").exit_code == 0
    )
    result = _resume(clip, out, "--keep", "0.5")
    assert result.exit_code == 2
    assert "other settings" in result.stderr and "params {'keep': 0.3} → {'keep': 0.5}" in result.stderr
    assert not [call for call in fake["engine"].calls if call[0] == "run"]  # refused before anything ran
    frames = _resume(clip, out, "--keep", "0.3", "--frames", "4")
    assert frames.exit_code == 2 and "sampling" in frames.stderr


def test_resume_refuses_records_without_settings(fake: dict[str, Any], clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "old.jsonl"
    out.write_text(json.dumps({"video": str(clip), "question": "q1", "answer": "x", "error": None}) + "\n")
    result = _resume(clip, out)
    assert result.exit_code == 2 and "older vidqa" in result.stderr
