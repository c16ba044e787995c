"""Deterministic synthetic video clips for tests, benchmarks and the bundled example.

vidqa's tests must not depend on downloaded media, so this module writes clips with PyAV's bundled FFmpeg:
moving shapes, scene cuts with distinct colours, noise, a red-over-blue "split" frame for rotation checks,
with control over size, codec, GOP length, display rotation, variable frame rate and an audio track.
Content depends only on the arguments (the same call writes the same pictures), and it is cheap to render
(flat colours, a few shapes) so 10-minute 1080p benchmark clips encode in about a minute on two cores.
No torch here: numpy + av only.
"""

from __future__ import annotations

import functools
import math
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

Pattern = Literal["moving", "cuts", "noise", "split"]

# Scene palette for "cuts": (background, shape colour, shape kind). Distinct, named colours so a model
# (and a person) can tell the scenes apart.
_SCENES: list[tuple[tuple[int, int, int], tuple[int, int, int], str]] = [
    ((40, 90, 200), (230, 40, 40), "disc"),  # blue sky, red ball
    ((30, 150, 60), (250, 220, 40), "square"),  # green field, yellow square
    ((20, 20, 20), (240, 240, 240), "disc"),  # black night, white ball
    ((240, 140, 30), (60, 30, 120), "square"),  # orange wall, purple square
    ((200, 200, 210), (20, 120, 220), "disc"),  # grey room, blue ball
]
_VFR_STEPS = (0.5, 1.0, 1.0, 2.0, 3.0)  # multiples of the nominal frame interval for vfr=True
_AUDIO_RATE = 44100


