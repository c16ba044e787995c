"""The decoding walk behind `vidqa.video.load_video`: one open stream, sorted target times, frames out.

The keyframe index drives it: targets are visited in order and the decoder seeks (to the keyframe at or
before a target) only when that keyframe lies beyond where the decoder already is; otherwise it decodes
forward. Undecodable packets are skipped and counted. Each chosen frame is converted to RGB once, shrunk in
the same swscale pass when asked, and turned upright. numpy + av only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np


@dataclass(frozen=True)
class StreamLayout:
    """Timing facts of the chosen stream, in its own time base."""

    time_base: Fraction
    start: int  # pts of the stream start
    keyframes: list[int]  # keyframe timestamps, ascending (may be empty)
    duration: float
    fps: float | None
    num_frames: int | None
    scanned_end: float | None  # end of the last packet found by a demux pass, when one was made

    def seconds(self, pts: int) -> float:
        """Seconds from the stream start; int arithmetic + one correctly rounded division (no Fraction)."""
        return (pts - self.start) * self.time_base.numerator / self.time_base.denominator


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's short explanation ("Invalid data found when processing input"), without paths or codes."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.strip().rstrip(".")


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that put the frame upright (frame.rotation: CCW degrees)."""
    return round(getattr(frame, "rotation", 0) / 90) % 4


@dataclass
class Pick:
    """One sampled frame: its time (s from stream start), pixels and rotation."""

    time: float
    pixels: np.ndarray  # (H, W, 3) uint8, display orientation
    rotation: int  # CCW degrees applied


