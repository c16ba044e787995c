"""Tests for vidqa.video (probing, keyframe-aware sampling, rotation, errors) on clips made by vidqa.synth.

Every clip is synthesised once per session in a temporary folder; expectations come from decoding the
same clip frame by frame with plain PyAV (the ground truth), never from hard-coded answers.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from vidqa import synth
from vidqa.errors import UsageError, VideoError
from vidqa.video import Clip, VideoInfo, load_video, probe, sample_times


@dataclass(frozen=True)
class Truth:
    """Every frame of a clip, decoded sequentially: times (s from stream start) and RGB pixels."""

    times: list[float]
    pixels: list[np.ndarray]  # each (H, W, 3) uint8, coded orientation

    def shown_at(self, t: float) -> int:
        """Index of the frame on screen at time t (last frame with time <= t, else the first)."""
        return max(0, bisect.bisect_right(self.times, t + 1e-9) - 1)


def _truth(path: Path) -> Truth:
    times: list[float] = []
    pixels: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:  # damaged files: the truth is what decodes
                continue
            for frame in decoded:
                times.append(float((frame.pts - start) * stream.time_base))
                pixels.append(frame.to_ndarray(format="rgb24"))
    return Truth(times, pixels)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """All test clips, small and short; ~2 s to make on two cores."""
    d = tmp_path_factory.mktemp("clips")
    small = (96, 64)
    made = {
        "regular": synth.make_clip(d / "regular.mp4", seconds=8, size=(160, 120), gop=25),
        "long_gop": synth.make_clip(d / "long_gop.mp4", seconds=40, size=small, gop=250),
        "short_gop": synth.make_clip(d / "short_gop.mp4", seconds=40, size=small, gop=12),
        "mkv": synth.make_clip(d / "cues.mkv", seconds=20, size=small, gop=50, pattern="cuts"),
        "ts": synth.make_clip(d / "no_index.ts", seconds=20, size=small, gop=50),
        # x264 "medium" uses B-frames: the MP4 index then holds decode times, a reorder delay before pts.
        "bframes": synth.make_clip(d / "bframes.mp4", seconds=20, size=small, gop=50, preset="medium"),
        "vfr": synth.make_clip(d / "vfr.mp4", seconds=6, size=small, vfr=True),
        "odd_x264": synth.make_clip(d / "odd.mp4", seconds=2, size=(321, 179)),
        "odd_mpeg4": synth.make_clip(d / "odd.avi", seconds=2, size=(321, 179), codec="mpeg4"),
        "with_audio": synth.make_clip(d / "audio.mp4", seconds=3, size=small, pattern="cuts", audio=True),
        "one_frame": synth.make_clip(d / "one.mp4", seconds=0.04, size=small),
        "audio_only": synth.make_audio_only(d / "tone.m4a", 1.0),
    }
    for degrees in (90, 180, 270):
        made[f"rot{degrees}"] = synth.make_clip(
            d / f"rot{degrees}.mp4", seconds=1, size=(64, 48), pattern="split", rotation=degrees
        )
    made["truncated_mp4"] = _halve(synth.make_clip(d / "whole.mp4", seconds=10, size=small, gop=25), d)
    made["truncated_mkv"] = _halve(synth.make_clip(d / "whole.mkv", seconds=10, size=small, gop=25), d)
    made["corrupt"] = _corrupt(synth.make_clip(d / "corrupt.avi", seconds=4, size=small, codec="mjpeg"))
    (d / "empty.mp4").touch()
    (d / "notes.mp4").write_text("this is not a video\n" * 20)
    (d / "folder.mp4").mkdir()
    made.update(
        empty=d / "empty.mp4", text=d / "notes.mp4", directory=d / "folder.mp4", missing=d / "nope.mp4"
    )
    return made


def _halve(path: Path, folder: Path) -> Path:
    """A copy of the file cut after half of its bytes (a download that stopped)."""
    data = path.read_bytes()
    cut = folder / f"half_{path.name}"
    cut.write_bytes(data[: len(data) // 2])
    return cut


CORRUPT_PACKETS = (20, 45, 70)


def _corrupt(path: Path) -> Path:
    """Zero the payload of a few packets in the middle of an MJPEG AVI (each then fails to decode)."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for index in CORRUPT_PACKETS:
        pos, size = packets[index]
        data[pos : pos + size] = bytes(size)
    path.write_bytes(bytes(data))
    return path


