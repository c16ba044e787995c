"""Decode speed and peak memory of generation with and without DyCoke stage 2 (decode-time KV pruning).

Three measurements, printed as markdown tables:
1. per-layer attention of one decode step at the published LLaVA-OV LLM head shapes (0.5B and 7B): stock
   sdpa over every key; the extra score row + top-k at layer L − 1; gather + sdpa over the kept keys at a
   layer ≥ L — and the net change per pruned step over all layers. Precise, and the mechanism in numbers.
2. a random-weight LLaVA-OneVision whose LLM has the Qwen2-0.5B shapes (hidden 896, 14 heads, 2 KV heads,
   MLP 4864, vocabulary 151936; `--layers` of its 24, by default 8 so a CPU run stays short), fed text,
   `--visual` random visual embeddings (2960 = what DyCoke's TTM keeps of 32×196 at K = 0.7; 6272 = none
   dropped), text. Each configuration runs `generate` with the same forced number of new tokens
   (min_new_tokens = max_new_tokens) in a fresh subprocess, so its peak RSS (`ru_maxrss`) is its own (on
   CUDA the peak allocated memory too); ms/token counts the steps after the first token (logits-processor
   timestamps, device-synchronised), so prefill is excluded.
3. decode loops: the same decode steps as single-token forwards from one prefill, every configuration
   interleaved round by round in one process, best and median of `--loops` rounds; on a shared machine this
   is the figure to compare (per-process generate timings carry the load of the moment).

Configurations: `stock` (no stage 2); `dycoke` (stage 2 at the given P, τ; with random weights consecutive
score vectors are nearly parallel, so mostly only the first decode step prunes: the overhead case);
`always` (τ above 1: every decode step prunes, the best case for speed); `identity` (P = 0, τ above 1:
every step scores and gathers everything: pure overhead). Stage 2 keeps the whole cache, so it cannot
lower peak memory; what it changes is decode time: one float32 score row at layer L − 1 and a host sync
per step, against attention over (1 − P) of the visual keys at layers ≥ L.

Run: `python -m benchmarks.bench_dycoke_decode --visual 2960 6272 --threads 1` (`--micro` for table 1 only).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS = ("stock", "dycoke", "always", "identity")
TEXT_BEFORE = 14  # LLaVA-OV chat header before the video (the reference's image_token_start_index)
TEXT_AFTER = 24  # newline, question, generation prompt
QWEN2_05B = dict(
    model_type="qwen2",
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visual", type=int, nargs="+", default=[2960], help="visual token counts")
    parser.add_argument("--layers", type=int, default=8, help="LLM layers (Qwen2-0.5B has 24)")
    parser.add_argument("--new-tokens", type=int, default=32, help="forced new tokens per run")
    parser.add_argument("--layer", type=int, default=3, help="DyCoke L")
    parser.add_argument("--prune", type=float, default=0.7, help="DyCoke P")
    parser.add_argument("--gate", type=float, default=0.9, help="DyCoke tau")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=1, help="generate processes per configuration")
    parser.add_argument("--loops", type=int, default=5, help="interleaved decode-loop rounds (best, median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    parser.add_argument("--micro", action="store_true", help="only the per-layer attention timings")
    parser.add_argument("--worker", choices=[*CONFIGS, "loops"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- one configuration, in its own process -----------------------------------------------------------------
def build_model(args: argparse.Namespace) -> Any:
    """A random-weight LLaVA-OV with the 0.5B LLM shapes (same seed, so identical weights in every run)."""
    import torch
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        text_config={**QWEN2_05B, "num_hidden_layers": args.layers},
        vision_config=dict(  # never run: the visual tokens are given as embeddings
            model_type="siglip_vision_model",
            image_size=32,
            patch_size=16,
            hidden_size=64,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            vision_use_head=False,
        ),
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(config).to(args.device, getattr(torch, args.dtype))
    return model.eval()


def build_prompt(model: Any, visual: int) -> tuple[Any, Any]:
    """inputs_embeds (1, P, D) = text, `visual` random visual embeddings, text; and the visual positions."""
    import torch

    generator = torch.Generator().manual_seed(1)
    hidden = model.config.get_text_config().hidden_size
    ids = torch.randint(0, 1000, (TEXT_BEFORE + TEXT_AFTER,), generator=generator).to(model.device)
    text = model.get_input_embeddings()(ids)  # (T, D)
    features = torch.randn(visual, hidden, generator=generator).to(model.device, text.dtype)  # (V, D)
    embeds = torch.cat([text[:TEXT_BEFORE], features, text[TEXT_BEFORE:]])[None]  # (1, P, D)
    return embeds, torch.arange(TEXT_BEFORE, TEXT_BEFORE + visual)


def make_stage(name: str, model: Any, positions: Any, args: argparse.Namespace) -> Any:
    from vidqa.compress.dycoke_decode import DecodePruning

    settings = {
        "stock": None,
        "dycoke": (args.prune, args.gate),
        "always": (args.prune, 1.5),
        "identity": (0.0, 1.5),
    }[name]
    if settings is None:
        return None
    prune, gate = settings
    return DecodePruning(model, visual_positions=positions, layer=args.layer, prune=prune, gate=gate)


def timed_generate(model: Any, embeds: Any, stage: Any, new_tokens: int) -> tuple[list[float], Any]:
    """Greedy generate of exactly `new_tokens`; returns when each step's logits were ready, and the output."""
    import contextlib

    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class Stamp(LogitsProcessor):
        def __init__(self) -> None:
            self.times: list[float] = []

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            _sync(scores.device)
            self.times.append(time.perf_counter())
            return scores

    stamp = Stamp()
    with torch.no_grad(), stage or contextlib.nullcontext():
        output = model.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
            logits_processor=LogitsProcessorList([stamp]),
            return_dict_in_generate=True,
        )
    return stamp.times, output


