"""End-to-end latency of vidqa on a random-weight model of real shapes: none vs VidCom² vs DyCoke.

What it measures, for each frame count: `vidqa.bench.run_bench` (one warm-up round, then `--repeat`
interleaved rounds of every configuration, each a whole item from video decode to the last token, feature
cache off, exactly `--max-new-tokens` generated) on a synthetic clip (default 20 s, 640x360, moving shapes
with a scene cut every 2 s) with a checkpoint from `benchmarks/real_shapes.py` (built once, cached under
`--work-dir`). Configurations: none; VidCom² at keep 0.25 and 0.15; DyCoke at `--dycoke-keep` (default
0.475 = the paper's K = 0.7, stage 2 on with L = 3, P = 0.7).

Per-stage table (medians of the rounds): decode, vision, compress, prefill, decode tokens/s, total, peak
memory, prefill and total speed-ups over none, and compression as a share of the end-to-end total.

Then "plain transformers on the same token counts", paired: in each of `--raw-repeat` rounds (after a
warm-up round) every configuration runs vidqa's prefill (`Session.ask` with one new token on the encoded
video: assemble + generate's first step, DyCoke's decode stage entered) and, right after, the bare LLM
forward `model(inputs_embeds=random (1, L, D), use_cache=True, logits_to_keep=1)` — what `generate` runs for
the first token — at that configuration's LLM input length L. Pairing matters: on a shared VM the machine's
speed drifts by ~20 % over minutes, so numbers taken minutes apart do not compare. The two speed-ups side by
side show what vidqa adds around the LLM; `assemble` is also timed alone.

Run from the repository root with vidqa installed:
    python -m benchmarks.bench_pipeline --model llava-ov-cpu --frames 16            # CPU
    python -m benchmarks.bench_pipeline --model llava-ov-7b --frames 32,64 --device cuda
Peak memory on CPU is the process's peak RSS (a high-water mark: every configuration after the largest one
shows the same value); on CUDA it is each item's peak allocated memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import real_shapes
from vidqa import Engine, synth
from vidqa.bench import run_bench
from vidqa.compress.registry import Compression, build_compression
from vidqa.encoding import VideoEncoding
from vidqa.errors import UsageError
from vidqa.settings import GenerationSettings, SamplingSettings

QUESTION = "describe the video in one sentence."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llava-ov-cpu", choices=real_shapes.names())
    parser.add_argument("--video", type=Path, help="use this clip instead of the synthetic one")
    parser.add_argument("--seconds", type=float, default=20.0, help="synthetic clip length")
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "vidqa-bench")
    parser.add_argument("--frames", default=None, help="comma-separated (default: 16 on CPU, 32,64 on GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="model dtype (default: the recipe's; float32 on CPU)")
    parser.add_argument("--attn", default="auto")
    parser.add_argument("--keeps", default="0.25,0.15", help="VidCom² keep ratios")
    parser.add_argument("--dycoke-keep", type=float, default=0.475, help="0.475 = K 0.7 (paper default)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--raw-repeat", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--json", type=Path, help="write every summary here")
    return parser.parse_args(argv)


# -- setup ---------------------------------------------------------------------------------------------
def synthetic_clip(work_dir: Path, seconds: float) -> Path:
    """A cached 640x360 clip: one moving shape, scene cuts with new colours every 2 s."""
    path = work_dir / f"clip-{seconds:g}s-640x360.mp4"
    if not path.exists():
        work_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part.mp4")
        synth.make_clip(tmp, seconds=seconds, size=(640, 360), pattern="cuts")
        tmp.replace(path)
    return path


def load_engine(args: argparse.Namespace, device: torch.device) -> tuple[Engine, Path, float]:
    """Build (or reuse) the checkpoint on the bench device and load it with no feature cache."""
    rec = real_shapes.recipe(args.model)
    dtype = args.dtype or ("float32" if device.type == "cpu" else rec.default_dtype)
    start = time.perf_counter()
    folder = real_shapes.ensure_checkpoint(args.model, args.work_dir, dtype=dtype, device=str(device))
    built = time.perf_counter() - start
    engine = Engine.load(str(folder), device=str(device), dtype=dtype, attn=args.attn, cache=None)
    return engine, folder, built


def bench_configs(engine: Engine, keeps: list[float], dycoke_keep: float) -> list[Compression]:
    """none, VidCom² at each keep, DyCoke at its keep (stage 2 on: its layer must fit the LLM)."""
    configs = [
        build_compression("none"),
        *(build_compression("vidcom2", keep=k) for k in keeps),
        build_compression("dycoke", keep=dycoke_keep),
    ]
    try:
        for config in configs:
            engine.validate(config)
    except UsageError as exc:
        raise SystemExit(str(exc)) from None
    return configs


def _load() -> float:
    """The 1-minute load average (0 where the platform has none): other work skews CPU timings."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- plain transformers on the same token counts -------------------------------------------------------
