"""Cost of the token selection alone: VidCom² `select`, DyCoke `temporal_merge`, V-CAST `select` and FastVID
`select` (both variants, merging included) on 7B-sized features.

What it measures: wall time of `vidqa.compress.vidcom2.select(features, keep)`,
`vidqa.compress.dycoke.temporal_merge(features, prune)` and `vidqa.compress.vcast.select(features, keep)`
on one video's visual tokens of the shape LLaVA-OV-7B / Qwen2.5-VL-7B hand them over — T frames (32, 64) x
M = 196 tokens x D = 3584 channels — in float32 and bfloat16, on the CPU and (when available) on CUDA,
device-synchronised; median (and min) of `--repeat` runs after `--warmup` runs. Also the time to turn the
selection into the (T, M) keep mask the engine hands to the adapter (`Selection.mask`), which the engine
pays once per item as well.

The features are synthetic but not white noise: scenes of 8 frames share a base pattern plus per-frame
noise, so frames differ in uniqueness the way video frames do (timings barely depend on the values).

Run with vidqa importable (`pip install -e .` or `PYTHONPATH=.`):
    python -m benchmarks.bench_compress --frames 32,64 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vidqa.compress import dycoke, fastvid, vcast, vidcom2
from vidqa.compress.base import Selection

TOKENS_PER_FRAME = 196  # LLaVA-OV: 27x27 SigLIP patches pooled to 14x14
CHANNELS = 3584  # the 7B LLM width (Qwen2-7B / Qwen2.5-7B)
SCENE_FRAMES = 8


@dataclass(frozen=True)
class Case:
    method: str  # "vidcom2 0.25", "dycoke K=0.7", ...
    run: Callable[[torch.Tensor], Selection]


CASES = (
    Case("vidcom2 0.25", lambda x: vidcom2.select(x, keep=0.25)),
    Case("vidcom2 0.15", lambda x: vidcom2.select(x, keep=0.15)),
    Case("dycoke K=0.7", lambda x: dycoke.temporal_merge(x, prune=0.7)),
    Case("vcast 0.25", lambda x: vcast.select(x, keep=0.25)),
    Case("vcast 0.1", lambda x: vcast.select(x, keep=0.1)),
    Case("fastvid ov 0.25", lambda x: fastvid.select(x, 0.25, saliency=saliency(x), variant="ov")),
    Case("fastvid ov 0.1", lambda x: fastvid.select(x, 0.1, saliency=saliency(x), variant="ov")),
    Case("fastvid qwen 0.25", lambda x: fastvid.select(x, 0.25, saliency=saliency(x), variant="qwen")),
)


def saliency(x: torch.Tensor) -> torch.Tensor:
    """FastVID's per-token saliency (from the vision tower in vidqa; here a fixed softmax of the norms,
    which costs nothing measurable next to the method)."""
    return torch.softmax(x.float().norm(dim=-1), dim=-1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", default="32,64", help="comma-separated frame counts T")
    parser.add_argument("--tokens", type=int, default=TOKENS_PER_FRAME, help="M")
    parser.add_argument("--channels", type=int, default=CHANNELS, help="D")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--devices", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    return parser.parse_args(argv)


def features(frames: int, tokens: int, channels: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """(T, M, D) tokens: one base pattern per scene of 8 frames plus per-frame noise; fixed seed."""
    generator = torch.Generator().manual_seed(0)
    scenes = -(-frames // SCENE_FRAMES)
    base = torch.randn(scenes, 1, tokens, channels, generator=generator)  # (S, 1, M, D)
    noise = torch.randn(scenes, SCENE_FRAMES, tokens, channels, generator=generator)  # (S, 8, M, D)
    x = (base + 0.5 * noise).flatten(0, 1)[:frames]  # (T, M, D)
    return x.to(device=device, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeat: int, warmup: int) -> list[float]:
    """Seconds of `repeat` calls after `warmup` untimed ones, device-synchronised around each."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def measure(case: Case, x: torch.Tensor, args: argparse.Namespace) -> dict[str, float | int | str]:
    select_times = timed(lambda: case.run(x), x.device, args.repeat, args.warmup)
    selection = case.run(x)
    mask_times = timed(lambda: selection.mask(x.shape[1]), x.device, args.repeat, args.warmup)
    return {
        "method": case.method,
        "frames": x.shape[0],
        "dtype": str(x.dtype).removeprefix("torch."),
        "device": x.device.type,
        "median_ms": 1000 * statistics.median(select_times),
        "min_ms": 1000 * min(select_times),
        "mask_ms": 1000 * statistics.median(mask_times),
        "kept": selection.kept,
        "total": x.shape[0] * x.shape[1],
    }


def table(rows: list[dict[str, float | int | str]]) -> str:
    lines = [
        "| method | T | dtype | device | median ms | min ms | mask ms | kept / total |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['frames']} | {r['dtype']} | {r['device']} | {r['median_ms']:.1f} "
            f"| {r['min_ms']:.1f} | {r['mask_ms']:.2f} | {r['kept']} / {r['total']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = (args.devices or ("cpu,cuda" if torch.cuda.is_available() else "cpu")).split(",")
    rows = []
    for device in devices:
        for dtype_name in args.dtypes.split(","):
            dtype = getattr(torch, dtype_name)
            for frames in (int(f) for f in args.frames.split(",")):
                x = features(frames, args.tokens, args.channels, dtype, device)
                for case in CASES:
                    rows.append(measure(case, x, args))
                    print(
                        f"  {rows[-1]['method']} T={frames} {dtype_name} {device}",
                        file=sys.stderr,
                        flush=True,
                    )
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    print(
        f"\nM={args.tokens}, D={args.channels}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, "
        f"load {load}, median of {args.repeat} after {args.warmup} warm-up\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