def decode_loop(model: Any, cache: Any, token: Any, steps: int, stage: Any) -> float:
    """ms per step of `steps` greedy single-token forwards on `cache` (grown in place), under `stage`.

    Decode steps only, without generate's bookkeeping: cheap to repeat from one prefill, so load noise on a
    shared machine can be beaten by taking the best of several loops.
    """
    import contextlib

    import torch

    embed = model.get_input_embeddings()
    with torch.no_grad(), stage or contextlib.nullcontext():
        _sync(token.device)
        start = time.perf_counter()
        for _ in range(steps):
            out = model(inputs_embeds=embed(token.view(1, 1)), past_key_values=cache, use_cache=True)
            token = out.logits[0, -1].argmax()
        _sync(token.device)
    return 1000 * (time.perf_counter() - start) / steps


def _sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_worker(args: argparse.Namespace, visual: int) -> dict[str, Any]:
    """One configuration: a timed generate (prefill, decode, memory, stage figures), then decode loops."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args)
    embeds, positions = build_prompt(model, visual)
    timed_generate(model, embeds[:, :64], None, 3)  # warm-up: kernels, allocator, lazy imports
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    stage = make_stage(args.worker, model, positions, args)
    start = time.perf_counter()
    times, _ = timed_generate(model, embeds, stage, args.new_tokens)
    result: dict[str, Any] = {
        "config": args.worker,
        "visual": visual,
        "prompt": int(embeds.shape[1]),
        "prefill_s": times[0] - start,
        "generate_ms_per_token": 1000 * (times[-1] - times[0]) / (len(times) - 1),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stats": stage.stats()["dycoke"] if stage is not None else None,
    }
    if args.device.startswith("cuda"):
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_loops(args: argparse.Namespace, visual: int) -> dict[str, list[float]]:
    """Decode-loop ms/token of every configuration, interleaved round by round in one process from one
    prefill, so that load on a shared machine hits them alike (a per-process comparison is noisier)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args)
    embeds, positions = build_prompt(model, visual)
    _, output = timed_generate(model, embeds, None, 2)
    cache, first = output.past_key_values, output.sequences[0, 0]
    loops: dict[str, list[float]] = {name: [] for name in args.configs}
    for round_ in range(args.loops + 1):  # round 0 warms up every configuration
        for name in args.configs:
            cache.crop(int(embeds.shape[1]) - cache.get_seq_length())  # negative: drop decoded tokens
            stage = make_stage(name, model, positions, args)
            ms = decode_loop(model, cache, first, args.new_tokens - 1, stage)
            if round_:
                loops[name].append(ms)
    return loops


