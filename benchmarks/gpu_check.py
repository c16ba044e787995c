"""The prepared GPU check: one command, one H100/H200, no network, about 5 minutes.

For each model of real shape (random weights built in GPU memory, nothing written to disk) — LLaVA-OV-7B,
Qwen2.5-VL-7B, Qwen3-VL-8B, Qwen3.5-9B, Gemma-4-E4B, InternVL3.5-8B and Qwen3.5-2B by default, in that
order — and each frame count (32 and 64), it runs `vidqa.bench.run_bench`
(the library behind `vidqa bench`: a warm-up, then `--repeat` interleaved rounds, each a whole cold item from
video decode to the last of exactly `--max-new-tokens` tokens) for none, VidCom² at keep 0.25 and 0.15 and
DyCoke (the paper's K = 0.7 with stage 2 on), in bfloat16 with sdpa attention, on a synthetic 20 s clip.

It writes `gpu_check.json` (every summary) and `gpu_check.md` (one table: visual tokens, prefill,
generate, total, peak memory, prefill and total speed-ups over none) into `--out`, and prints the table.
A model that does not fit the remaining time budget (`--budget`, default 420 s) is skipped and says so,
so the command always ends with a table well inside 8 minutes.

    python -m benchmarks.gpu_check --out $OUT
    python -m benchmarks.gpu_check --dry-run --out /tmp/check    # tiny shapes on the CPU (the test suite)
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import real_shapes
from vidqa import synth
from vidqa.bench import run_bench
from vidqa.compress.registry import Compression, build_compression
from vidqa.engine import Engine
from vidqa.models import adapter_class
from vidqa.settings import GenerationSettings, SamplingSettings

#: In priority order: a model that would overrun the time budget is skipped (and says so), not the table.
MODELS = (
    "llava-ov-7b",
    "qwen2.5-vl-7b",
    "qwen3-vl-8b",
    "qwen3.5-9b",
    "gemma-4-e4b",
    "internvl3.5-8b",
    "qwen3.5-2b",
)
QUESTION = "What happens in this video?"
DYCOKE_KEEP = 0.475  # the paper's K = 0.7


@dataclass(frozen=True)
class Plan:
    models: tuple[str, ...]
    frames: tuple[int, ...]
    repeat: int
    max_new_tokens: int
    device: torch.device
    dtype: str
    tiny: bool
    budget: float


def settings() -> list[Compression]:
    return [
        build_compression("none"),
        build_compression("vidcom2", keep=0.25),
        build_compression("vidcom2", keep=0.15),
        build_compression("dycoke", keep=DYCOKE_KEEP),
        build_compression("vcast", keep=0.25),
        build_compression("fastvid", keep=0.25, params={"siglip_head": False}),  # the device is offline
    ]


def build_engine(name: str, plan: Plan) -> Engine:
    """A random-weight model of `name`'s real shape (or its tiny variant), in memory, wrapped in an Engine."""
    model = real_shapes.build_model(name, dtype=plan.dtype, device=str(plan.device), tiny=plan.tiny)
    model.set_attn_implementation("sdpa")
    tokenizer = real_shapes.tokenizer_for(name)
    model.generation_config = real_shapes.generation_config(tokenizer)
    processor = real_shapes.recipe(name).processor(tokenizer)
    adapter = adapter_class(model.config.model_type)(model, processor, identity=f"random:{name}")
    return Engine(adapter, model_name=f"{name} (random weights{', tiny' if plan.tiny else ''})")


def run_model(name: str, plan: Plan, video: Path, deadline: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    engine = build_engine(name, plan)
    built = time.perf_counter() - started
    params = real_shapes.parameter_count(engine.adapter.model)
    print(f"{name}: {params / 1e9:.2f} B parameters, built in {built:.1f} s", file=sys.stderr, flush=True)
    generation = GenerationSettings(max_new_tokens=plan.max_new_tokens, min_new_tokens=plan.max_new_tokens)
    for frames in plan.frames:
        if time.perf_counter() > deadline:
            rows.append({"model": name, "frames": frames, "skipped": "time budget spent"})
            continue
        start = time.perf_counter()
        summaries = run_bench(
            engine, video, QUESTION, settings(), sampling=SamplingSettings(frames=frames),
            generation=generation, repeat=plan.repeat, on_progress=_progress(f"{name} {frames} frames"),
        )  # fmt: skip
        for summary in summaries:
            rows.append({"model": name, "parameters": params, "frames": frames, **summary})
        print(f"  {name} {frames} frames: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    del engine
    gc.collect()
    if plan.device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _progress(prefix: str) -> Any:
    return lambda line: print(f"  {prefix}: {line}", file=sys.stderr, flush=True)


def markdown(rows: list[dict[str, Any]]) -> str:
    columns = ("model", "frames", "config", "visual tokens", "prefill", "generate", "total", "peak mem",
               "prefill ×", "total ×")  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "| --- | ---: | --- |" + " ---: |" * 7]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['model']} | {row['frames']} | skipped: {row['skipped']} | | | | | | | |")
            continue
        speed, tokens = row["speedup"], row["visual_tokens"]
        cells = [
            row["model"], str(row["frames"]), row["label"], f"{tokens['kept']} / {tokens['total']}",
            *(f"{row[phase]['median'] * 1000:.0f} ms" for phase in ("prefill", "generate", "total")),
            f"{row['peak_memory_bytes']['median'] / 2**30:.1f} GiB",
            f"{speed['prefill'] or 0:.2f}×", f"{speed['total'] or 0:.2f}×",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine(plan: Plan) -> dict[str, Any]:
    import transformers

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(plan.device),
        "dtype": plan.dtype,
        "attn": "sdpa",
    }
    if plan.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(plan.device)
    return info


def parse_args(argv: list[str] | None) -> tuple[Plan, Path]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--frames", default=None, help="comma-separated [default: 32,64; dry run 4,8]")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds before later models are skipped")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, to test this script")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: this is the GPU check (use --dry-run to test it on a CPU)")
    frames = args.frames or ("4,8" if args.dry_run else "32,64")
    plan = Plan(
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        frames=tuple(int(f) for f in frames.split(",")),
        repeat=args.repeat,
        max_new_tokens=args.max_new_tokens,
        device=torch.device("cpu" if args.dry_run else "cuda"),
        dtype="float32" if args.dry_run else "bfloat16",
        tiny=args.dry_run,
        budget=args.budget,
    )
    return plan, args.out


def main(argv: list[str] | None = None) -> int:
    plan, out = parse_args(argv)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    video = synth.make_clip(out / "clip-20s-640x360.mp4", seconds=20, fps=25, size=(640, 360), pattern="cuts")
    rows: list[dict[str, Any]] = []
    for index, name in enumerate(plan.models):
        deadline = start + plan.budget
        if index and time.perf_counter() > deadline:
            rows.append({"model": name, "frames": plan.frames[0], "skipped": "time budget spent"})
            continue
        rows += run_model(name, plan, video, deadline)
    elapsed = time.perf_counter() - start
    plan_json = {**plan.__dict__, "device": str(plan.device)}
    report = {"machine": machine(plan), "plan": plan_json, "seconds": elapsed, "rows": rows}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    table = markdown(rows)
    where = report["machine"]
    header = (
        f"{where.get('gpu', where['device'])}, {plan.dtype}, sdpa, torch {where['torch']}, transformers "
        f"{where['transformers']}; {plan.max_new_tokens} answer tokens, median of {plan.repeat} after a "
        f"warm-up; {elapsed:.0f} s in all"
    )
    (out / "gpu_check.md").write_text(f"{header}\n\n{table}\n")
    print(f"{header}\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