@dataclass(frozen=True)
class _Geometry:
    """Frame size and shape sizes, fixed for one clip."""

    width: int
    height: int

    @property
    def radius(self) -> int:
        return max(2, min(self.width, self.height) // 8)


def make_clip(
    path: str | Path,
    *,
    seconds: float,
    fps: float = 25,
    size: tuple[int, int] = (320, 240),
    codec: str = "libx264",
    gop: int | None = None,
    pattern: Pattern = "moving",
    rotation: int = 0,
    vfr: bool = False,
    audio: bool = False,
    crf: int | None = None,
    cut_every: float = 2.0,
    preset: str = "ultrafast",
) -> Path:
    """Write a deterministic clip and return its path; the container follows the file suffix.

    `size` is (width, height) of the coded picture (before rotation). `gop` fixes the keyframe interval in
    frames (and turns x264's scene-cut keyframes off so the interval is exact). `rotation` stores a display
    matrix (counter-clockwise degrees, as `av.VideoFrame.rotation` reads it back). `vfr` gives frames
    irregular presentation times on a 1/1000 s time base. `.mp4`/`.mov` files are written "faststart"
    (index first), like most files people download, so a truncated copy stays readable.
    """
    path = Path(path)
    if seconds <= 0 or fps <= 0:
        raise ValueError("seconds and fps must be positive")
    times = _frame_times(seconds, fps, vfr)
    options = {"movflags": "faststart"} if path.suffix.lower() in {".mp4", ".mov", ".m4v"} else {}
    with av.open(str(path), "w", options=options) as container:
        stream = _add_video_stream(container, codec, fps, size, gop, crf, preset, vfr)
        if rotation:
            if not hasattr(stream, "set_display_rotation"):
                raise RuntimeError("writing a display rotation needs PyAV 16 or newer")
            stream.set_display_rotation(rotation)
        tone = _Tone(container, _add_audio_stream(container)) if audio else None
        geometry = _Geometry(*size)
        for index, t in enumerate(times):
            picture = _render(pattern, geometry, index, t, cut_every)  # (H, W, 3) uint8
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if vfr:
                frame.pts = round(t * 1000)
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
            if tone is not None:
                tone.write_until(t)
        container.mux(stream.encode(None))
        if tone is not None:
            tone.finish(seconds)
    return path


def make_looped_clip(
    path: str | Path,
    *,
    seconds: float,
    loop_seconds: float = 10.0,
    fps: float = 25,
    size: tuple[int, int] = (320, 240),
    codec: str = "libx264",
    gop: int | None = None,
    pattern: Pattern = "cuts",
    crf: int | None = None,
) -> Path:
    """Write a long clip fast: encode `loop_seconds` once, then repeat its packets with shifted timestamps.

    Made for benchmarks (10-minute 1080p clips would take ~15 min to encode frame by frame on two cores).
    Each repetition starts with a keyframe, so the stream is valid and every frame costs the decoder what
    a real encode of this periodic content would; only the picture content repeats. The duration is
    rounded up to a whole number of loops. `pattern="cuts"` with the default `cut_every=2` cycles every
    10 s, so the default loop hides the seams.
    """
    path = Path(path)
    loops = max(1, math.ceil(seconds / loop_seconds - 1e-9))
    with tempfile.TemporaryDirectory() as tmp:
        piece = make_clip(
            Path(tmp) / f"loop{path.suffix}",
            seconds=loop_seconds,
            fps=fps,
            size=size,
            codec=codec,
            gop=gop,
            pattern=pattern,
            crf=crf,
        )
        _repeat_packets(piece, path, loops)
    return path


def _repeat_packets(source: Path, target: Path, loops: int) -> None:
    """Remux the video stream of `source` `loops` times back to back into `target`."""
    options = {"movflags": "faststart"} if target.suffix.lower() in {".mp4", ".mov", ".m4v"} else {}
    with av.open(str(source)) as src, av.open(str(target), "w", options=options) as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        packets = [packet for packet in src.demux(in_stream) if packet.size > 0]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        for loop in range(loops):
            offset = loop * span  # in the source stream's time base
            for packet in packets:
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts = packet.pts + offset, packet.dts + offset
                copy.duration, copy.time_base = packet.duration, packet.time_base
                copy.is_keyframe = packet.is_keyframe
                copy.stream = out_stream
                dst.mux(copy)


def make_audio_only(path: str | Path, seconds: float) -> Path:
    """Write a file with a sine tone and no video stream (an .m4a/.mp4/.mkv gets AAC, .wav gets PCM)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = _add_audio_stream(container, "pcm_s16le" if path.suffix.lower() == ".wav" else "aac")
        _Tone(container, stream).finish(seconds)
    return path


def _frame_times(seconds: float, fps: float, vfr: bool) -> list[float]:
    """Presentation times of every frame: regular 1/fps steps, or a fixed irregular cycle for VFR."""
    if not vfr:
        return [i / fps for i in range(max(1, math.ceil(seconds * fps - 1e-9)))]
    times: list[float] = []
    t, step = 0.0, 0
    while t < seconds:
        times.append(round(t, 3))
        t += _VFR_STEPS[step % len(_VFR_STEPS)] / fps
        step += 1
    return times


def _add_video_stream(
    container: av.container.OutputContainer,
    codec: str,
    fps: float,
    size: tuple[int, int],
    gop: int | None,
    crf: int | None,
    preset: str,
    vfr: bool,
) -> av.video.stream.VideoStream:
    """Configure the encoder: pixel format that suits the size, GOP, quality, time base."""
    width, height = size
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = width, height
    stream.pix_fmt = _pixel_format(codec, width, height)
    if vfr:
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
    if gop is not None:
        stream.codec_context.gop_size = gop
    options: dict[str, str] = {}
    if codec == "libx264":
        options["preset"] = preset
        if gop is not None:
            options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    if crf is not None and codec in {"libx264", "libvpx-vp9"}:
        options["crf"] = str(crf)
    elif codec in {"mpeg4", "mjpeg"}:
        stream.codec_context.bit_rate = max(200_000, int(width * height * fps / 3))
    if codec == "libvpx-vp9":
        options.setdefault("deadline", "realtime")
        options.setdefault("cpu-used", "8")
    stream.options = options
    return stream


def _pixel_format(codec: str, width: int, height: int) -> str:
    """yuv420p where the encoder allows it; libx264 needs even sizes for 4:2:0, so odd sizes get 4:4:4."""
    if codec == "mjpeg":
        return "yuvj420p"
    if codec == "libx264" and (width % 2 or height % 2):
        return "yuv444p"
    return "yuv420p"


def _render(pattern: Pattern, geometry: _Geometry, index: int, t: float, cut_every: float) -> np.ndarray:
    """One RGB picture (H, W, 3) uint8 for frame `index` shown at time `t`."""
    if pattern == "noise":
        rng = np.random.default_rng(index)
        return rng.integers(0, 256, (geometry.height, geometry.width, 3), dtype=np.uint8)
    if pattern == "split":
        return _split_picture(geometry)
    if pattern == "cuts":
        background, colour, kind = _SCENES[int(t // cut_every) % len(_SCENES)]
        return _moving_picture(geometry, t, background, [(colour, kind, 0.0)])
    if pattern == "moving":
        shapes = [((230, 40, 40), "disc", 0.0), ((250, 220, 40), "square", 0.37)]
        return _moving_picture(geometry, t, (40, 90, 200), shapes)
    raise ValueError(f"unknown pattern {pattern!r}")


def _split_picture(geometry: _Geometry) -> np.ndarray:
    """Top half pure red, bottom half pure blue: a rotation shows up as red moving to another side."""
    picture = np.zeros((geometry.height, geometry.width, 3), dtype=np.uint8)  # (H, W, 3)
    picture[: geometry.height // 2, :, 0] = 255
    picture[geometry.height // 2 :, :, 2] = 255
    return picture


def _moving_picture(
    geometry: _Geometry,
    t: float,
    background: tuple[int, int, int],
    shapes: list[tuple[tuple[int, int, int], str, float]],
) -> np.ndarray:
    """Flat background with shapes bouncing along deterministic paths (position is a function of t)."""
    picture = _background(geometry, background).copy()  # (H, W, 3)
    r = geometry.radius
    for colour, kind, phase in shapes:
        cx = r + _bounce(0.23 * t + phase) * max(0, geometry.width - 2 * r)
        cy = r + _bounce(0.31 * t + 2 * phase + 0.1) * max(0, geometry.height - 2 * r)
        _draw(picture, kind, round(cx), round(cy), r, colour)
    return picture


@functools.lru_cache(maxsize=8)
def _background(geometry: _Geometry, colour: tuple[int, int, int]) -> np.ndarray:
    """A flat picture, built once per clip (broadcast-filling a 1080p frame every time costs ~10 ms)."""
    picture = np.empty((geometry.height, geometry.width, 3), dtype=np.uint8)  # (H, W, 3)
    picture[..., 0], picture[..., 1], picture[..., 2] = colour
    picture.flags.writeable = False
    return picture


def _bounce(x: float) -> float:
    """Triangle wave in [0, 1]: a shape moving to one edge and back."""
    frac = x % 1.0
    return 2 * frac if frac < 0.5 else 2 * (1 - frac)


def _draw(picture: np.ndarray, kind: str, cx: int, cy: int, r: int, colour: tuple[int, int, int]) -> None:
    """Paint a disc or square of radius r centred on (cx, cy), clipped to the picture."""
    height, width = picture.shape[:2]
    y0, y1 = max(0, cy - r), min(height, cy + r)
    x0, x1 = max(0, cx - r), min(width, cx + r)
    if y0 >= y1 or x0 >= x1:
        return
    region = picture[y0:y1, x0:x1]  # (h, w, 3) view
    if kind == "square":
        region[:] = colour
        return
    yy, xx = np.ogrid[y0 - cy : y1 - cy, x0 - cx : x1 - cx]
    region[(yy + 0.5) ** 2 + (xx + 0.5) ** 2 <= r * r] = colour


def _add_audio_stream(
    container: av.container.OutputContainer, codec: str = "aac"
) -> av.audio.stream.AudioStream:
    """A mono audio stream at 44.1 kHz."""
    stream = container.add_stream(codec, rate=_AUDIO_RATE)
    stream.layout = "mono"
    return stream


class _Tone:
    """A 440 Hz tone written in 1024-sample frames, interleaved with the video as it is encoded."""

    def __init__(self, container: av.container.OutputContainer, stream: av.audio.stream.AudioStream) -> None:
        self.container, self.stream = container, stream
        self.format = stream.codec_context.format.name  # e.g. "fltp" for aac, "s16" for pcm
        self.written = 0  # samples so far

    def write_until(self, seconds: float) -> None:
        """Encode whole frames up to `seconds` (the last one may be shorter when it ends the tone)."""
        total = max(1, round(seconds * _AUDIO_RATE))
        while self.written < total:
            n = min(1024, total - self.written)
            t = np.arange(self.written, self.written + n) / _AUDIO_RATE  # (n,)
            wave = 0.2 * np.sin(2 * np.pi * 440 * t)
            samples = (
                (wave * 32767).astype(np.int16) if self.format.startswith("s16") else wave.astype(np.float32)
            )
            frame = av.AudioFrame.from_ndarray(samples[None, :], format=self.format, layout="mono")
            frame.sample_rate = _AUDIO_RATE
            frame.pts = self.written
            self.container.mux(self.stream.encode(frame))
            self.written += n

    def finish(self, seconds: float) -> None:
        self.write_until(seconds)
        self.container.mux(self.stream.encode(None))
