"""How long does it take to sample N frames from a long video? vidqa's walk against the obvious ways.

Makes (once, cached in --clips-dir) 10-minute clips at 720p and 1080p with a long GOP (10 s) and a short
GOP (0.5 s), then times, for each frame count:

  vidqa          vidqa.video.load_video: keyframe index + in-order walk, seek only past the decoder
  vidqa-threads  the same with threads="auto" (FFmpeg frame threading)
  decode-all     decode every frame sequentially, keep the ones on screen at the targets
  seek-each      one seek (to the keyframe before the target) + forward decode per target
  transformers   transformers.video_utils.load_video(backend="pyav"), if it works here

vidqa, decode-all and seek-each take the same targets (segment centres); transformers picks its own
uniform frame indices. Every method converts only the kept frames to RGB. Methods run round-robin.
Prints a markdown table: clip, frames, method, median wall and CPU seconds over --repeat runs, decoded
frames (for transformers: up to its last index, which its PyAV reader decodes sequentially).

Run with vidqa importable (`pip install -e .` or `PYTHONPATH=.`):
    python -m benchmarks.bench_sampling --clips-dir ~/.cache/vidqa-bench --frames 8,32,64 --repeat 3
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vidqa import synth
from vidqa.video import load_video, probe, sample_times

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
GOPS = {"long": 250, "short": 12}  # frames at 25 fps: 10 s and ~0.5 s
FPS = 25
METHODS = ("vidqa", "vidqa-threads", "decode-all", "seek-each", "transformers")


@dataclass(frozen=True)
class Run:
    """One sampling: frames returned and frames decoded (None: not measurable)."""

    frames: int
    decoded: int | None


@dataclass(frozen=True)
class Row:
    """One table row: medians over the repeats (None when the method failed, with the reason in `note`)."""

    clip: str
    count: int
    method: str
    wall: float | None
    cpu: float | None
    note: str


Method = Callable[[Path, int], Run]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    clips_dir = Path(args.clips_dir).expanduser()
    clips_dir.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.frames.split(",")]
    methods = {name: _METHODS[name] for name in args.methods.split(",")}
    print(f"# sampling benchmark: {os.cpu_count()} CPU(s), PyAV {av.__version__}, FFmpeg "
          f"{av.ffmpeg_version_info}, repeat {args.repeat}", file=sys.stderr)  # fmt: skip
    rows: list[Row] = []
    for size in args.sizes.split(","):
        for gop in args.gops.split(","):
            clip = _ensure_clip(clips_dir, size, gop, args.seconds)
            print(f"{clip.name}: {_clip_summary(clip)}", file=sys.stderr)
            label = f"{size} {gop} GOP ({GOPS[gop] / FPS:g} s), {args.seconds:g} s"
            for count in counts:
                for row in _measure(methods, clip, label, count, args.repeat):
                    rows.append(row)
                    _progress(row)
    _print_table(rows)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips-dir", required=True, help="where generated clips are cached between runs")
    parser.add_argument("--frames", default="8,32,64", help="comma-separated frame counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--sizes", default="720p,1080p", help=f"comma-separated, from {','.join(SIZES)}")
    parser.add_argument("--gops", default="long,short", help=f"comma-separated, from {','.join(GOPS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from the list above")
    parser.add_argument("--seconds", type=float, default=600.0, help="clip length (default 10 minutes)")
    return parser.parse_args(argv)


def _ensure_clip(clips_dir: Path, size: str, gop: str, seconds: float) -> Path:
    """Generate the clip unless a previous run left it; written under a temporary name, then renamed."""
    path = clips_dir / f"{size}_{gop}gop_{seconds:g}s.mp4"
    if path.exists():
        return path
    started = time.perf_counter()
    partial = path.with_name(f".partial-{path.name}")
    synth.make_looped_clip(partial, seconds=seconds, fps=FPS, size=SIZES[size], gop=GOPS[gop])
    partial.replace(path)
    took = time.perf_counter() - started
    print(f"generated {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {took:.1f} s", file=sys.stderr)
    return path


def _measure(methods: dict[str, Method], clip: Path, label: str, count: int, repeat: int) -> list[Row]:
    """Run the methods round-robin `repeat` times (so load from other processes hits them alike).

    Wall time is what a user waits; CPU time (all threads of this process) is the work done, which is
    steadier than wall time on a shared machine.
    """
    walls: dict[str, list[float]] = {name: [] for name in methods}
    cpus: dict[str, list[float]] = {name: [] for name in methods}
    notes: dict[str, str] = {}
    for _ in range(repeat):
        for name, method in methods.items():
            if name in notes and not walls[name]:
                continue  # failed before: do not retry
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                run = method(clip, count)
            except Exception as exc:  # report any failure in the table instead of stopping the benchmark
                notes[name] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
                continue
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            notes[name] = "n/a" if run.decoded is None else str(run.decoded)
    return [
        Row(label, count, name, _median(walls[name]), _median(cpus[name]), notes.get(name, ""))
        for name in methods
    ]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------------------------------ methods


def _vidqa(clip: Path, count: int) -> Run:
    result = load_video(clip, frames=count)
    return Run(len(result.frames), result.decoded_frames)


def _vidqa_threads(clip: Path, count: int) -> Run:
    result = load_video(clip, frames=count, threads="auto")
    return Run(len(result.frames), result.decoded_frames)


def _targets(
    container: av.container.InputContainer, count: int
) -> tuple[av.video.stream.VideoStream, list[int]]:
    """The same targets vidqa uses, as pts in the stream's time base."""
    stream = container.streams.video[0]
    duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
    start = stream.start_time or 0
    times = sample_times(duration, frames=count)
    return stream, [start + math.floor(t / stream.time_base + 1e-6) for t in times]


