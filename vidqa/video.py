"""Video files in, RGB frames out: probing, keyframe-aware sampling by timestamp, rotation, clear errors.

This module owns everything vidqa does with PyAV. The rest of vidqa sees `VideoInfo` and `Clip` (uint8
frames plus their presentation times) and never a decoder. No torch here: numpy + av only.

Sampling picks target *times* (centres of equal segments, so VFR files work) and takes for each target
the frame on screen at that moment (the last frame with pts <= t). The keyframe index (`index_entries`,
or a demux-only pass when a file has none) drives the walk: targets are visited in order and the decoder
seeks only when the target's keyframe lies beyond where it already is, otherwise it decodes forward. This
avoids both whole-file decodes (short stride, long file) and seek-per-frame (long GOPs).

All times are seconds from the start of the video stream (its first pts is 0.0).

Truncated files: when the decodable data ends before the duration the container claims, the targets are
re-spread over the part that decodes (so the model still sees the whole available story, not the last
frame repeated) and the clip carries a warning "truncated: decoded up to X s of Y s".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from vidqa.errors import UsageError, VideoError
from vidqa.frame_walk import FrameWalker, Pick, StreamLayout, ffmpeg_reason, quarter_turns

_PROBE_PACKETS = 64  # packets probe() reads at most to find the first frame (for its rotation)


@dataclass(frozen=True)
class VideoInfo:
    """What a file holds, read without decoding it (probe) or alongside sampling (Clip.info)."""

    path: str
    duration: float  # seconds (stream duration, else container duration, else a demux pass)
    fps: float | None  # average frame rate (average_rate, else guessed_rate)
    width: int  # display size, after rotation
    height: int
    rotation: int  # counter-clockwise degrees (0, 90, 180, 270) applied to returned frames
    num_frames: int | None  # stream.frames, packet count of a demux pass, or duration*fps; None if unknown
    codec: str
    keyframe_times: list[float] = field(default_factory=list)  # from the index (empty when unavailable)


@dataclass(frozen=True)
class Clip:
    """Sampled frames of one video with where they came from and how much work it took."""

    path: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB in display orientation
    times: list[float]  # presentation time (s) of each returned frame, non-decreasing
    frame_indices: list[int]  # source frame index estimate of each frame: round(time * fps)
    info: VideoInfo
    decoded_frames: int  # frames the decoder produced in total (proves no whole-file decode)
    skipped_packets: int  # corrupt/undecodable packets skipped
    warnings: list[str]  # human-readable, e.g. "truncated: decoded up to 3.2 s of 10.0 s"


# ---------------------------------------------------------------------------------------------- public API


def probe(path: str | Path) -> VideoInfo:
    """Describe a video file; decodes at most its first frame (to learn the rotation)."""
    source = check_path(path)
    with _open(source) as container:
        stream = _video_stream(source, container)
        layout = _layout(source, container, stream, need_keyframes=False)
        rotation = _first_rotation(container, stream)
        return _info(source, stream, layout, rotation)


def sample_times(
    duration: float,
    *,
    frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    multiple_of: int = 1,
    available: int | None = None,
) -> list[float]:
    """Target times (s, ascending) in [0, duration): centres of equal segments.

    `frames=N`: N segments. `fps=F`: segments of 1/F s (targets (i + 0.5)/F), unless the count exceeds
    `max_frames` or `available` (frames the video has), in which case that many uniform segments.
    `max_frames` also caps `frames`. The count is then rounded up to a multiple of `multiple_of` (rounded
    down instead if rounding up would pass `max_frames`), re-spread uniformly when it changed.
    """
    _check_sampling(duration, frames, fps, max_frames, multiple_of)
    duration = max(0.0, duration)
    if frames is not None:
        count, spacing = frames, None
    else:
        assert fps is not None
        count, spacing = max(1, math.ceil(duration * fps - 0.5 - 1e-9)), 1.0 / fps
        if available is not None and count > available:
            count, spacing = max(1, available), None
    if max_frames is not None and count > max_frames:
        count, spacing = max_frames, None
    rounded = _round_count(count, multiple_of, max_frames)
    if rounded != count:
        count, spacing = rounded, None
    if spacing is None or (count - 0.5) * spacing >= duration:
        spacing = duration / count
    return [(i + 0.5) * spacing for i in range(count)]


def load_video(
    path: str | Path,
    *,
    frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    multiple_of: int = 1,
    max_side: int | None = None,
    threads: Literal["auto", "none"] | None = None,
) -> Clip:
    """Decode the frames shown at evenly spread times (see `sample_times`) without decoding the whole file.

    `max_side` shrinks frames whose longer side exceeds it (scaled in the same swscale pass as the RGB
    conversion). `threads="auto"` turns on FFmpeg frame+slice threading, `"none"` forces one thread,
    None keeps PyAV's default. Raises VideoError for files that cannot be read.
    """
    _check_sampling(1.0, frames, fps, max_frames, multiple_of)
    if max_side is not None and max_side < 1:
        raise UsageError(f"max_side must be >= 1, got {max_side}")
    if threads not in (None, "auto", "none"):
        raise UsageError(f"threads must be 'auto', 'none' or None, got {threads!r}")
    source = check_path(path)
    with _open(source) as container:
        stream = _video_stream(source, container)
        layout = _layout(source, container, stream, need_keyframes=True)
        sampler = FrameWalker(source, container, stream, layout, max_side, threads)
        span = layout.duration if layout.scanned_end is None else min(layout.duration, layout.scanned_end)

        def targets_over(seconds: float) -> list[float]:
            return sample_times(seconds, frames=frames, fps=fps, max_frames=max_frames,
                                multiple_of=multiple_of, available=layout.num_frames)  # fmt: skip

        targets = targets_over(span)
        picks = sampler.walk(targets)
        if sampler.short_of(targets):  # the data ends early: re-spread the targets over what decodes
            span = sampler.decodable_end()
            picks = sampler.walk(targets_over(span))
        if not picks:
            raise VideoError(source, "no decodable frames")
        picks, note = _each_frame_once(picks, multiple_of)
        return _assemble(source, stream, layout, sampler, picks, span, [note] if note else [])


# ------------------------------------------------------------------------------------ opening and layout


def check_path(path: str | Path) -> Path:
    """Reject what is plainly not a readable file before FFmpeg gives a vaguer message."""
    source = Path(path)
    if not source.exists():
        raise VideoError(source, "no such file")
    if source.is_dir():
        raise VideoError(source, "is a directory")
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise VideoError(source, f"cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise VideoError(source, "empty file")
    return source


def _open(source: Path) -> av.container.InputContainer:
    """Open with PyAV, turning FFmpeg's refusal into a one-line VideoError."""
    try:
        return av.open(str(source), mode="r")
    except PermissionError:
        raise VideoError(source, "permission denied") from None
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(source, f"not a video file ({ffmpeg_reason(exc)})") from None


