"""What reuse buys: a second question on the same video, and a cached video vs a cold one.

Runs on the real-geometry CPU model (`real_shapes.py llava-ov-cpu`, or any `--model` folder) and the
synthetic bench clip, interleaving rounds:
- cold: empty feature cache — decode + vision + select + prefill + generate;
- second question: another question about the video already encoded in memory (`Engine.answer` on the same
  `EncodedVideo`): decode, vision and selection are skipped;
- cached: a fresh encode of the same file with the on-disk cache warm (`cached: true`): decode and vision
  are replaced by a cache read plus the prompt rebuild.

    python benchmarks/bench_reuse.py --work-dir /tmp/vidqa-bench --frames 16 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_pipeline import synthetic_clip
from real_shapes import ensure_checkpoint

from vidqa.cache import FeatureCache
from vidqa.engine import Engine
from vidqa.settings import CompressionSettings, SamplingSettings


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
    compression = CompressionSettings.build(method="vidcom2", keep=args.keep, params={})
    tokens = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens}
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = FeatureCache(cache_dir, max_bytes=10**10)
        engine = Engine.load(str(folder), device="cpu", cache=cache)
        times: dict[str, list[float]] = {"cold": [], "second question": [], "cached": []}
        for round_index in range(args.repeat + 1):  # round 0 warms up
            cache.clear()
            encoded = engine.encode(video, "What happens?", sampling)
            cold = engine.answer(video, "What happens?", encoded, compression, **tokens)
            second = engine.answer(video, "Who is there?", encoded, compression, **tokens)
            cached_encoded = engine.encode(video, "What happens?", sampling)
            cached = engine.answer(video, "What happens?", cached_encoded, compression, **tokens)
            assert cached.cached and not cold.cached and second.cached
            if round_index:
                for name, result in (("cold", cold), ("second question", second), ("cached", cached)):
                    times[name].append(result.timings.total)
                last = {"cold": cold, "second question": second, "cached": cached}
    print(
        f"model {folder.name}, {args.frames} frames, vidcom2 keep {args.keep}, {args.max_new_tokens} tokens, "
        f"median of {args.repeat}, torch threads {torch.get_num_threads()}"
    )
    print("| item | total s (median) | decode s | vision s | compress s | prefill s | generate s | vs cold |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    cold_median = statistics.median(times["cold"])
    for name, values in times.items():
        t = last[name].timings
        median = statistics.median(values)
        print(
            f"| {name} | {median:.3f} | {t.decode:.3f} | {t.vision:.3f} | {t.compress:.4f} | {t.prefill:.3f} "
            f"| {t.generate:.3f} | {cold_median / median:.2f}× |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
