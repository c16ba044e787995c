"""The Engine: one loaded VideoLLM and the pipeline that answers a question about a video.

The pipeline reads top to bottom as named phases, each timed on its own:

    decode (PyAV) → vision (processor + vision tower) → compress (select tokens) → prefill → generate

The Engine prints nothing; streaming text goes to an `on_text` callback the caller provides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vidqa.compress.base import Selection
from vidqa.compress.registry import Compression, build_compression
from vidqa.errors import UsageError, VidqaError
from vidqa.features import Prepared, entry_meta, entry_tensors, from_entry
from vidqa.generation import GenerationStats, generate_streaming
from vidqa.models import DEFAULT_MODEL, resolve_model_id
from vidqa.models.loading import load_adapter, resolve_attn, resolve_device, resolve_dtype
from vidqa.record import Result, Timings
from vidqa.settings import SamplingSettings
from vidqa.video import Clip, check_path, load_video

if TYPE_CHECKING:
    from transformers import BatchFeature

    from vidqa.cache import FeatureCache
    from vidqa.models.base import VideoAdapter, VisualTokens

TextCallback = Callable[[str], None]


class PhaseClock:
    """Wall-clock phases, synchronising the device before each reading so GPU work is attributed right."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


@dataclass
class EncodedVideo:
    """A decoded, encoded video: everything question-independent, reusable across questions."""

    clip: Clip
    question: str  # the question `batch` was built for
    batch: BatchFeature
    visual: VisualTokens
    cached: bool = False
    timings: Timings = field(default_factory=Timings)
    used: bool = False  # decode/vision time is reported with the first answer only
    selections: dict[Compression, Selection] = field(default_factory=dict)  # per compression setting


@dataclass
class InspectReport:
    """What `vidqa inspect` shows: per-frame times, uniqueness, softmax weights and budgets at `keep`."""

    video: str
    model: str
    keep: float
    frame_times: list[float]
    tokens_per_frame: int
    uniqueness: list[float]
    weights: list[float]
    budgets: list[int]
    kept_indices: list[list[int]]
    grid: tuple[int, int] = (1, 1)  # (rows, cols) of one frame's tokens
    frames: Any = None  # (T', H, W, 3) uint8 frames, one per selection frame (for the contact sheet)

    @property
    def total(self) -> int:
        return self.tokens_per_frame * len(self.budgets)

    @property
    def kept(self) -> int:
        return sum(self.budgets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "model": self.model,
            "keep": self.keep,
            "tokens_per_frame": self.tokens_per_frame,
            "grid": list(self.grid),
            "visual_tokens": {"total": self.total, "kept": self.kept},
            "frames": [
                {"time": round(t, 4), "uniqueness": round(u, 6), "weight": round(w, 6), "budget": k}
                for t, u, w, k in zip(
                    self.frame_times, self.uniqueness, self.weights, self.budgets, strict=True
                )
            ],
        }


