"""Which model can a laptop run? An 8-frame question on a 2-core CPU, per candidate default model.

For each candidate (random weights of its real shape, float32, built in memory; one fresh interpreter per
model so memory is returned) it asks one question about `examples/clip.mp4` the way a first-time user does:
`vidqa ask examples/clip.mp4 "…"` with the defaults (8 frames, VidCom² at keep 0.25) and, for reference, no
compression; answers forced to `--max-new-tokens` tokens. One warm-up item, then `--repeat` timed ones; the
table gives the median of each phase and the item's total (model load excluded: it is paid once).

    python -m benchmarks.bench_laptop --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("qwen3.5-2b", "qwen3.5-0.8b", "qwen3-vl-2b", "internvl3.5-2b", "smolvlm2-2.2b", "llava-ov-0.5b")
CLIP = Path(__file__).resolve().parent.parent / "examples" / "clip.mp4"
QUESTION = "What happens in this video?"
PHASES = ("decode", "vision", "compress", "prefill", "generate", "total")


def worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One model: build, then time the items (runs in its own interpreter)."""
    import torch

    from benchmarks import real_shapes
    from vidqa.compress.registry import build_compression
    from vidqa.engine import Engine
    from vidqa.models import adapter_class
    from vidqa.settings import GenerationSettings, SamplingSettings

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = real_shapes.build_model(name, dtype="float32", device="cpu")
    tokenizer = real_shapes.tokenizer_for(name)
    model.generation_config = real_shapes.generation_config(tokenizer)
    processor = real_shapes.recipe(name).processor(tokenizer)
    engine = Engine(adapter_class(model.config.model_type)(model, processor, identity=name), model_name=name)
    built = time.perf_counter() - start
    sampling = SamplingSettings(frames=args.frames)
    generation = GenerationSettings(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
    out: dict[str, Any] = {"model": name, "parameters": real_shapes.parameter_count(model), "build_s": built}
    for label, compression in (("vidcom2 0.25", build_compression("vidcom2", keep=0.25)),
                               ("none", build_compression("none"))):  # fmt: skip
        runs = []
        for _ in range(args.repeat + 1):  # the first is a warm-up
            result = engine.session(CLIP, compression, sampling=sampling, generation=generation).ask(
                QUESTION, generation=generation
            )
            timings = result.timings.to_dict()
            timings["prefill"] += timings["prefix"]  # a first question: the LLM reads the whole prompt
            runs.append(timings | {"kept": result.visual_kept, "total_tokens": result.visual_total})
        timed = runs[1:]
        out[label] = {phase: statistics.median(r[phase] for r in timed) for phase in PHASES}
        out[label]["visual_tokens"] = f"{timed[-1]['kept']}/{timed[-1]['total_tokens']}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(CANDIDATES))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return 0
    root = Path(__file__).resolve().parent.parent
    rows = []
    for name in args.models.split(","):
        command = [sys.executable, "-m", "benchmarks.bench_laptop", *(argv or sys.argv[1:]), "--worker", name]
        done = subprocess.run(command, capture_output=True, text=True, cwd=root, check=False)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(
        f"examples/clip.mp4, {args.frames} frames, {args.max_new_tokens} answer tokens, {args.threads} "
        f"threads, float32, median of {args.repeat} after a warm-up\n"
    )
    print("| model | parameters | setting | visual tokens | " + " | ".join(PHASES) + " |")
    print("| --- | ---: | --- | ---: |" + " ---: |" * len(PHASES))
    for row in rows:
        for label in ("vidcom2 0.25", "none"):
            t = row[label]
            cells = " | ".join(f"{t[phase]:.2f} s" for phase in PHASES)
            size = f"{row['parameters'] / 1e9:.2f} B"
            print(f"| {row['model']} | {size} | {label} | {t['visual_tokens']} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
