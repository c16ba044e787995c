"""What reuse buys: a second question on the same video, and a cached video vs a cold one.

Runs on the real-geometry CPU model (`real_shapes.py llava-ov-cpu`, or any `--model` folder) and the
synthetic bench clip, interleaving rounds (round 0 warms up):
- cold: empty feature cache: decode + vision + cache write + prompt + select + prefill + generate;
- second question: another question in the same session (`Session.ask` on the encoded video): decode,
  vision and selection are skipped, only the question is tokenised;
- cached: a new session on the same file with the on-disk cache warm (`cached: true`): a cache read
  replaces decode and vision.

Time to first answer token (TTFT) is every phase before the first answer token: decode or cache read,
vision, cache write, prompt, compress and prefill (model load excluded).

    python -m benchmarks.bench_reuse --frames 16 --repeat 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.bench_pipeline import synthetic_clip
from benchmarks.real_shapes import ensure_checkpoint
from vidqa.cache import FeatureCache
from vidqa.compress.registry import build_compression
from vidqa.engine import Engine
from vidqa.record import PHASES, Result
from vidqa.settings import GenerationSettings, SamplingSettings

BEFORE_FIRST_TOKEN = ("decode", "cache_read", "vision", "cache_write", "prompt", "compress", "prefill")


def ttft(result: Result) -> float:
    """Seconds before the first answer token: every phase up to and including prefill."""
    return sum(getattr(result.timings, name) for name in BEFORE_FIRST_TOKEN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "vidqa-bench")
    parser.add_argument("--model", default="llava-ov-cpu", help="real_shapes name or a checkpoint folder")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(args.model) if Path(args.model).is_dir() else ensure_checkpoint(args.model, args.work_dir)
    video = synthetic_clip(args.work_dir, 20.0)
    sampling = SamplingSettings(frames=args.frames)
    compression = build_compression("vidcom2", keep=args.keep)
    generation = GenerationSettings(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
    names = ("cold", "second question", "cached")
    totals: dict[str, list[float]] = {name: [] for name in names}
    firsts: dict[str, list[float]] = {name: [] for name in names}
    last: dict[str, Result] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = FeatureCache(cache_dir, max_bytes=10**10)
        engine = Engine.load(str(folder), device="cpu", cache=cache)
        for round_index in range(args.repeat + 1):
            cache.clear()
            session = engine.session(video, compression, sampling=sampling, generation=generation)
            cold = session.ask("What happens?", generation=generation)
            second = session.ask("Who is there?", generation=generation)
            cached = engine.session(video, compression, sampling=sampling, generation=generation).ask(
                "What happens?", generation=generation
            )
            assert cached.cached and not cold.cached and not second.cached and second.skipped
            if round_index:
                for name, result in zip(names, (cold, second, cached), strict=True):
                    totals[name].append(result.timings.total)
                    firsts[name].append(ttft(result))
                    last[name] = result
    print(
        f"model {folder.name}, {args.frames} frames, vidcom2 keep {args.keep}, {args.max_new_tokens} tokens, "
        f"median of {args.repeat}, torch threads {torch.get_num_threads()}"
    )
    shown = [name for name in PHASES if name != "total"]
    print(f"| item | TTFT s | TTFT vs cold | total s | {' | '.join(shown)} |")
    print("| --- | ---: | ---: | ---: |" + " ---: |" * len(shown))
    cold_first = statistics.median(firsts["cold"])
    for name in names:
        timings = last[name].timings
        first = statistics.median(firsts[name])
        phases = " | ".join(f"{getattr(timings, phase):.3f}" for phase in shown)
        total = statistics.median(totals[name])
        print(f"| {name} | {first:.3f} | {100 * first / cold_first:.1f} % | {total:.3f} | {phases} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
