"""`vidqa eval`: benchmarks read in their published layouts, lmms-eval's prompts, answer extraction, the
table's statistics, the divergence gate, records and resume, and the lmms-eval plug-in's request handling."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vidqa.cli import app
from vidqa.compress.base import Selection
from vidqa.compress.registry import Compression, build_compression
from vidqa.errors import UsageError
from vidqa.evaluation.data import load_benchmark
from vidqa.evaluation.extract import extract_choice
from vidqa.evaluation.lmms_requests import Answerer, ChatRequest, generation_from, unpack_messages
from vidqa.evaluation.report import GATE_MIN_ITEMS, summarize
from vidqa.evaluation.runner import run_eval
from vidqa.evaluation.stats import mcnemar_exact, wilson_interval
from vidqa.settings import GenerationSettings, SamplingSettings
from vidqa.synth import make_clip

ENV = {"NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}
OPTIONS = ("a dog runs", "a cat sleeps", "two people talk", "nothing happens")


# -- answer extraction -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B\n", "B"),
        ("**B**", "B"),
        ("[C]", "C"),
        ("B) a cat sleeps", "B"),
        ("C: two people talk", "C"),
        ("The answer is B", "B"),
        ("The answer is (C).", "C"),
        ("Answer: D", "D"),
        ("Best option: (A) a dog runs", "A"),
        ("The correct option is B, a cat sleeps.", "B"),
        ("Not A; the answer is C", "C"),
        ("a cat sleeps", "B"),
        ("A cat sleeps.", "B"),  # the option's text, not option A
        ("Two people talk in the kitchen", "C"),
        ("I think C is right.", "C"),
        ("<think>maybe A</think>D", "D"),
        ("A", "A"),
        ("A man walks in", None),  # an article, not option A
        ("E", None),  # beyond the four options
        ("The answer is a dog", None),
        ("I am not sure", None),
        ("A or B", None),
        ("", None),
        (None, None),
    ],
)
def test_answer_extraction(output: str | None, expected: str | None) -> None:
    assert extract_choice(output, OPTIONS) == expected


# -- benchmarks in their published layouts -----------------------------------------------------------------
def test_generic_jsonl(tmp_path: Path) -> None:
    rows = [
        {"video": "a.mp4", "question": "Q1?", "options": ["x", "y"], "answer": "B", "task": "t1"},
        {
            "id": "k",
            "video": "/abs/b.mp4",
            "question": "Q2?",
            "options": ["A. x", "B. y", "C. z"],
            "answer": 2,
        },
        {"video": "a.mp4", "question": "Q3?", "options": ["x", "y"], "answer": "y", "duration": "short"},
    ]
    data = tmp_path / "qs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    items = load_benchmark(data)
    assert [i.id for i in items] == ["qs:1", "k", "qs:3"]
    assert [i.answer for i in items] == ["B", "C", "B"]
    assert [i.task for i in items] == ["t1", "all", "short"]
    assert items[0].video == str(tmp_path / "a.mp4") and items[1].video == "/abs/b.mp4"
    assert items[1].options == ("x", "y", "z")  # letters already in the options are not doubled
    assert (
        items[1].prompt
        == "Q2?\nA. x\nB. y\nC. z\nAnswer with the option's letter from the given choices directly."
    )
    assert [i.id for i in load_benchmark(data, tasks=["t1", "short"])] == ["qs:1", "qs:3"]
    assert len(load_benchmark(data, limit=1)) == 3  # one per task, and there are three tasks


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "qs.jsonl:1: not JSON"),
        ('{"video": "a.mp4", "question": "q", "options": ["x", "y"]}', "qs.jsonl:1: missing 'answer'"),
        ('{"video": "a.mp4", "question": "q", "options": ["x"], "answer": "A"}', "at least two strings"),
        ('{"video": "a.mp4", "question": "q", "options": ["x", "y"], "answer": "C"}', "neither one of A, B"),
        ('{"video": "a.mp4", "question": "q", "options": ["x", "y"], "answer": 5}', "out of range"),
    ],
)
def test_generic_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    data = tmp_path / "qs.jsonl"
    data.write_text(line + "\n")
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        load_benchmark(data)


def test_mvbench_layout(tmp_path: Path) -> None:
    """OpenGVLab/MVBench: json/<task>.json, videos unpacked under video/ in lmms-eval's task folders."""
    (tmp_path / "json").mkdir()
    rows = [
        {
            "video": "0A8CF.mp4",
            "question": "What did the person do first?",
            "candidates": ["Sat.", "Ran."],
            "answer": "Ran.",
            "start": 1.0,
            "end": 5.0,
        },
        {
            "video": "missing.mp4",
            "question": "And then?",
            "candidates": ["Sat.", "Ran.", "Ate."],
            "answer": "Sat.",
        },
    ]
    (tmp_path / "json" / "action_sequence.json").write_text(json.dumps(rows))
    (tmp_path / "json" / "action_count.json").write_text(
        json.dumps([{"video": "v.webm", "question": "How many?", "candidates": ["1", "2"], "answer": "1"}])
    )
    segment = tmp_path / "video" / "star" / "Charades_segment"
    segment.mkdir(parents=True)
    (segment / "0A8CF.mp4").write_bytes(b"x")
    items = load_benchmark(tmp_path)
    assert [i.id for i in items] == ["action_count/0", "action_sequence/0", "action_sequence/1"]
    first = items[1]
    assert first.task == "action_sequence" and first.answer == "B"
    assert first.video == str(segment / "0A8CF.mp4")
    assert (
        first.prompt
        == "Question:What did the person do first?\nOption:\n(A) Sat.\n(B) Ran.\nOnly give the best option.\n"
    )
    assert items[2].video == str(segment / "missing.mp4")  # named even when absent: its record says so
    assert items[0].video == str(tmp_path / "video" / "perception" / "videos" / "v.webm")
    assert [i.id for i in load_benchmark(tmp_path, tasks=["action_count"])] == ["action_count/0"]