@torch.inference_mode()
def raw_forward_seconds(model: Any, embeds: torch.Tensor) -> float:
    """Plain transformers: the first-token forward `generate` runs, on `embeds` (1, L, D)."""
    mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    _sync(embeds.device)
    start = time.perf_counter()
    model(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)
    _sync(embeds.device)
    return time.perf_counter() - start


def paired_prefill(
    engine: Engine, encoding: VideoEncoding, configs: list[Compression], lengths: list[int], repeat: int
) -> list[dict[str, list[float]]]:
    """vidqa's prefill and the raw LLM forward at the same length, side by side in every round.

    vidqa: `Session.ask` with one new token in a fresh session each time (its `prefix` + `prefill` timings:
    assemble, the LLM over the video prefix, then generate's first step over the question, the decode stage
    entered as in a real item; the selection is timed apart, under `compress`). raw: random
    embeddings of the configuration's LLM input length. One warm-up round, then `repeat` rounds that run
    every configuration once each way, so drift in machine speed hits both sides alike.
    """
    model = engine.adapter.model
    hidden = model.config.get_text_config().hidden_size
    generator = torch.Generator().manual_seed(0)
    embeds = [
        (torch.randn(1, n, hidden, generator=generator) * 0.02).to(engine.device, model.dtype)
        for n in lengths
    ]  # (1, L, D) each
    times: list[dict[str, list[float]]] = [{"vidqa": [], "raw": []} for _ in configs]
    one_token = GenerationSettings(max_new_tokens=1)
    for round_index in range(repeat + 1):
        for config, x, out in zip(configs, embeds, times, strict=True):
            session = engine.session(encoding, config)  # a fresh prefix: the whole prompt is read
            result = session.ask(QUESTION, generation=one_token)
            raw = raw_forward_seconds(model, x)
            if round_index > 0:
                out["vidqa"].append(result.timings.prefix + result.timings.prefill)
                out["raw"].append(raw)
    return times


