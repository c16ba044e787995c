"""The lmms-eval plug-in against the real lmms-eval, offline: a tiny local video task run by lmms-eval's own
command line with `--model vidqa` on a tiny random-weight model, compressed and not.

Not part of the pytest suite: lmms-eval is a multi-GB install (wandb, OpenCV, sentence-transformers, …) and
pins PyAV below 16. Run it in an environment with the eval extra (docs/evaluation.md):

    pip install -e ".[eval]" && python -m tests.lmms_eval_smoke

It checks that lmms-eval finds the plug-in through its entry point, answers every sample, reports the prompt
tokens after dropping as each sample's input tokens, that vidqa's per-sample records show the kept visual
tokens, and that keep 0.25 reaches the LLM with fewer tokens than keep 1. Exit 0 when all hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

TASK_YAML = """\
task: vidqa_smoke
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 8
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
metadata:
  - version: 0.0
"""

TASK_UTILS = """\
from vidqa.evaluation.data import lettered_prompt
from vidqa.evaluation.extract import extract_choice


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return lettered_prompt(doc["question"], tuple(doc["options"]))


def process_results(doc, results):
    return {"accuracy": float(extract_choice(results[0], doc["options"]) == doc["answer"])}
"""


def build(root: Path) -> tuple[Path, Path, Path]:
    """A tiny checkpoint, two clips, a 4-question task file and the task folder."""
    from tests.tiny_models import build_tiny_checkpoint
    from vidqa.synth import make_clip

    checkpoint = build_tiny_checkpoint("qwen2_vl", root / "model")
    clips = [make_clip(root / f"clip{i}.mp4", seconds=2, fps=10, size=(160, 120), pattern=p)
             for i, p in enumerate(("moving", "cuts"))]  # fmt: skip
    data = root / "smoke.jsonl"
    rows = [
        {"video": str(clips[i % 2]), "question": f"What is in the video ({i})?",
         "options": ["a ball", "a box", "a cat", "nothing"], "answer": "ABCD"[i]}
        for i in range(4)
    ]  # fmt: skip
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "vidqa_smoke.yaml").write_text(TASK_YAML.format(data=data))
    (tasks / "utils.py").write_text(TASK_UTILS)
    return checkpoint, tasks, data


def run_lmms_eval(root: Path, checkpoint: Path, tasks: Path, keep: float) -> tuple[list[dict], list[dict]]:
    """lmms-eval's CLI with --model vidqa; (vidqa's records, lmms-eval's sample logs)."""
    records = root / f"records-{keep}.jsonl"
    output = root / f"out-{keep}"
    method = "vidcom2" if keep < 1 else "none"
    model_args = f"pretrained={checkpoint},method={method},keep={keep},frames=4,device=cpu,records={records}"
    command = [
        sys.executable, "-m", "lmms_eval", "--model", "vidqa", "--model_args", model_args,
        "--tasks", "vidqa_smoke", "--include_path", str(tasks), "--output_path", str(output),
        "--log_samples", "--batch_size", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(Path.cwd())}
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    print(textwrap.indent(done.stdout[-3000:], "  | "))
    if done.returncode != 0 or not records.exists():  # lmms-eval logs some failures and exits 0
        print(textwrap.indent(done.stderr[-6000:], "  ! "))
        raise SystemExit(f"lmms-eval exited with {done.returncode} and vidqa wrote no records")
    samples = [json.loads(line) for path in sorted(output.rglob("*samples*.jsonl")) for line in path.open()]
    return [json.loads(line) for line in records.open()], samples


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        checkpoint, tasks, _ = build(root)
        compressed, samples = run_lmms_eval(root, checkpoint, tasks, 0.25)
        for record in compressed:
            print(f"record: {record['doc_id']} error={record['error']!r} answer={record['answer']!r}")
        plain, plain_samples = run_lmms_eval(root, checkpoint, tasks, 1.0)
    checks = {
        "every sample answered (4 records, no error)": len(compressed) == 4
        and all(r["error"] is None for r in compressed),
        "lmms-eval logged 4 samples per run": len(samples) == 4 and len(plain_samples) == 4,
        "keep 0.25 kept fewer visual tokens than keep 1": len(plain) == 4
        and all(
            c["visual_tokens"]["kept"] < p["visual_tokens"]["kept"] == p["visual_tokens"]["total"]
            for c, p in zip(compressed, plain, strict=True)
        ),
        "lmms-eval's input tokens are the prompt after dropping": len(samples) == 4
        and sorted(s.get("token_counts", [{}])[0].get("input_tokens") for s in samples)
        == sorted(r["prompt_tokens"] for r in compressed),
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    kept = [r["visual_tokens"]["kept"] for r in compressed]
    print(f"kept visual tokens per sample at keep 0.25: {kept} of {compressed[0]['visual_tokens']['total']}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
