"""What reuse buys: a second question about an encoded video, and a question in a new process on a clip whose
features and video prefix are on disk, against a cold item.

Runs on the real-geometry CPU model (`real_shapes.py llava-ov-cpu`, or any `--model` folder) and the
synthetic bench clip, in interleaved rounds (round 0 warms up). Each round empties the cache, then:
- cold: a new session, first question: decode + vision + cache write + prompt + select + prefix + prefill;
- second question: another question in the same session: the video prefix's cache is forked in memory and
  the LLM reads only the question's tokens;
- new session, disk: a new session in this process: the features and the prefix come from the disk cache;
- cold, new process / new process, disk: as a user runs `vidqa ask` twice, each in a fresh Python process
  (the child loads the model, not timed, then times one question like the others), first on an empty
  cache, then on the cache the in-process rows filled. A fresh process pays one-time costs on its first
  question (first touch of the weights, kernel set-up), so each new-process row is compared with the cold
  item in a new process too.

Time to first answer token (TTFT) sums every phase before the first answer token (`BEFORE_FIRST_TOKEN`:
decode or cache read, vision, cache write, prompt, compress, prefix, prefill), as the records report them.

    python -m benchmarks.bench_reuse --frames 16 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_pipeline import synthetic_clip
from benchmarks.real_shapes import ensure_checkpoint
from vidqa.cache import FeatureCache
from vidqa.compress.registry import build_compression
from vidqa.engine import Engine
from vidqa.record import BEFORE_FIRST_TOKEN, PHASES
from vidqa.settings import GenerationSettings, SamplingSettings

ROWS = ("cold", "second question", "new session, disk", "cold, new process", "new process, disk")
#: what each row is compared with: the cold item in the same kind of process
BASELINE = {"new process, disk": "cold, new process", "cold, new process": "cold, new process"}
QUESTIONS = ("What happens?", "Who is there?", "Is there a dog?")


def ttft(record: dict[str, Any]) -> float:
    return sum(record["timings"][name] for name in BEFORE_FIRST_TOKEN)


def ask_once(
    args: argparse.Namespace, folder: Path, video: Path, cache_dir: str, question: str
) -> dict[str, Any]:
    """One question, in this process: load (not timed), new session, answer; the record."""
    engine = Engine.load(str(folder), device="cpu", cache=FeatureCache(cache_dir, max_bytes=10**10))
    return _session(engine, args, video).ask(question, generation=_generation(args)).to_dict()


def _session(engine: Engine, args: argparse.Namespace, video: Path) -> Any:
    compression = build_compression("vidcom2", keep=args.keep)
    return engine.session(video, compression, sampling=SamplingSettings(frames=args.frames))


def _generation(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)


def in_new_process(args: argparse.Namespace, folder: Path, video: Path, cache_dir: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bench_reuse", "--child", cache_dir, "--model", str(folder)]
    command += ["--frames", str(args.frames), "--keep", str(args.keep), "--work-dir", str(args.work_dir)]
    command += ["--max-new-tokens", str(args.max_new_tokens)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


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
    parser.add_argument("--child", metavar="CACHE_DIR", help=argparse.SUPPRESS)  # the new-process row
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(args.model) if Path(args.model).is_dir() else ensure_checkpoint(args.model, args.work_dir)
    video = synthetic_clip(args.work_dir, 20.0)
    if args.child:
        print(json.dumps(ask_once(args, folder, video, args.child, QUESTIONS[2])))
        return 0
    generation = _generation(args)
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in ROWS}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = FeatureCache(cache_dir, max_bytes=10**10)
        engine = Engine.load(str(folder), device="cpu", cache=cache)
        for round_index in range(args.repeat + 1):
            cache.clear()
            session = _session(engine, args, video)
            cold = session.ask(QUESTIONS[0], generation=generation).to_dict()
            second = session.ask(QUESTIONS[1], generation=generation).to_dict()
            fresh = _session(engine, args, video).ask(QUESTIONS[2], generation=generation).to_dict()
            with tempfile.TemporaryDirectory() as empty:
                child_cold = in_new_process(args, folder, video, empty)
            child = in_new_process(args, folder, video, cache_dir)
            assert cold["prefix"]["source"] == child_cold["prefix"]["source"] == "read"
            assert second["prefix"]["source"] == "memory"
            assert fresh["prefix"]["source"] == child["prefix"]["source"] == "disk"
            if round_index:
                for name, record in zip(ROWS, (cold, second, fresh, child_cold, child), strict=True):
                    records[name].append(record)
        sizes = _entry_sizes(Path(cache_dir))
    firsts = {name: statistics.median(ttft(r) for r in records[name]) for name in ROWS}
    print(
        f"model {folder.name}, {args.frames} frames, vidcom2 keep {args.keep}, {args.max_new_tokens} answer "
        f"tokens, median of {args.repeat} rounds, torch threads {torch.get_num_threads()}; cache entries: "
        + ", ".join(f"{kind} {size / 2**20:.1f} MiB" for kind, size in sizes.items())
    )
    shown = [name for name in PHASES if name != "total"]
    print(f"| item | TTFT | vs cold | total | {' | '.join(shown)} |")
    print("| --- | ---: | ---: | ---: |" + " ---: |" * len(shown))
    for name in ROWS:
        first = firsts[name]
        total = statistics.median(r["timings"]["total"] for r in records[name])
        last = records[name][-1]["timings"]
        phases = " | ".join(f"{last[phase]:.3f}" for phase in shown)
        ratio = 100 * first / firsts[BASELINE.get(name, "cold")]
        print(f"| {name} | {first:.3f} s | {ratio:.1f} % | {total:.3f} s | {phases} |")
    return 0


def _entry_sizes(directory: Path) -> dict[str, int]:
    """Bytes of the cache's entries by kind (features, prefix)."""
    sizes: dict[str, int] = {}
    for entry in directory.glob("*/*"):
        if entry.name.startswith("."):
            continue
        meta = json.loads((entry / "meta.json").read_text())["meta"]
        kind = meta.get("kind", "features")
        sizes[kind] = sizes.get(kind, 0) + sum(f.stat().st_size for f in entry.iterdir())
    return sizes


if __name__ == "__main__":
    raise SystemExit(main())