class Engine:
    """A loaded model plus the question-answering pipeline. Create with `Engine.load(...)`."""

    def __init__(
        self,
        adapter: VideoAdapter,
        *,
        model_name: str,
        cache: FeatureCache | None = None,
        full_hash: bool = False,
    ) -> None:
        self.adapter = adapter
        self.model_name = model_name
        self.cache = cache
        self.full_hash = full_hash  # identify videos by their whole content (see vidqa.identity)
        self.device = adapter.device
        self.clock = PhaseClock(self.device)

    @classmethod
    def load(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: str = "auto",
        attn: str = "auto",
        revision: str | None = None,
        trust_remote_code: bool = False,
        device_map: str | None = None,
        cache: FeatureCache | None = None,
        full_hash: bool = False,
    ) -> Engine:
        """Load `model` (alias, hub id or local folder); see `vidqa.models.ALIASES` for the aliases."""
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        attn_impl = resolve_attn(attn, torch_device, torch_dtype)
        adapter = load_adapter(
            model,
            device=torch_device,
            dtype=torch_dtype,
            attn=attn_impl,
            revision=revision,
            trust_remote_code=trust_remote_code,
            device_map=device_map,
        )
        return cls(adapter, model_name=resolve_model_id(model), cache=cache, full_hash=full_hash)

    # -- phases --------------------------------------------------------------------------------------
    def sampling_for(self, sampling: SamplingSettings) -> SamplingSettings:
        """Fill in this model's default frame count when the user gave neither --frames nor --fps."""
        if sampling.frames is None and sampling.fps is None:
            return sampling.with_frames(self.adapter.default_frames(self.device))
        return sampling

    def decode(self, video: str | Path, sampling: SamplingSettings) -> Clip:
        sampling = self.sampling_for(sampling)
        return load_video(
            video,
            frames=sampling.frames,
            fps=sampling.fps,
            max_frames=sampling.max_frames,
            multiple_of=self.adapter.frame_multiple,
            max_side=self.adapter.decode_side(),
        )

    def cache_key(self, video: str | Path, sampling: SamplingSettings) -> str:
        """Key of a video's features: file and model identities, sampling, dtype, decode size, versions."""
        import transformers

        from vidqa.cache import cache_key
        from vidqa.features import ENTRY_VERSION
        from vidqa.identity import file_identity

        sampling = self.sampling_for(sampling)
        return cache_key(
            video=file_identity(video, full=self.full_hash),
            sampling=[sampling.frames, sampling.fps, sampling.max_frames, self.adapter.frame_multiple],
            model=self.adapter.identity,
            dtype=str(self.adapter.model.dtype),
            decode_side=self.adapter.decode_side(),
            transformers=".".join(transformers.__version__.split(".")[:2]),
            version=ENTRY_VERSION,
        )

    def prepare(self, video: str | Path, sampling: SamplingSettings) -> Prepared:
        """The model-free half: a cache hit, or decoded frames. Safe to run on a background thread."""
        start = time.perf_counter()
        key = None
        if self.cache is not None:
            check_path(video)  # a missing file is a VideoError, not a cache error
            key = self.cache_key(video, sampling)
            entry = self.cache.get(key)
            if entry is not None:
                clip, visual = from_entry(*entry, device=self.device, dtype=self.adapter.model.dtype)
                return Prepared(str(video), clip, visual, key, time.perf_counter() - start)
        clip = self.decode(video, sampling)
        return Prepared(str(video), clip, None, key, time.perf_counter() - start)

    @torch.inference_mode()
    def encode_prepared(self, prepared: Prepared, question: str) -> EncodedVideo:
        """Processor + vision tower (skipped on a cache hit); stores fresh features in the cache."""
        timings = Timings(decode=prepared.seconds)
        start = self.clock.now()
        batch = self.adapter.prompt(question, prepared.clip)
        visual = prepared.visual
        if visual is None:
            visual = self.adapter.encode(batch)
            if self.cache is not None and prepared.key is not None:
                self.cache.put(prepared.key, entry_tensors(visual), entry_meta(prepared.clip, visual))
        timings.vision = self.clock.now() - start
        return EncodedVideo(
            clip=prepared.clip,
            question=question,
            batch=batch,
            visual=visual,
            cached=prepared.cached,
            timings=timings,
        )

    def encode(self, video: str | Path, question: str, sampling: SamplingSettings) -> EncodedVideo:
        """Decode frames and run the vision tower: the question-independent half of the pipeline."""
        return self.encode_prepared(self.prepare(video, sampling), question)

    def select(self, visual: VisualTokens, compression: Compression) -> Selection:
        """Which visual tokens reach the LLM; keep 1 (or method none) keeps everything."""
        return compression.select(visual.features)

    # -- the public entry points ---------------------------------------------------------------------
    def ask(
        self,
        video: str | Path,
        question: str,
        *,
        method: str = "none",
        keep: float | None = None,
        frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        max_new_tokens: int = 128,
        min_new_tokens: int = 0,
        on_text: TextCallback | None = None,
        params: dict[str, Any] | None = None,
    ) -> Result:
        """Answer one question about one video. Raises VidqaError subclasses on bad input."""
        sampling = SamplingSettings(frames=frames, fps=fps, max_frames=max_frames)
        compression = build_compression(method, keep=keep, params=params)
        return next(
            iter(
                self.ask_many(
                    video,
                    [question],
                    sampling=sampling,
                    compression=compression,
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=min_new_tokens,
                    on_text=on_text,
                )
            )
        )

    def ask_many(
        self,
        video: str | Path,
        questions: list[str],
        *,
        sampling: SamplingSettings,
        compression: Compression,
        max_new_tokens: int = 128,
        min_new_tokens: int = 0,
        on_text: TextCallback | None = None,
        encoded: EncodedVideo | None = None,
    ) -> Iterable[Result]:
        """Answer several questions about one video; decode, vision and selection run once for all.

        A generator: each Result is yielded as soon as its answer is complete.
        """
        if not questions:
            raise UsageError("no question given")
        encoded = encoded or self.encode(video, questions[0], sampling)
        for question in questions:
            yield self.answer(
                video,
                question,
                encoded,
                compression,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                on_text=on_text,
            )

    def answer(
        self,
        video: str | Path,
        question: str,
        encoded: EncodedVideo,
        compression: Compression,
        *,
        max_new_tokens: int = 128,
        min_new_tokens: int = 0,
        on_text: TextCallback | None = None,
    ) -> Result:
        """One question about an encoded video: select (cached per setting) → prefill → generate."""
        start = time.perf_counter()
        self._reset_peak_memory()
        first_use, encoded.used = not encoded.used, True
        selection, compress_time = self._selection(encoded, compression)
        with torch.inference_mode():
            batch = (
                encoded.batch if question == encoded.question else self.adapter.prompt(question, encoded.clip)
            )
            answer, stats = self._generate(
                batch,
                encoded.visual,
                selection,
                compression,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                on_text=on_text,
            )
        timings = Timings(compress=compress_time, prefill=stats.prefill, generate=stats.generate)
        timings.total = time.perf_counter() - start
        if first_use:
            timings.decode, timings.vision = encoded.timings.decode, encoded.timings.vision
            timings.total += timings.decode + timings.vision
        return self._result(
            video, question, answer, encoded, selection, compression, timings, stats, reused=not first_use
        )

    def _selection(self, encoded: EncodedVideo, compression: Compression) -> tuple[Selection, float]:
        """The (question-independent) selection for this setting, computed once per video."""
        if compression in encoded.selections:
            return encoded.selections[compression], 0.0
        start = self.clock.now()
        selection = self.select(encoded.visual, compression)
        encoded.selections[compression] = selection
        return selection, self.clock.now() - start

    def _generate(
        self,
        batch: BatchFeature,
        visual: VisualTokens,
        selection: Selection,
        compression: Compression,
        *,
        max_new_tokens: int,
        min_new_tokens: int,
        on_text: TextCallback | None,
    ) -> tuple[str, GenerationStats]:
        t, m, _ = visual.shape
        keep_mask = None if selection.kept == t * m else selection.mask(m)
        start = self.clock.now()
        inputs = self.adapter.assemble(batch, visual, keep_mask)
        decode_stage = compression.decode_stage(self.adapter.model, inputs.visual_positions)
        return generate_streaming(
            self.adapter,
            inputs,
            clock=self.clock,
            start=start,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            on_text=on_text,
            decode_stage=decode_stage,
        )

    def _result(
        self,
        video: str | Path,
        question: str,
        answer: str,
        encoded: EncodedVideo,
        selection: Selection,
        compression: Compression,
        timings: Timings,
        stats: GenerationStats,
        *,
        reused: bool,
    ) -> Result:
        t, m, _ = encoded.visual.shape
        return Result(
            video=str(video),
            question=question,
            answer=answer,
            model=self.model_name,
            method=compression.method,
            keep=compression.keep,
            frame_times=list(encoded.clip.times),
            visual_total=t * m,
            visual_kept=selection.kept,
            timings=timings,
            generated_tokens=stats.tokens,
            peak_memory_bytes=self._peak_memory(),
            cached=encoded.cached or reused,
            extra=stats.extra,
        )

    def inspect(
        self,
        video: str | Path,
        *,
        keep: float = 0.25,
        frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
    ) -> InspectReport:
        """Sampling + vision tower + VidCom² scoring only (no generation): what compression would do."""
        from vidqa.compress import vidcom2

        sampling = SamplingSettings(frames=frames, fps=fps, max_frames=max_frames)
        encoded = self.encode(video, "describe the video", sampling)
        features = encoded.visual.features
        selection = vidcom2.select(features, keep=keep)
        t, m, _ = features.shape
        clip = encoded.clip
        step = max(1, len(clip.times) // t)  # Qwen: one selection frame per temporal patch of `step` frames
        return InspectReport(
            video=str(video),
            model=self.model_name,
            keep=keep,
            frame_times=[clip.times[i * step] for i in range(t)],
            tokens_per_frame=m,
            uniqueness=[float(v) for v in selection.uniqueness],
            weights=[float(v) for v in selection.weights],
            budgets=[int(v) for v in selection.budgets],
            kept_indices=[idx.tolist() for idx in selection.indices],
            grid=encoded.visual.grid or (1, m),
            frames=clip.frames[::step][:t],
        )

    # -- memory ------------------------------------------------------------------------------------
    def _reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _peak_memory(self) -> int:
        """Peak device memory of the item on CUDA; on CPU the process's peak resident set size."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def describe_error(exc: BaseException) -> str:
    """One line for a record's `error` field."""
    if isinstance(exc, VidqaError):
        return str(exc)
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of GPU memory: use fewer --frames, a smaller --keep, or a smaller model"
    return f"{type(exc).__name__}: {exc}"