def test_videomme_layout(tmp_path: Path) -> None:
    """lmms-lab/Video-MME: videomme/test-*.parquet and the videos unpacked into data/."""
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    columns = {
        "video_id": ["001", "001", "301"],
        "duration": ["short", "short", "long"],
        "domain": ["Knowledge"] * 3,
        "sub_category": ["Humanity & History"] * 3,
        "url": ["https://www.youtube.com/watch?v=fFjv93ACGo8"] * 3,
        "videoID": ["fFjv93ACGo8", "fFjv93ACGo8", "zzz"],
        "question_id": ["001-1", "001-2", "301-1"],
        "task_type": ["Counting Problem", "Information Synopsis", "Temporal Reasoning"],
        "question": ["How many?", "What is it about?", "What first?"],
        "options": [["A. 1.", "B. 2.", "C. 3.", "D. 4."]] * 3,
        "answer": ["C", "A", "D"],
    }
    (tmp_path / "videomme").mkdir()
    parquet.write_table(pyarrow.table(columns), tmp_path / "videomme" / "test-00000-of-00001.parquet")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fFjv93ACGo8.mp4").write_bytes(b"x")
    (tmp_path / "data" / "zzz.mkv").write_bytes(b"x")
    items = load_benchmark(tmp_path)
    assert [(i.id, i.task, i.answer) for i in items] == [
        ("001-1", "short", "C"), ("001-2", "short", "A"), ("301-1", "long", "D"),
    ]  # fmt: skip
    assert items[0].options == ("1.", "2.", "3.", "4.")
    assert items[0].video == str(tmp_path / "data" / "fFjv93ACGo8.mp4")
    assert items[2].video == str(tmp_path / "data" / "zzz.mkv")
    assert items[0].prompt == (
        "Select the best answer to the following multiple-choice question based on the video and the "
        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.\nHow many?\nA. 1.\n"
        "B. 2.\nC. 3.\nD. 4.\n\nAnswer with the option's letter from the given choices directly."
    )


def test_unknown_layout_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a benchmark vidqa knows"):
        load_benchmark(tmp_path)


# -- statistics and the table ------------------------------------------------------------------------------
def test_wilson_interval_and_mcnemar_match_hand_computation() -> None:
    z = 1.959963984540054
    n, k = 10, 7
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # exact two-sided McNemar: 2 × P(X ≤ 1) for X ~ Binomial(6, ½) = 2 × (1 + 6) / 64
    assert mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    assert mcnemar_exact(5, 1) == pytest.approx(14 / 64)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)