def _assert_matches_truth(clip: Clip, truth: Truth, targets: list[float]) -> None:
    """Each returned frame is exactly the frame on screen at its target: same time, same pixels."""
    assert len(clip.times) == len(targets) == clip.frames.shape[0]
    for target, time, pixels in zip(targets, clip.times, clip.frames, strict=True):
        expected = truth.shown_at(target)
        assert time == pytest.approx(truth.times[expected], abs=1e-6)
        np.testing.assert_array_equal(pixels, truth.pixels[expected])


# ------------------------------------------------------------------------------------------- sample_times


def test_sample_times_are_segment_centres() -> None:
    assert sample_times(8.0, frames=4) == pytest.approx([1.0, 3.0, 5.0, 7.0])
    times = sample_times(10.0, frames=32)
    assert len(times) == 32
    assert times == sorted(times)
    assert times[0] > 0 and times[-1] < 10.0


def test_sample_times_fps_mode_spacing_and_cap() -> None:
    times = sample_times(10.0, fps=2)
    assert len(times) == 20
    assert np.diff(times) == pytest.approx([0.5] * 19)
    assert times[0] == pytest.approx(0.25)
    assert sample_times(10.3, fps=1) == pytest.approx([i + 0.5 for i in range(10)])  # last centre < end
    capped = sample_times(10.0, fps=2, max_frames=5)
    assert capped == pytest.approx([1.0, 3.0, 5.0, 7.0, 9.0])  # falls back to uniform max_frames
    assert len(sample_times(10.0, fps=30, available=50)) == 50


def test_sample_times_multiple_of_rounds_up_unless_over_the_cap() -> None:
    assert len(sample_times(10.0, frames=7, multiple_of=2)) == 8
    assert len(sample_times(10.0, frames=8, multiple_of=2)) == 8
    assert len(sample_times(10.0, fps=0.7, multiple_of=2)) == 8  # 7 targets -> 8, re-spread
    assert sample_times(10.0, frames=7, multiple_of=2) == pytest.approx(sample_times(10.0, frames=8))
    assert len(sample_times(10.0, frames=9, max_frames=7, multiple_of=2)) == 6
    assert len(sample_times(10.0, frames=40, max_frames=32)) == 32