class FrameWalker:
    """Walks sorted targets through one open container, seeking only past the decoder's position."""

    def __init__(
        self,
        source: Path,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        layout: StreamLayout,
        max_side: int | None,
        threads: Literal["auto", "none"] | None,
    ) -> None:
        self.source, self.container, self.stream, self.layout = source, container, stream, layout
        self.max_side = max_side
        self.decoded = 0
        self.bad_packets: set[int | None] = set()  # pts of packets that failed to decode (once each)
        self.failure: str | None = None  # why reading stopped early (demux error), if it did
        self._max_end: int | None = None  # latest frame end seen (pts)
        self._configure_threads(threads)
        self._step = max(1, round(1 / (layout.fps * layout.time_base))) if layout.fps else 1
        self._frames: Iterator[av.VideoFrame] = self._decode_forward()
        self._anchor: int | None = layout.keyframes[0] if layout.keyframes else None  # where decoding began
        self._position: int | None = None  # pts of the last frame decoded since then
        self._eof = False
        self._used = False  # a walk has moved the decoder away from the start

    def _configure_threads(self, threads: Literal["auto", "none"] | None) -> None:
        if threads == "auto":
            self.stream.thread_type = "AUTO"
        elif threads == "none":
            self.stream.thread_type = "NONE"
            self.stream.codec_context.thread_count = 1

    # -- decoder position

    @property
    def skipped(self) -> int:
        return len(self.bad_packets)

    def _restart(self, keyframe: int | None) -> bool:
        """Seek to `keyframe` (None: the stream start) and decode forward from there."""
        try:
            self.container.seek(keyframe if keyframe is not None else self.layout.start, stream=self.stream)
        except av.FFmpegError:
            return False  # unseekable input: keep decoding forward, still correct
        self._frames = self._decode_forward()
        self._anchor = keyframe
        self._position = None
        self._eof = False
        return True

    def _decode_forward(self) -> Iterator[av.VideoFrame]:
        """Frames in presentation order from the current demuxer position; bad packets are counted."""
        try:
            for packet in self.container.demux(self.stream):
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    self.bad_packets.add(packet.pts)
                    continue
                yield from decoded
        except av.FFmpegError as exc:
            self.failure = ffmpeg_reason(exc)

    def _next(self) -> av.VideoFrame | None:
        frame = next(self._frames, None)
        if frame is None:
            self._eof = True
            return None
        self.decoded += 1
        if frame.pts is None:  # raw streams: continue the previous frame's clock
            here = self._position if self._position is not None else self._anchor
            frame.pts = self.layout.start if here is None else here + self._step
        self._position = frame.pts
        end = frame.pts + (getattr(frame, "duration", 0) or 0)
        if self._max_end is None or end > self._max_end:
            self._max_end = end
        return frame

    def _beyond_position(self, keyframe: int) -> bool:
        """True when seeking to `keyframe` skips frames the decoder would otherwise decode."""
        here = self._position if self._position is not None else self._anchor
        return here is None or keyframe > here

    # -- the walk

    def walk(self, targets: list[float]) -> list[Pick]:
        """The frame on screen at each target time (targets ascending); fewer picks if nothing decodes."""
        if self._used:
            self._restart(self.layout.keyframes[0] if self.layout.keyframes else None)
        self._used = True
        picks: list[Pick] = []
        previous: av.VideoFrame | None = None  # last frame with pts <= target
        pending: av.VideoFrame | None = None  # first frame after the target, kept for the next one
        last_pick: tuple[av.VideoFrame, Pick] | None = None
        for target in targets:
            ts = self.layout.start + math.floor(target / self.layout.time_base + 1e-6)
            sought = self._seek_for(ts)
            if sought:
                previous = pending = None
            previous, pending = self._advance(ts, previous, pending)
            if sought and previous is None and pending is not None:
                previous, pending = self._back_off(ts)
            chosen = previous if previous is not None else pending
            if chosen is None:  # nothing decodes here (data ends early): repeat the last frame, if any
                if last_pick is not None:
                    picks.append(last_pick[1])
                continue
            if last_pick is None or last_pick[0] is not chosen:
                last_pick = (chosen, self._convert(chosen))
            picks.append(last_pick[1])
        return picks

    def _seek_for(self, ts: int) -> bool:
        """Seek to the keyframe at or before `ts` when it lies beyond the decoder's position."""
        keyframes = self.layout.keyframes
        k = bisect.bisect_right(keyframes, ts) - 1
        if k < 0 or not self._beyond_position(keyframes[k]):
            return False
        return self._restart(keyframes[k])

    def _advance(
        self, ts: int, previous: av.VideoFrame | None, pending: av.VideoFrame | None
    ) -> tuple[av.VideoFrame | None, av.VideoFrame | None]:
        """Decode forward until a frame lies after `ts`; returns (frame on screen at ts, next frame)."""
        while not (pending is not None and pending.pts > ts):
            if pending is not None:
                previous = pending
            if self._eof:
                return previous, None
            pending = self._next()
        return previous, pending

    def _back_off(self, ts: int) -> tuple[av.VideoFrame | None, av.VideoFrame | None]:
        """After a seek the first frame was already past `ts` (index holds DTS): start a keyframe earlier."""
        keyframes = self.layout.keyframes
        k = bisect.bisect_left(keyframes, self._anchor if self._anchor is not None else 0) - 1
        previous = pending = None
        while k >= 0 and self._restart(keyframes[k]):
            previous, pending = self._advance(ts, None, None)
            if previous is not None:
                break
            k -= 1
        return previous, pending

    # -- truncation

    def short_of(self, targets: list[float]) -> bool:
        """True when the walk hit the end of the data before the last target (a truncated file)."""
        tolerance = 1.0 / self.layout.fps if self.layout.fps else 0.04
        return bool(targets) and self._max_end is not None and targets[-1] > self.max_end + tolerance

    def decodable_end(self) -> float:
        """Decode from the last keyframe known to decode up to the end of the data; its end time (s)."""
        self._used = True
        reached = self._max_end if self._max_end is not None else self.layout.start
        keyframes = self.layout.keyframes
        k = bisect.bisect_right(keyframes, reached) - 1
        self._restart(keyframes[k] if k >= 0 else None)
        while self._next() is not None:
            pass
        return self.max_end

    # -- conversion

    def _convert(self, frame: av.VideoFrame) -> Pick:
        """RGB pixels in display orientation, shrunk in the same swscale pass when max_side asks."""
        width, height = frame.width, frame.height
        if self.max_side is not None and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
            pixels = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
        else:
            pixels = frame.to_ndarray(format="rgb24")  # (H, W, 3)
        turns = quarter_turns(frame)
        if turns:
            pixels = np.rot90(pixels, k=turns)  # np.rot90 turns counter-clockwise, like frame.rotation
        return Pick(self.layout.seconds(frame.pts), pixels, turns * 90)

    @property
    def max_end(self) -> float:
        """End (s) of the latest frame decoded so far; -inf before any."""
        return -math.inf if self._max_end is None else self.layout.seconds(self._max_end)