def _record(item: str, method: str, keep: float, correct: bool, *, task: str = "t", output: str | None = None,
            kept: int = 100, error: str | None = None, prefill: float = 0.5) -> dict[str, Any]:  # fmt: skip
    return {
        "item": item, "task": task, "method": method, "keep": keep, "params": {},
        "prediction": None if error else ("A" if correct else "B"), "answer": "A",
        "correct": None if error else correct,
        "output": output if output is not None else f"{method}{keep}{item}",
        "error": error, "visual_tokens": {"total": 100, "kept": kept},
        "timings": {"prefix": prefill / 2, "prefill": prefill / 2, "compress": 0.0, "generate": 1.0},
    }  # fmt: skip


def test_table_arithmetic_against_hand_computed_values() -> None:
    # none: right on q0–q5 (6/8); vidcom2: right on q0–q3 and q6 (5/8) → only-vidcom2 1 (q6), only-none 2
    none = [_record(f"q{i}", "none", 1.0, i < 6, task="t1" if i < 4 else "t2") for i in range(8)]
    vid = [
        _record(f"q{i}", "vidcom2", 0.25, i < 4 or i == 6, task="t1" if i < 4 else "t2", kept=25, prefill=0.1)
        for i in range(8)
    ]
    failed = _record("q8", "vidcom2", 0.25, False, task="t2", error="clip.mp4: no such file")
    summary = summarize([*none, *vid, failed]).to_dict()
    configs = {c["label"]: c for c in summary["configs"]}
    base, comp = configs["none"]["overall"], configs["vidcom2 0.25"]["overall"]
    assert (base["n"], base["correct"], base["accuracy"]) == (8, 6, 0.75)
    assert (comp["n"], comp["correct"], comp["failed"]) == (8, 5, 1)
    assert comp["pct_of_none"] == pytest.approx(100 * (5 / 8) / (6 / 8))
    assert comp["mcnemar_p"] == pytest.approx(mcnemar_exact(1, 2))
    assert comp["ci95"] == pytest.approx(list(wilson_interval(5, 8)))
    assert comp["kept_tokens"] == 25 and base["kept_tokens"] == 100
    assert comp["prefill_s"] == pytest.approx(0.1) and comp["llm_s"] == pytest.approx(1.1)
    t2 = configs["vidcom2 0.25"]["tasks"]["t2"]  # q4–q7: none right on q4, q5; vidcom2 only on q6
    assert (t2["n"], t2["correct"]) == (4, 1)
    assert t2["pct_of_none"] == pytest.approx(100 * (1 / 4) / (2 / 4))
    assert t2["mcnemar_p"] == pytest.approx(mcnemar_exact(1, 2))
    assert configs["none"]["overall"]["mcnemar_p"] is None
    assert summary["failed"] == [
        {"item": "q8", "method": "vidcom2", "keep": 0.25, "error": "clip.mp4: no such file"}
    ]
    assert summary["gate"]["passed"]


def test_divergence_gate() -> None:
    n = GATE_MIN_ITEMS
    same = [
        _record(f"q{i}", m, k, True, output="B")
        for i in range(n)
        for m, k in (("none", 1.0), ("dycoke", 0.3))
    ]
    gate = summarize(same).to_dict()["gate"]
    assert (
        not gate["passed"]
        and "dycoke 0.3 answered exactly as none on all 10 questions" in gate["problems"][0]
    )
    few = [r for r in same if r["item"] in ("q0", "q1")]
    gate = summarize(few).to_dict()["gate"]
    assert gate["passed"] and "too few" in gate["notes"][0]
    differs = [*same[:-1], {**same[-1], "output": "C"}]
    assert summarize(differs).to_dict()["gate"]["passed"]
    empty = [_record(f"q{i}", "none", 1.0, False, output="") for i in range(3)]
    gate = summarize(empty).to_dict()["gate"]
    assert not gate["passed"] and "every answer is empty" in gate["problems"][0]
    alone = [_record(f"q{i}", "vidcom2", 0.25, True) for i in range(3)]
    assert "no `none` setting" in summarize(alone).to_dict()["gate"]["notes"][0]