def _video_stream(source: Path, container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first real video stream; cover art (attached pictures) does not count."""
    pictures = av.stream.Disposition.attached_pic
    streams = [s for s in container.streams.video if not (s.disposition & pictures)]
    if streams:
        return streams[0]
    if container.streams.audio:
        raise VideoError(source, "no video stream (audio only)")
    raise VideoError(source, "no video stream")


def _layout(
    source: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream, *,
    need_keyframes: bool,
) -> StreamLayout:  # fmt: skip
    """Time base, start, keyframes, duration, rate and frame count; a demux pass fills what is missing."""
    time_base = stream.time_base or Fraction(1, 1_000_000)
    start = stream.start_time if stream.start_time is not None else 0
    keyframes = _to_presentation(_index_keyframes(container, stream), start)
    duration = _metadata_duration(container, stream, time_base)
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    num_frames = stream.frames or None
    scanned_end = None
    if duration is None or (need_keyframes and len(keyframes) < 2):
        scan = _scan_packets(source, stream.index)
        start = scan.start if scan.start is not None and stream.start_time is None else start
        keyframes = keyframes if len(keyframes) >= len(scan.keyframes) else scan.keyframes
        scanned_end = None if scan.end is None else float((scan.end - start) * time_base)
        duration = duration if duration is not None else scanned_end or 0.0
        num_frames = num_frames or scan.packets or None
    if num_frames is None and fps is not None and duration:
        num_frames = max(1, round(duration * fps))
    return StreamLayout(time_base, start, keyframes, duration or 0.0, fps, num_frames, scanned_end)


def _index_keyframes(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> list[int]:
    """Keyframe timestamps from the demuxer's index; Matroska reads its cues only on a first seek. PyAV
    before 16 does not expose the index: then none, and the caller's demux-only pass finds them."""
    if not hasattr(stream, "index_entries"):
        return []
    keyframes = [entry.timestamp for entry in stream.index_entries if entry.is_keyframe]
    if len(keyframes) >= 2:
        return keyframes
    try:
        container.seek(stream.start_time or 0, stream=stream, backward=True)
    except av.FFmpegError:
        return keyframes
    return sorted({entry.timestamp for entry in stream.index_entries if entry.is_keyframe} | set(keyframes))


def _to_presentation(keyframes: list[int], start: int) -> list[int]:
    """Shift index timestamps to presentation times where the index holds decode times.

    MP4 indexes by DTS: with B-frames the first keyframe's DTS lies before the stream start by the reorder
    delay, and every keyframe's PTS is its DTS plus that delay. Seeking to the PTS lands on the keyframe
    whichever clock the demuxer compares with; seeking to the DTS can land a whole GOP early.
    """
    if not keyframes or keyframes[0] >= start:
        return keyframes
    delay = start - keyframes[0]
    return [k + delay for k in keyframes]


def _metadata_duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, time_base: Fraction
) -> float | None:
    """Duration in seconds from the stream header, else the container header, else None."""
    if stream.duration:
        return float(stream.duration * time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


@dataclass(frozen=True)
class _Scan:
    """What a demux-only pass over a stream's packets found."""

    keyframes: list[int]
    start: int | None
    end: int | None  # pts + duration of the latest packet
    packets: int


def _scan_packets(source: Path, stream_index: int) -> _Scan:
    """Read every packet of one stream without decoding (cheap: no pixels) on a separate handle."""
    keyframes: list[int] = []
    start = end = None
    packets = 0
    with _open(source) as container:
        stream = container.streams[stream_index]
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                packets += 1
                start = packet.pts if start is None else min(start, packet.pts)
                end = max(end or packet.pts, packet.pts + (packet.duration or 0))
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
        except av.FFmpegError:
            pass  # a damaged tail: keep what was read; decoding will report the truncation
    return _Scan(sorted(keyframes), start, end, packets)


def _first_rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Rotation of the first decodable frame (the display matrix rides on frames in FFmpeg 7)."""
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count >= _PROBE_PACKETS:
                break
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                continue
            if decoded:
                return quarter_turns(decoded[0]) * 90
    except av.FFmpegError:
        pass
    return 0


def _info(
    source: Path, stream: av.video.stream.VideoStream, layout: StreamLayout, rotation: int
) -> VideoInfo:
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation % 180:
        width, height = height, width
    keyframe_times = [layout.seconds(k) for k in layout.keyframes]
    return VideoInfo(
        path=str(source), duration=layout.duration, fps=layout.fps, width=width, height=height,
        rotation=rotation, num_frames=layout.num_frames, codec=stream.codec_context.name,
        keyframe_times=keyframe_times,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- assembling


def _assemble(
    source: Path,
    stream: av.video.stream.VideoStream,
    layout: StreamLayout,
    sampler: FrameWalker,
    picks: list[Pick],
    span: float,
    notes: list[str],
) -> Clip:
    """Stack the picks and say plainly what was unusual (truncation, skipped packets, few frames)."""
    shapes = {p.pixels.shape for p in picks}
    if len(shapes) > 1:  # mid-stream size change: bring every frame to the first one's size
        picks = [_resize_like(p, picks[0].pixels.shape) for p in picks]
    frames = np.stack([p.pixels for p in picks])  # (T, H, W, 3) uint8
    times = [max(0.0, p.time) for p in picks]
    rate = layout.fps or ((layout.num_frames or 0) / layout.duration if layout.duration else None)
    indices = [round(t * rate) for t in times] if rate else list(range(len(times)))
    info = _info(source, stream, layout, picks[0].rotation)
    return Clip(
        path=str(source), frames=frames, times=times, frame_indices=indices, info=info,
        decoded_frames=sampler.decoded, skipped_packets=sampler.skipped,
        warnings=_warnings(layout, sampler, span) + notes,
    )  # fmt: skip


def _warnings(layout: StreamLayout, sampler: FrameWalker, span: float) -> list[str]:
    notes: list[str] = []
    # Audio tracks often outlast the video by a few frames; only a real shortfall is called truncation.
    tolerance = max(0.5, 2.0 / layout.fps if layout.fps else 0.0)
    if span < layout.duration - tolerance:
        notes.append(f"truncated: decoded up to {span:.1f} s of {layout.duration:.1f} s")
    if sampler.failure:
        notes.append(f"reading stopped early ({sampler.failure})")
    if sampler.skipped:
        notes.append(f"skipped {sampler.skipped} corrupt packet(s)")
    return notes


def _each_frame_once(picks: list[Pick], multiple_of: int) -> tuple[list[Pick], str | None]:
    """Drop repeated frames (several targets on one frame: a short clip, a frame shown long, a corrupt
    packet); keep a count the model accepts: rounded down to the frame multiple, spread evenly. Only a clip
    with fewer frames than one multiple repeats its last frame (the model cannot take fewer)."""
    distinct = list({pick.time: pick for pick in picks}.values())  # picks are time-ordered
    count = len(distinct)
    if count == len(picks) and count % multiple_of == 0:
        return picks, None
    if count < multiple_of:
        padded = distinct + [distinct[-1]] * (multiple_of - count)
        note = f"only {count} decodable frame(s); the last is repeated to fill the model's {multiple_of}"
        return padded, note
    keep = count // multiple_of * multiple_of
    chosen = [distinct[(2 * i + 1) * count // (2 * keep)] for i in range(keep)]  # centres of keep segments
    return (
        chosen,
        f"only {count} distinct frame(s) for the {len(picks)} asked: using {keep}, each once",
    )


def _resize_like(pick: Pick, shape: tuple[int, ...]) -> Pick:
    """Nearest-neighbour resize (numpy only) for the rare stream whose resolution changes midway."""
    height, width = shape[:2]
    rows = np.arange(height) * pick.pixels.shape[0] // height
    cols = np.arange(width) * pick.pixels.shape[1] // width
    return Pick(pick.time, pick.pixels[rows][:, cols], pick.rotation)


# ----------------------------------------------------------------------------------------------- checks


def _check_sampling(
    duration: float, frames: int | None, fps: float | None, max_frames: int | None, multiple_of: int
) -> None:
    """Reject impossible sampling requests with a UsageError naming the option."""
    if (frames is None) == (fps is None):
        raise UsageError("give exactly one of frames or fps")
    if frames is not None and frames < 1:
        raise UsageError(f"frames must be >= 1, got {frames}")
    if fps is not None and not fps > 0:
        raise UsageError(f"fps must be > 0, got {fps}")
    if multiple_of < 1:
        raise UsageError(f"multiple_of must be >= 1, got {multiple_of}")
    if max_frames is not None and max_frames < multiple_of:
        raise UsageError(f"max_frames must be >= multiple_of ({multiple_of}), got {max_frames}")
    if math.isnan(duration):
        raise UsageError("duration is not a number")


def _round_count(count: int, multiple_of: int, max_frames: int | None) -> int:
    """Round up to a multiple; round down instead when rounding up would pass max_frames."""
    up = -(-count // multiple_of) * multiple_of
    if max_frames is not None and up > max_frames:
        return (max_frames // multiple_of) * multiple_of
    return up
