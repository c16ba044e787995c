"""`vidqa serve` under load: latency of a first and a second request about a video, and requests per minute
with 8 concurrent clients, measured from the client's side through the official `openai` client.

Runs the server in this process (uvicorn on a free localhost port, a thread) on the real-geometry CPU model
(`real_shapes.py llava-ov-cpu`), VidCom² at keep 0.25, 16 frames, streamed answers of 16 tokens:
- first request on a clip (nothing cached) vs a second request with another question on the same clip:
  time to the first streamed token and to the last, median of `--repeat` fresh clips;
- 8 clients at once, each asking `--questions` questions in turn, (a) all about one clip, (b) each about its
  own clip (8 clips; the first request of each is cold). Requests per minute = answered / wall time × 60.

    python -m benchmarks.bench_serve --repeat 3 --questions 3
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_pipeline import synthetic_clip
from benchmarks.real_shapes import ensure_checkpoint
from vidqa.cache import FeatureCache
from vidqa.compress.registry import build_compression
from vidqa.engine import Engine
from vidqa.server.app import ServerConfig, create_app
from vidqa.server.sources import SourcePolicy
from vidqa.settings import SamplingSettings

CLIENTS = 8


@contextlib.contextmanager
def running(engine: Engine, folder: Path, frames: int) -> Iterator[str]:
    import uvicorn

    config = ServerConfig(
        model_names=("bench",),
        compression=build_compression("vidcom2", keep=0.25),
        sampling=SamplingSettings(frames=frames),
        policy=SourcePolicy(allow_dirs=(folder,)),
        queue_size=64,
        sessions=CLIENTS + 1,
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine, config), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(60)


def timed_request(base: str, video: str, question: str, tokens: int) -> tuple[float, float]:
    """Seconds to the first streamed content and to the end of the stream."""
    import openai

    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": video}},
                                             {"type": "text", "text": question}]}]  # fmt: skip
    start = time.perf_counter()
    first = None
    stream = client.chat.completions.create(
        model="bench",
        messages=messages,
        max_tokens=tokens,
        stream=True,
        temperature=0,  # type: ignore[arg-type]
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return (first if first is not None else total), total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "vidqa-bench")
    parser.add_argument("--model", default="llava-ov-cpu", help="real_shapes name or a checkpoint folder")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(args.model) if Path(args.model).is_dir() else ensure_checkpoint(args.model, args.work_dir)
    clip = synthetic_clip(args.work_dir, 20.0)
    with tempfile.TemporaryDirectory() as videos, tempfile.TemporaryDirectory() as cache_dir:
        names = [f"clip{index}.mp4" for index in range(args.repeat + CLIENTS + 1)]
        for name in names:  # distinct files: each is a new video to the server
            shutil.copy(clip, Path(videos) / name)
        engine = Engine.load(str(folder), device="cpu", cache=FeatureCache(cache_dir, max_bytes=10**10))
        with running(engine, Path(videos), args.frames) as base:
            timed_request(base, names[-1], "warm-up", args.tokens)
            pairs = [pair(base, name, args.tokens) for name in names[: args.repeat]]
            same = load(base, [names[0]] * CLIENTS, args)
            fresh = names[args.repeat : args.repeat + CLIENTS]  # never seen by the server
            own = load(base, fresh, args)
    report(pairs, same, own, args, torch.get_num_threads())
    return 0


def pair(base: str, video: str, tokens: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """A first request on a clip, then a second with another question."""
    return timed_request(base, video, "What happens?", tokens), timed_request(
        base, video, "Who is there?", tokens
    )


def load(base: str, videos: list[str], args: argparse.Namespace) -> dict[str, float]:
    """One client per video, all at once, each asking its questions one after another."""

    def client(video: str) -> list[tuple[float, float]]:
        questions = [f"Question {index}: what happens?" for index in range(args.questions)]
        return [timed_request(base, video, question, args.tokens) for question in questions]

    start = time.perf_counter()
    with ThreadPoolExecutor(len(videos)) as pool:
        results = list(pool.map(client, videos))
    wall = time.perf_counter() - start
    answered = sum(len(r) for r in results)
    firsts = [first for r in results for first, _ in r]
    return {
        "answered": answered,
        "wall": wall,
        "rpm": answered / wall * 60,
        "ttft_median": statistics.median(firsts),
    }


def report(pairs: list[Any], same: dict[str, float], own: dict[str, float], args: argparse.Namespace,
           threads: int) -> None:  # fmt: skip
    first_ttft = statistics.median(p[0][0] for p in pairs)
    first_total = statistics.median(p[0][1] for p in pairs)
    second_ttft = statistics.median(p[1][0] for p in pairs)
    second_total = statistics.median(p[1][1] for p in pairs)
    print(f"{args.model}, {args.frames} frames, vidcom2 0.25, {args.tokens} answer tokens, {threads} threads")
    print("| request | first token | whole answer |")
    print("| --- | ---: | ---: |")
    print(f"| first on a clip | {first_ttft:.3f} s | {first_total:.3f} s |")
    print(f"| second on the same clip | {second_ttft:.3f} s ({100 * second_ttft / first_ttft:.1f} %) "
          f"| {second_total:.3f} s ({100 * second_total / first_total:.1f} %) |")  # fmt: skip
    print(f"\n{CLIENTS} concurrent clients × {args.questions} questions:")
    print("| clips | answered | wall | requests / minute | median first token |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, run in (("one clip for all", same), ("one clip per client (cold start)", own)):
        cells = f"{run['answered']:.0f} | {run['wall']:.1f} s | {run['rpm']:.1f} | {run['ttft_median']:.2f} s"
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    raise SystemExit(main())