def _decode_all(clip: Path, count: int) -> Run:
    """Decode everything in order; keep the last frame at or before each target."""
    kept: list[np.ndarray] = []
    decoded = 0
    with av.open(str(clip)) as container:
        stream, targets = _targets(container, count)
        previous = None
        i = 0
        for frame in container.decode(stream):
            decoded += 1
            while i < len(targets) and frame.pts > targets[i]:
                kept.append((previous or frame).to_ndarray(format="rgb24"))
                i += 1
            previous = frame
        kept.extend(previous.to_ndarray(format="rgb24") for _ in range(len(targets) - i))
    frames = np.stack(kept)  # (T, H, W, 3), what load_video returns too
    return Run(len(frames), decoded)


def _seek_each(clip: Path, count: int) -> Run:
    """For every target: seek to the keyframe before it, decode forward to it."""
    kept: list[np.ndarray] = []
    decoded = 0
    with av.open(str(clip)) as container:
        stream, targets = _targets(container, count)
        for target in targets:
            container.seek(target, stream=stream, backward=True)
            previous = None
            for frame in container.decode(stream):
                decoded += 1
                if frame.pts > target:
                    break
                previous = frame
            kept.append((previous or frame).to_ndarray(format="rgb24"))
    frames = np.stack(kept)  # (T, H, W, 3), what load_video returns too
    return Run(len(frames), decoded)


def _transformers(clip: Path, count: int) -> Run:
    """transformers' own loader; its PyAV backend decodes sequentially up to the last sampled index."""
    from transformers.video_utils import load_video as hf_load_video

    frames, metadata = hf_load_video(str(clip), num_frames=count, backend="pyav")
    indices = getattr(metadata, "frames_indices", None)
    decoded = int(max(indices)) + 1 if indices is not None and len(indices) else None
    return Run(len(frames), decoded)


_METHODS: dict[str, Method] = {
    "vidqa": _vidqa,
    "vidqa-threads": _vidqa_threads,
    "decode-all": _decode_all,
    "seek-each": _seek_each,
    "transformers": _transformers,
}


# ------------------------------------------------------------------------------------------------- output


def _progress(row: Row) -> None:
    timing = "-" if row.wall is None else f"{row.wall:.3f} s wall, {row.cpu:.3f} s CPU"
    print(
        f"  {row.clip} | {row.count} frames | {row.method}: {timing} ({row.note})",
        file=sys.stderr,
        flush=True,
    )


def _print_table(rows: list[Row]) -> None:
    print("| clip | frames | method | median s | median CPU s | decoded frames |")
    print("| --- | ---: | --- | ---: | ---: | --- |")
    for row in rows:
        wall = "—" if row.wall is None else f"{row.wall:.3f}"
        cpu = "—" if row.cpu is None else f"{row.cpu:.3f}"
        print(f"| {row.clip} | {row.count} | {row.method} | {wall} | {cpu} | {row.note} |")


def _clip_summary(clip: Path) -> str:
    info = probe(clip)
    return f"{info.width}x{info.height}, {info.duration:.0f} s, {len(info.keyframe_times)} keyframes"


if __name__ == "__main__":
    sys.exit(main())