# -- driver ------------------------------------------------------------------------------------------------
def run_config(argv: list[str], name: str, visual: int) -> Any:
    """One worker in a fresh interpreter; its last stdout line is the JSON result."""
    root = Path(__file__).resolve().parent.parent
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_dycoke_decode",
        *argv,
        "--worker",
        name,
        "--visual",
        str(visual),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"{name} (visual={visual}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def kv_cache_mib(args: argparse.Namespace, tokens: int) -> float:
    """Size of the full KV cache (kept whole with or without stage 2)."""
    head_dim = QWEN2_05B["hidden_size"] // QWEN2_05B["num_attention_heads"]
    width = {"float32": 4, "bfloat16": 2, "float16": 2}[args.dtype]
    return 2 * args.layers * QWEN2_05B["num_key_value_heads"] * head_dim * tokens * width / 2**20


def summarise(runs: list[dict[str, Any]], loops: list[float]) -> dict[str, Any]:
    """Medians over the generate runs, the largest memory figures, best and median decode loop."""
    summary = dict(runs[0])
    for name in ("prefill_s", "generate_ms_per_token"):
        summary[name] = statistics.median(r[name] for r in runs)
    summary["loop_best"] = min(loops)
    summary["loop_median"] = statistics.median(loops)
    summary["max_rss_mib"] = max(r["max_rss_mib"] for r in runs)
    if "cuda_peak_mib" in summary:
        summary["cuda_peak_mib"] = max(r["cuda_peak_mib"] for r in runs)
    return summary


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| visual | config | pruned steps | visual attended | prefill s | generate ms/token | "
        "decode loop ms/token best / median | best vs stock | peak RSS MiB | KV cache MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    stock = {r["visual"]: r["loop_best"] for r in rows if r["config"] == "stock"}
    for r in rows:
        stats = r["stats"] or {}
        pruned = f"{stats['pruned_steps']}/{stats['decode_steps']}" if stats else "-"
        attended = stats.get("mean_visual_attended")
        attended_text = "-" if attended is None else f"{attended:.0f}"
        speed = f"{stock[r['visual']] / r['loop_best']:.2f}x" if r["visual"] in stock else "-"
        memory = f"{r['max_rss_mib']:.0f}"
        if "cuda_peak_mib" in r:
            memory += f" (CUDA {r['cuda_peak_mib']:.0f})"
        lines.append(
            f"| {r['visual']} | {r['config']} | {pruned} | {attended_text} | {r['prefill_s']:.2f} | "
            f"{r['generate_ms_per_token']:.1f} | {r['loop_best']:.1f} / {r['loop_median']:.1f} | {speed} | "
            f"{memory} | {kv_cache_mib(args, r['prompt'] + args.new_tokens):.1f} |"
        )
    return "\n".join(lines)


# -- per-layer attention timings ---------------------------------------------------------------------------
#: (name, query heads, KV heads, head dim, layers) of the published LLaVA-OV LLMs (Qwen2-0.5B / Qwen2-7B).
ATTENTION_SHAPES = (("0.5B", 14, 2, 64, 24), ("7B", 28, 4, 128, 28))