def test_sample_times_degenerate_durations() -> None:
    assert sample_times(0.0, frames=3) == [0.0, 0.0, 0.0]
    assert sample_times(0.1, fps=1) == pytest.approx([0.05])


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"frames": 4, "fps": 1.0}, {"frames": 0}, {"fps": 0}, {"fps": -1.0},
     {"frames": 4, "multiple_of": 0}, {"frames": 4, "max_frames": 1, "multiple_of": 2}],
)  # fmt: skip
def test_sample_times_rejects_bad_requests(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        sample_times(10.0, **kwargs)


# -------------------------------------------------------------------------------------------------- probe


def test_probe_reports_the_stream(clips: dict[str, Path]) -> None:
    info = probe(clips["regular"])
    assert isinstance(info, VideoInfo)
    assert info.path == str(clips["regular"])
    assert info.duration == pytest.approx(8.0, abs=0.05)
    assert info.fps == pytest.approx(25.0)
    assert (info.width, info.height, info.rotation) == (160, 120, 0)
    assert info.num_frames == 200
    assert info.codec == "h264"
    assert info.keyframe_times == pytest.approx([float(s) for s in range(8)])  # GOP of 25 frames = 1 s


def test_probe_finds_keyframes_of_matroska_cues(clips: dict[str, Path]) -> None:
    info = probe(clips["mkv"])
    assert info.keyframe_times == pytest.approx([2.0 * k for k in range(10)])
    assert info.num_frames == 500


# -------------------------------------------------------------------------------------------- load_video


def test_load_video_returns_the_frames_shown_at_the_targets(clips: dict[str, Path]) -> None:
    clip = load_video(clips["regular"], frames=8)
    assert clip.frames.shape == (8, 120, 160, 3)
    assert clip.frames.dtype == np.uint8
    targets = sample_times(clip.info.duration, frames=8)
    _assert_matches_truth(clip, _truth(clips["regular"]), targets)
    assert all(abs(t - target) < 1 / 25 for t, target in zip(clip.times, targets, strict=True))
    assert clip.frame_indices == [round(t * 25) for t in clip.times]
    assert clip.warnings == [] and clip.skipped_packets == 0


def test_fps_mode_and_max_frames(clips: dict[str, Path]) -> None:
    clip = load_video(clips["regular"], fps=2)
    assert len(clip.times) == 16
    assert np.diff(clip.times) == pytest.approx([0.5] * 15, abs=1 / 25)
    capped = load_video(clips["regular"], fps=2, max_frames=5)
    assert len(capped.times) == 5
    assert capped.times == pytest.approx(sample_times(8.0, frames=5), abs=1 / 25)


def test_multiple_of_gives_even_counts(clips: dict[str, Path]) -> None:
    assert load_video(clips["regular"], frames=7, multiple_of=2).frames.shape[0] == 8
    assert load_video(clips["regular"], fps=0.6, multiple_of=2).frames.shape[0] == 6  # 8 s: 5 targets -> 6


@pytest.mark.parametrize("count", [4, 8, 16])
def test_long_gop_walk_decodes_only_what_the_targets_need(clips: dict[str, Path], count: int) -> None:
    path = clips["long_gop"]  # 40 s at 25 fps, a keyframe every 10 s
    clip = load_video(path, frames=count)
    truth = _truth(path)
    targets = sample_times(clip.info.duration, frames=count)
    _assert_matches_truth(clip, truth, targets)
    # Optimal in-order walk: per GOP holding targets, decode from its keyframe to its last target (+1 to
    # see that the next frame is past it). Re-decoding per target (seek-each) or decoding all 1000 frames
    # would exceed this.
    last_in_gop: dict[int, int] = {}
    for target in targets:
        index = truth.shown_at(target)
        last_in_gop[index // 250] = index
    optimal = sum(index - gop * 250 + 2 for gop, index in last_in_gop.items())
    assert clip.decoded_frames <= optimal + 2 * len(last_in_gop)
    assert clip.decoded_frames < len(truth.times)


def test_short_gop_sampling_decodes_a_small_fraction(clips: dict[str, Path]) -> None:
    clip = load_video(clips["short_gop"], frames=8)  # 1000 frames, keyframe every 12
    _assert_matches_truth(clip, _truth(clips["short_gop"]), sample_times(clip.info.duration, frames=8))
    assert clip.decoded_frames <= 8 * (12 + 2)


@pytest.mark.parametrize("name", ["mkv", "ts"])
def test_containers_without_an_upfront_index_still_seek(clips: dict[str, Path], name: str) -> None:
    clip = load_video(clips[name], frames=5)  # 500 frames, keyframe every 50
    assert len(clip.info.keyframe_times) == 10
    _assert_matches_truth(clip, _truth(clips[name]), sample_times(clip.info.duration, frames=5))
    assert clip.decoded_frames <= 5 * (50 + 2)


def test_b_frames_index_is_read_in_presentation_time(clips: dict[str, Path]) -> None:
    info = probe(clips["bframes"])
    assert info.keyframe_times == pytest.approx([2.0 * k for k in range(10)])
    clip = load_video(clips["bframes"], frames=5)
    _assert_matches_truth(clip, _truth(clips["bframes"]), sample_times(clip.info.duration, frames=5))
    assert clip.decoded_frames <= 5 * (50 + 4)  # a seek to a keyframe's DTS would land a GOP early


def test_variable_frame_rate_uses_real_timestamps(clips: dict[str, Path]) -> None:
    truth = _truth(clips["vfr"])
    gaps = np.diff(truth.times)
    assert gaps.max() > 2.5 * gaps.min()  # the clip really is VFR
    clip = load_video(clips["vfr"], frames=24)
    _assert_matches_truth(clip, truth, sample_times(clip.info.duration, frames=24))


@pytest.mark.parametrize(
    ("degrees", "red_corner", "blue_corner"),
    [(90, (0, 0), (0, -1)), (180, (-1, 0), (0, 0)), (270, (0, -1), (0, 0))],
)
def test_rotation_is_applied(
    clips: dict[str, Path], degrees: int, red_corner: tuple[int, int], blue_corner: tuple[int, int]
) -> None:
    # Coded picture: 64x48, top half red, bottom half blue; the display matrix turns it CCW by `degrees`.
    clip = load_video(clips[f"rot{degrees}"], frames=2)
    expected_hw = (48, 64) if degrees == 180 else (64, 48)
    assert clip.frames.shape == (2, *expected_hw, 3)
    assert (clip.info.height, clip.info.width) == expected_hw
    assert clip.info.rotation == degrees == probe(clips[f"rot{degrees}"]).rotation
    frame = clip.frames[0].astype(int)
    assert frame[red_corner][0] > 200 and frame[red_corner][2] < 50
    assert frame[blue_corner][2] > 200 and frame[blue_corner][0] < 50


@pytest.mark.parametrize("name", ["odd_x264", "odd_mpeg4"])
def test_odd_sizes(clips: dict[str, Path], name: str) -> None:
    clip = load_video(clips[name], frames=3)
    assert clip.frames.shape == (3, 179, 321, 3)
    assert (clip.info.width, clip.info.height) == (321, 179)


def test_max_side_shrinks_keeping_aspect(clips: dict[str, Path]) -> None:
    assert load_video(clips["regular"], frames=2, max_side=80).frames.shape == (2, 60, 80, 3)
    assert load_video(clips["regular"], frames=2, max_side=500).frames.shape == (2, 120, 160, 3)
    assert load_video(clips["rot90"], frames=2, max_side=32).frames.shape == (2, 32, 24, 3)


@pytest.mark.parametrize("threads", ["auto", "none"])
def test_threading_modes_give_the_same_frames(clips: dict[str, Path], threads: str) -> None:
    plain = load_video(clips["short_gop"], frames=6)
    threaded = load_video(clips["short_gop"], frames=6, threads=threads)  # type: ignore[arg-type]
    assert threaded.times == plain.times
    np.testing.assert_array_equal(threaded.frames, plain.frames)


def test_audio_track_is_ignored(clips: dict[str, Path]) -> None:
    clip = load_video(clips["with_audio"], frames=4)
    assert clip.frames.shape == (4, 64, 96, 3)
    assert clip.info.duration == pytest.approx(3.0, abs=0.1)


def test_one_frame_video_repeats_its_frame_only_to_fill_a_multiple(clips: dict[str, Path]) -> None:
    clip = load_video(clips["one_frame"], frames=1, multiple_of=2)
    assert clip.frames.shape[0] == 2
    np.testing.assert_array_equal(clip.frames[0], clip.frames[1])
    assert any("repeated to fill" in w for w in clip.warnings)
    single = load_video(clips["one_frame"], frames=4)
    assert single.frames.shape[0] == 1 and single.warnings  # no multiple to fill: the frame once


@pytest.mark.parametrize(("multiple_of", "expected"), [(1, 5), (2, 4), (4, 4)])
def test_short_clip_gives_each_frame_once(tmp_path: Path, multiple_of: int, expected: int) -> None:
    """A real 5-frame clip asked for 8 frames: each frame once, rounded down to the frame multiple."""
    path = synth.make_clip(
        tmp_path / "five.mp4", seconds=0.5, fps=10, size=(64, 48), pattern="cuts", cut_every=0.1
    )
    truth = _truth(path)
    assert len(truth.times) == 5
    clip = load_video(path, frames=8, multiple_of=multiple_of)
    assert clip.frames.shape[0] == expected == len(set(clip.times))
    assert set(clip.times) <= set(truth.times)
    assert len({clip.frames[i].tobytes() for i in range(expected)}) == expected  # no two frames alike
    assert clip.warnings == [f"only 5 distinct frame(s) for the 8 asked: using {expected}, each once"]


@pytest.mark.parametrize("name", ["truncated_mp4", "truncated_mkv"])
def test_truncated_file_spreads_targets_over_what_decodes(clips: dict[str, Path], name: str) -> None:
    clip = load_video(clips[name], frames=8)
    truth = _truth(clips[name])  # what a sequential decode of the damaged file yields
    assert clip.frames.shape[0] == 8
    assert len(set(clip.times)) == 8  # re-spread, not the last frame repeated
    assert clip.times[-1] <= truth.times[-1] + 1e-6
    assert clip.times[-1] > 0.8 * truth.times[-1]
    [note] = [w for w in clip.warnings if w.startswith("truncated:")]
    assert note.endswith("of 10.0 s")
    decoded_up_to = float(note.split("up to ")[1].split(" s")[0])
    assert decoded_up_to == pytest.approx(truth.times[-1], abs=0.1)


def test_corrupt_packets_are_skipped_and_counted(clips: dict[str, Path]) -> None:
    clip = load_video(clips["corrupt"], fps=25)
    assert clip.skipped_packets == len(CORRUPT_PACKETS)
    assert f"skipped {len(CORRUPT_PACKETS)} corrupt packet(s)" in clip.warnings
    # each bad frame's slot would show the frame before it: that repeat is dropped, every frame comes once
    assert clip.frames.shape[0] == len(set(clip.times)) == 100 - len(CORRUPT_PACKETS)


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("empty", "empty file"),
        ("text", "not a video file ("),
        ("audio_only", "no video stream (audio only)"),
    ],
)
def test_bad_inputs_raise_video_error_naming_the_file(clips: dict[str, Path], name: str, cause: str) -> None:
    path = clips[name]
    for call in (lambda: load_video(path, frames=4), lambda: probe(path)):
        with pytest.raises(VideoError) as caught:
            call()
        assert str(path) in str(caught.value)
        assert caught.value.cause.startswith(cause)
        assert caught.value.path == str(path)