# -- a tiny benchmark, end to end --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 questions on three clips, plus two about a video that does not exist."""
    folder = tmp_path_factory.mktemp("tiny_bench")
    for index, pattern in enumerate(("moving", "cuts", "moving")):
        make_clip(folder / f"c{index}.mp4", seconds=2, fps=10, size=(160, 120), pattern=pattern)
    rows = [
        {"id": f"q{i}", "video": f"c{i % 3}.mp4", "question": f"What is shown ({i})?",
         "options": list(OPTIONS), "answer": "ABCD"[i % 4], "task": f"t{i % 2}"}
        for i in range(12)
    ]  # fmt: skip
    rows += [
        {"id": f"gone{i}", "video": "gone.mp4", "question": "What?", "options": ["x", "y"], "answer": "A"}
        for i in range(2)
    ]
    (folder / "bench.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder / "bench.jsonl"


def _eval_args(tiny_checkpoints: dict[str, Path]) -> list[str]:
    return ["--model", str(tiny_checkpoints["qwen2_vl"]), "--device", "cpu", "--frames", "4", "--no-cache",
            "--methods", "none,vidcom2,dycoke", "--keep", "1,0.25", "-p", "layer=1"]  # fmt: skip


def test_eval_command_records_table_and_resume(
    tiny_bench: Path, tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run.jsonl"
    args = ["eval", str(tiny_bench), *_eval_args(tiny_checkpoints), "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--json"], env=ENV)
    assert result.exit_code == 1, result.stderr  # the missing video's questions failed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 14 * 3  # every (question, setting) exactly once
    assert len({(r["item"], r["method"]) for r in records}) == 42
    for record in records:
        assert {"item", "method", "keep", "prediction", "answer", "correct", "output"} <= set(record)
    failed = [r for r in records if r["error"]]
    assert {r["item"] for r in failed} == {"gone0", "gone1"} and all(
        "no such file" in r["error"] for r in failed
    )
    assert sum("gone" in line for line in result.stderr.splitlines() if line.startswith("vidqa: error:")) == 6
    good = [r for r in records if not r["error"]]
    assert sum(r["timings"]["vision"] > 0 for r in good) == 3  # each video encoded once for all settings
    kept = {r["method"]: r["visual_tokens"]["kept"] for r in good}
    assert kept["vidcom2"] < kept["none"] and kept["dycoke"] < kept["none"]
    reused = [r for r in good if r["prefix"].get("source") == "memory"]
    assert len(reused) == 36 - 9  # per video and setting, later questions reuse the video prefix
    document = json.loads(result.stdout)
    assert document["gate"]["passed"]  # real compression changes the answers
    overall = {c["label"]: c["overall"] for c in document["configs"]}
    assert list(overall) == ["none", "vidcom2 0.25", "dycoke 0.25"]
    for label, score in overall.items():
        mine = [
            r
            for r in good
            if (r["method"] == "none" and label == "none") or label.startswith(r["method"] + " ")
        ]
        assert score["n"] == len(mine) == 12 and score["correct"] == sum(r["correct"] for r in mine)
        assert score["failed"] == 2
    assert set(document["tasks"]) == {"t0", "t1", "all"}

    again = CliRunner().invoke(app, [*args, "--resume"], env=ENV)  # only the failed pairs run again
    assert again.exit_code == 1
    assert "36 of 42 answers already in" in again.stderr
    assert len(out.read_text().splitlines()) == 42 + 6
    assert "none" in again.stdout and "McNemar p" in again.stdout  # the table, on stdout


def test_divergence_gate_fires_when_compression_is_not_applied(
    tiny_bench: Path, engines: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 'compression' that keeps everything (stubbed) answers exactly as none: the run must fail."""
    engine = engines["qwen2_vl"]
    items = [i for i in load_benchmark(tiny_bench) if not i.id.startswith("gone")]
    configs = [build_compression("none"), build_compression("vidcom2", keep=0.25)]
    sampling = SamplingSettings(frames=4)
    real = list(run_eval(engine, items, configs, sampling=sampling))
    assert not any(record["error"] for record in real) and summarize(real).problems == []

    def keep_everything(self: Compression, features: Any, inputs: Any = None) -> Selection:
        t, m, _ = features.shape
        return Selection.keep_all(t, m, device=features.device)

    monkeypatch.setattr(Compression, "select", keep_everything)
    stubbed = list(run_eval(engine, items, configs, sampling=sampling))
    assert not any(record["error"] for record in stubbed)
    problems = summarize(stubbed).problems
    assert problems == [
        "vidcom2 0.25 answered exactly as none on all 12 questions: compression was not applied"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file or folder"),
        (["{bench}", "--resume"], "--resume needs --output"),
        (["{bench}", "--layout", "csv"], "--layout 'csv'"),
        (["{bench}", "--keep", "a"], "--keep expects comma-separated numbers"),
        (["{bench}", "--methods", "nope"], "nope"),
    ],
)
def test_eval_usage_errors(tiny_bench: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["eval", *(a.format(bench=tiny_bench) for a in args), "--quiet"], env=ENV
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("vidqa: error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- the lmms-eval plug-in's request handling ---------------------------------------------------------------
def test_lmms_eval_messages_and_generation_kwargs() -> None:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "video", "url": "/v/a.mp4"}, {"type": "text", "text": "Q?"}]},
    ]
    assert unpack_messages(messages) == ("/v/a.mp4", "Q?", "Be brief.")
    segment = [{"role": "user", "content": [{"type": "video", "url": {"url": "/v/b.mp4", "video_start": 1}},
                                            {"type": "text", "text": "Q?"}]}]  # fmt: skip
    assert unpack_messages(segment)[0] == "/v/b.mp4"
    image = [{"role": "user", "content": [{"type": "image", "url": "x.png"}, {"type": "text", "text": "Q?"}]}]
    with pytest.raises(UsageError, match="image inputs are not supported"):
        unpack_messages(image)
    with pytest.raises(UsageError, match="exactly one video"):
        unpack_messages([{"role": "user", "content": [{"type": "text", "text": "Q?"}]}])
    assert generation_from(
        {"max_new_tokens": 16, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
    ) == (GenerationSettings(max_new_tokens=16, stop=("\n\n",)))
    sampled = generation_from({"max_new_tokens": 4, "temperature": 0.7, "top_p": 0.9, "do_sample": True})
    assert (sampled.temperature, sampled.top_p) == (0.7, 0.9)
    assert generation_from(None).max_new_tokens == 16


def test_lmms_eval_answerer_groups_by_video_and_isolates_failures(
    engines: dict[str, Any], sample_clip: Path, tmp_path: Path
) -> None:
    engine = engines["qwen2_vl"]
    other = make_clip(tmp_path / "other.mp4", seconds=2, fps=10, size=(160, 120), pattern="moving")
    compression = build_compression("vidcom2", keep=0.25)
    generation = GenerationSettings(max_new_tokens=4)
    requests = [
        ChatRequest(str(sample_clip), "What happens?", None, generation, "t", 0),
        ChatRequest(str(other), "What happens?", None, generation, "t", 1),
        ChatRequest(str(tmp_path / "gone.mp4"), "What?", None, generation, "t", 2),
        ChatRequest(None, "", None, generation, "t", 3, error="image inputs are not supported"),
        ChatRequest(str(sample_clip), "Who is there?", None, generation, "t", 4),
    ]
    from vidqa.records import RecordFile

    log = RecordFile(tmp_path / "records.jsonl")
    answers = Answerer(engine, compression, SamplingSettings(frames=4), records=log).answer_all(requests)
    log.close()
    assert [result.error is None for _, result in answers] == [True, True, False, False, True]
    assert answers[2][0] == "" and "no such file" in answers[2][1].error
    assert answers[4][1].prefix["source"] == "memory"  # the clip's second question reused its prefix
    for (text, result), request in zip(answers, requests, strict=True):
        if result.error is None:
            cold = engine.ask(
                request.video, request.text, method="vidcom2", keep=0.25, frames=4, max_new_tokens=4
            )
            assert text == cold.answer and result.visual_kept == cold.visual_kept < cold.visual_total
    written = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert sorted(r["doc_id"] for r in written) == [0, 1, 2, 3, 4]