def _time_us(fn: Any, device: str, batches: int = 7, calls: int = 40) -> float:
    """Best of `batches` batch means of `calls` calls, in µs (device-synchronised): load on a shared
    machine only ever adds time, so the fastest batch is the closest to the cost itself."""
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(batches):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def _attention_case(
    args: argparse.Namespace, heads: int, kv_heads: int, dim: int, visual: int
) -> list[float]:
    """µs for: stock sdpa over every key; score row + top-k + kept index; gather + sdpa over the kept keys."""
    import types

    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from vidqa.compress.dycoke_decode import keep_index, score_row, take_keys

    dtype = getattr(torch, args.dtype)
    num_keys = TEXT_BEFORE + visual + TEXT_AFTER + args.new_tokens // 2
    positions = torch.arange(TEXT_BEFORE, TEXT_BEFORE + visual, device=args.device)  # (V,)
    keep = int(visual * (1 - args.prune))
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, layer_idx=0)
    query = torch.randn(1, heads, 1, dim, device=args.device, dtype=dtype)
    key = torch.randn(1, kv_heads, num_keys, dim, device=args.device, dtype=dtype)  # (1, Hkv, N, d)
    value = torch.randn_like(key)
    scale = dim**-0.5

    def stock(k: Any = key, v: Any = value) -> Any:
        return sdpa_attention_forward(module, query, k, v, None, scaling=scale)

    def score() -> Any:
        scores = score_row(query, key, None, scale)[positions]  # (V,)
        return keep_index(num_keys, positions, positions[torch.topk(scores, keep).indices])

    index = score()

    def pruned() -> Any:
        return stock(take_keys(key, index), take_keys(value, index))

    return [num_keys, len(index), *(_time_us(fn, args.device) for fn in (stock, score, pruned))]


def micro_rows(args: argparse.Namespace, visual: int) -> list[str]:
    """One decode step's attention at one layer: stock sdpa, the score row at L − 1, a pruned layer ≥ L."""
    rows = []
    for name, heads, kv_heads, dim, layers in ATTENTION_SHAPES:
        num_keys, kept, full_us, score_us, pruned_us = _attention_case(args, heads, kv_heads, dim, visual)
        net_ms = (score_us + (layers - args.layer) * (pruned_us - full_us)) / 1000
        rows.append(
            f"| {name} | {visual} | {num_keys:.0f} | {kept:.0f} | {full_us:.0f} | {score_us:.0f} | "
            f"{pruned_us:.0f} | {net_ms:+.2f} ({layers} layers) |"
        )
    return rows


def micro_table(args: argparse.Namespace) -> str:
    lines = [
        "| LLM | visual | keys | kept keys | stock attention µs/layer | score row + top-k at L−1 µs | "
        "pruned attention incl. gather µs/layer | net per pruned step ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for visual in args.visual:
        lines += micro_rows(args, visual)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker == "loops":
        print(json.dumps(run_loops(args, args.visual[0])))
        return
    if args.worker:
        print(json.dumps(run_worker(args, args.visual[0])))
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    where = f"{args.dtype} on {args.device}, L={args.layer}, P={args.prune}"
    print(f"Per-layer attention of one decode step, {where}\n")
    print(micro_table(args) + "\n")
    if args.micro:
        return
    passthrough = _strip_option(argv, "--visual")
    rows = []
    for visual in args.visual:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.configs}
        for _ in range(args.repeats):  # interleaved, so load drift hits every configuration alike
            for name in args.configs:
                runs[name].append(run_config(passthrough, name, visual))
        loops = run_config(passthrough, "loops", visual)
        rows += [summarise(runs[name], loops[name]) for name in args.configs]
    print(
        f"LLaVA-OV-shaped random model: Qwen2-0.5B LLM with {args.layers} layers, "
        f"{args.dtype} on {args.device}; "
        f"L={args.layer}, P={args.prune}, tau={args.gate}; {args.new_tokens} forced new tokens; "
        f"generate: {args.repeats} process(es) per configuration; decode loops: {args.loops} interleaved "
        "rounds in one process\n"
    )
    print(table(rows, args))


def _strip_option(argv: list[str], option: str) -> list[str]:
    """argv without `option` and its values (the driver passes one value per worker)."""
    out: list[str] = []
    skipping = False
    for item in argv:
        if item == option:
            skipping = True
            continue
        if skipping and not item.startswith("--"):
            continue
        skipping = False
        out.append(item)
    return out


if __name__ == "__main__":
    main()