def test_load_video_rejects_bad_options(clips: dict[str, Path]) -> None:
    with pytest.raises(UsageError):
        load_video(clips["regular"], frames=4, fps=1.0)
    with pytest.raises(UsageError):
        load_video(clips["regular"])
    with pytest.raises(UsageError):
        load_video(clips["regular"], frames=4, max_side=0)
    with pytest.raises(UsageError):
        load_video(clips["regular"], frames=4, threads="many")  # type: ignore[arg-type]


def test_synth_is_deterministic(tmp_path: Path) -> None:
    a = synth.make_clip(tmp_path / "a.mp4", seconds=1, size=(64, 48), pattern="cuts")
    b = synth.make_clip(tmp_path / "b.mp4", seconds=1, size=(64, 48), pattern="cuts")
    truth_a, truth_b = _truth(a), _truth(b)
    assert truth_a.times == truth_b.times and len(truth_a.times) == 25
    assert all(np.array_equal(x, y) for x, y in zip(truth_a.pixels, truth_b.pixels, strict=True))


def test_cuts_pattern_changes_scene(tmp_path: Path) -> None:
    path = synth.make_clip(tmp_path / "cuts.mp4", seconds=4, size=(64, 48), pattern="cuts", cut_every=2.0)
    clip = load_video(path, frames=2)  # one frame per scene
    corner = clip.frames[:, 0, 0].astype(int)  # background colour of each scene
    assert np.abs(corner[0] - corner[1]).sum() > 100


def test_looped_clip_repeats_with_continuous_timestamps(tmp_path: Path) -> None:
    path = synth.make_looped_clip(tmp_path / "loop.mp4", seconds=3, loop_seconds=1, size=(64, 48), gop=25)
    truth = _truth(path)
    assert len(truth.times) == 75
    assert np.diff(truth.times) == pytest.approx([0.04] * 74)
    np.testing.assert_array_equal(truth.pixels[3], truth.pixels[53])
    assert probe(path).keyframe_times == pytest.approx([0.0, 1.0, 2.0])
    assert math.isclose(probe(path).duration, 3.0, abs_tol=0.05)