@torch.inference_mode()
def assemble_seconds(engine: Engine, encoding: VideoEncoding, cfg: Compression, n: int) -> float:
    """Median seconds of the adapter's `assemble` (embed, scatter the visual tokens, drop) for one setting."""
    selection = cfg.select(encoding.visual.features)
    t, m, _ = encoding.visual.shape
    keep_mask = None if selection.kept == t * m else selection.mask(m)
    prompt = engine.adapter.prompt(QUESTION, encoding.layout)
    times = []
    for _ in range(n + 1):
        _sync(engine.device)
        start = time.perf_counter()
        engine.adapter.assemble(prompt, encoding.visual, keep_mask)
        _sync(engine.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# -- one frame count -----------------------------------------------------------------------------------
def run_frames(engine: Engine, video: Path, frames: int, args: argparse.Namespace) -> dict[str, Any]:
    sampling = SamplingSettings(frames=frames)
    configs = bench_configs(engine, [float(k) for k in args.keeps.split(",")], args.dycoke_keep)
    loads: list[float] = []

    def progress(line: str) -> None:
        loads.append(_load())
        print(f"  [{frames} frames] {line} (load {loads[-1]:.2f})", file=sys.stderr, flush=True)

    start = time.perf_counter()
    summaries = run_bench(
        engine,
        video,
        QUESTION,
        configs,
        sampling=sampling,
        generation=GenerationSettings(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens),
        repeat=args.repeat,
        on_progress=progress,
    )
    bench_seconds = time.perf_counter() - start
    encoding = engine.encode_video(video, sampling)
    prompt = engine.adapter.prompt(QUESTION, encoding.layout)
    full = int(prompt["input_ids"].shape[1])  # text + every visual token (+ LLaVA's newline)
    for summary in summaries:
        dropped = summary["visual_tokens"]["total"] - summary["visual_tokens"]["kept"]
        summary["llm_input_length"] = full - dropped
    lengths = [s["llm_input_length"] for s in summaries]
    paired = paired_prefill(engine, encoding, configs, lengths, args.raw_repeat)
    for cfg, summary, times in zip(configs, summaries, paired, strict=True):
        summary["paired_prefill"] = {"vidqa": _stats(times["vidqa"]), "raw": _stats(times["raw"])}
        summary["assemble"] = assemble_seconds(engine, encoding, cfg, args.raw_repeat)
    load = [min(loads), max(loads)] if loads else None
    return {"frames": frames, "bench_seconds": bench_seconds, "load_1min": load, "summaries": summaries}


# -- tables --------------------------------------------------------------------------------------------
def _spread(metric: dict[str, float]) -> str:
    return f"{metric['median']:.3f} ({metric['min']:.3f}–{metric['max']:.3f})"


def stage_table(run: dict[str, Any]) -> str:
    rows = [
        "| config | visual tokens | decode s | vision s | compress s | prefill s | decode tok/s | total s "
        "| peak mem | prefill × | total × | compress % of total |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in run["summaries"]:
        speed = s.get("speedup", {})
        share = 100 * s["compress"]["median"] / s["total"]["median"] if s["total"]["median"] else 0.0
        rows.append(
            f"| {s['label']} | {s['visual_tokens']['kept']} / {s['visual_tokens']['total']} "
            f"| {s['decode']['median']:.3f} | {s['vision']['median']:.3f} | {s['compress']['median']:.4f} "
            f"| {_spread(s['prefill'])} | {s['decode_tps']['median']:.1f} | {_spread(s['total'])} "
            f"| {s['peak_memory_bytes']['median'] / 2**30:.2f} GiB "
            f"| {speed.get('prefill') or 1.0:.2f} | {speed.get('total') or 1.0:.2f} | {share:.2f} % |"
        )
    return "\n".join(rows)


def raw_table(run: dict[str, Any]) -> str:
    base = run["summaries"][0]["paired_prefill"]
    rows = [
        "| config | LLM input tokens | raw LLM prefill s | raw × | vidqa prefill s | vidqa × "
        "| vidqa − raw ms | assemble ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in run["summaries"]:
        raw, ours = s["paired_prefill"]["raw"]["median"], s["paired_prefill"]["vidqa"]["median"]
        rows.append(
            f"| {s['label']} | {s['llm_input_length']} | {raw:.3f} | {base['raw']['median'] / raw:.2f} "
            f"| {ours:.3f} | {base['vidqa']['median'] / ours:.2f} | {1000 * (ours - raw):.0f} "
            f"| {1000 * s['assemble']:.1f} |"
        )
    return "\n".join(rows)


def machine(engine: Engine) -> dict[str, Any]:
    import transformers

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(engine.device),
        "dtype": str(engine.adapter.model.dtype),
        "attn": engine.adapter.model.config._attn_implementation,
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    if engine.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(engine.device)
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vidqa.models.loading import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    frame_counts = [int(f) for f in (args.frames or ("32,64" if device.type == "cuda" else "16")).split(",")]
    video = args.video or synthetic_clip(args.work_dir, args.seconds)
    engine, folder, built = load_engine(args, device)
    params = real_shapes.parameter_count(engine.adapter.model)
    before = machine(engine)
    print(
        f"# {args.model} ({params / 1e6:.0f}M parameters, {folder}, ready in {built:.1f} s)", file=sys.stderr
    )
    runs = [run_frames(engine, video, frames, args) for frames in frame_counts]
    report = {"model": args.model, "parameters": params, "video": str(video), "machine": before, "runs": runs}
    report["machine_after"] = {"load_average": machine(engine).get("load_average")}
    print(
        f"\n{args.model}, {params / 1e6:.0f}M parameters, {before['device']} {before['dtype']}, "
        f"attn {before['attn']}, {before['torch_threads']} threads, load {before.get('load_average')}"
    )
    for run in runs:
        print(
            f"\n### {run['frames']} frames ({args.repeat} rounds + warm-up, {run['bench_seconds']:.0f} s, "
            f"1-min load during the rounds {run['load_1min']})\n"
        )
        print(stage_table(run))
        print(
            "\nPrefill, paired: vidqa (`Session.ask`, 1 new token) and plain transformers "
            f"(forward on random embeddings of the same length), interleaved, {args.raw_repeat} rounds:\n"
        )
        print(raw_table(run))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
