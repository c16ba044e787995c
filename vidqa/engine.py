"""The Engine: one loaded VideoLLM, and the question-independent half of the pipeline.

    prepare (cache read, or PyAV decode) → encode (processor + vision tower, cache write) → session

`prepare` needs no model and may run on a background thread; `encode` yields a `VideoEncoding` (features,
token layout, clip timing) that every question about the video reuses; `session` pairs an encoding with a
compression setting, and `Session.ask` runs a question (prompt → compress → prefill → generate). The Engine
prints nothing; streaming text goes to an `on_text` callback the caller provides.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vidqa._version import __version__
from vidqa.compress.registry import DEFAULT_METHOD, Compression, build_compression, needs_saliency
from vidqa.encoding import Prepared, VideoEncoding, entry_meta, entry_tensors, from_entry
from vidqa.errors import CacheError, UsageError
from vidqa.memory import reset_peak
from vidqa.models import DEFAULT_MODEL, resolve_model_id
from vidqa.models.loading import load_adapter, resolve_attn, resolve_device, resolve_dtype
from vidqa.record import VIDEO_PHASES, Result, Timings
from vidqa.session import Session, TextCallback
from vidqa.settings import GenerationSettings, SamplingSettings
from vidqa.video import Clip, check_path, load_video

if TYPE_CHECKING:
    import numpy as np

    from vidqa.cache import FeatureCache
    from vidqa.items import Item
    from vidqa.models.base import VideoAdapter
    from vidqa.runner import TextCallbackFactory


class PhaseClock:
    """Wall-clock phases, synchronising the device before each reading so GPU work is attributed right."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


@dataclass
class InspectReport:
    """What `vidqa inspect` shows: per-frame times, the method's scores, budgets and kept token indices."""

    video: str
    model: str
    compression: Compression
    frame_times: list[float]
    tokens_per_frame: int
    budgets: list[int]
    kept_indices: list[list[int]]
    scores: dict[str, list[float]] = field(default_factory=dict)  # per-frame, method-defined
    grid: tuple[int, int] = (1, 1)  # (rows, cols) of one frame's tokens
    frames: Any = None  # (T', H, W, 3) uint8 frames, one per selection frame (for the contact sheet)
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.tokens_per_frame * len(self.budgets)

    @property
    def kept(self) -> int:
        return sum(self.budgets)

    @property
    def uniqueness(self) -> list[float] | None:
        return self.scores.get("uniqueness")

    @property
    def headline(self) -> tuple[str, list[float]]:
        """The per-frame number charts show: the method's first score, else the share of tokens kept."""
        if self.scores:
            name = next(iter(self.scores))
            return name, self.scores[name]
        return "kept share", [budget / self.tokens_per_frame for budget in self.budgets]

    @property
    def weights(self) -> list[float] | None:
        return self.scores.get("weight")

    def to_dict(self) -> dict[str, Any]:
        frames = []
        for index, (time_s, budget, kept) in enumerate(
            zip(self.frame_times, self.budgets, self.kept_indices, strict=True)
        ):
            frame: dict[str, Any] = {"time": round(time_s, 4), "budget": budget, "kept": kept}
            frame.update({name: round(values[index], 6) for name, values in self.scores.items()})
            frames.append(frame)
        return {
            "video": self.video,
            "model": self.model,
            **self.compression.to_dict(),
            "tokens_per_frame": self.tokens_per_frame,
            "grid": list(self.grid),
            "visual_tokens": {"total": self.total, "kept": self.kept},
            "frames": frames,
            "warnings": self.warnings,
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
            attn_chosen_by_auto=attn == "auto",
        )
        return cls(adapter, model_name=resolve_model_id(model), cache=cache, full_hash=full_hash)

    # -- what produced a record ----------------------------------------------------------------------
    def settings(self, sampling: SamplingSettings, generation: GenerationSettings) -> dict[str, Any]:
        """The run's settings beside method and keep, as records carry them (resume compares them)."""
        import transformers

        config = self.adapter.model.config.get_text_config()
        return {
            "model": self.adapter.identity,
            "dtype": str(self.adapter.model.dtype).removeprefix("torch."),
            "attn": getattr(config, "_attn_implementation", None),
            "device": str(self.device),
            "sampling": self.sampling_for(sampling).to_dict(),
            "max_new_tokens": generation.max_new_tokens,
            "vidqa": __version__,
            "transformers": transformers.__version__,
        }

    # -- the video's phases ----------------------------------------------------------------------------
    def sampling_for(self, sampling: SamplingSettings) -> SamplingSettings:
        """This model's sampling: its default frame count when the user gave neither --frames nor --fps;
        a usage error for a cap below the frames the model merges into one temporal patch."""
        multiple = self.adapter.frame_multiple
        if sampling.max_frames is not None and sampling.max_frames < multiple:
            raise UsageError(
                f"--max-frames must be at least {multiple} for this model (it reads frames in groups of "
                f"{multiple}; got {sampling.max_frames})"
            )
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

    def cache_key(self, video: str | Path, sampling: SamplingSettings, *, saliency: str | None = None) -> str:
        """Key of a video's encoding: file and model identities, sampling, dtype, decode size, versions (and
        whether it carries the vision tower's saliency: entries are immutable, so that is another entry)."""
        import transformers

        from vidqa.cache import cache_key
        from vidqa.encoding import ENTRY_VERSION
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
            **({"saliency": saliency} if saliency else {}),
        )

    def prefix_key(self, feature_key: str, compression: Compression, prefix_ids: torch.Tensor) -> str:
        """Key of a video prefix on disk: the video's features, the compression setting with all its
        parameters, the prompt's tokens up to the video's end (template, system text, video layout), and what
        changes the numbers of the cache (dtype, attention implementation, device type)."""
        import hashlib

        from vidqa.cache import cache_key
        from vidqa.prefix import PREFIX_VERSION

        config = self.adapter.model.config.get_text_config()
        ids = prefix_ids.to("cpu", torch.int64).contiguous().numpy().tobytes()
        return cache_key(
            kind="prefix",
            features=feature_key,
            compression=compression.to_dict(),
            prompt=hashlib.blake2b(ids, digest_size=16).hexdigest(),
            dtype=str(self.adapter.model.dtype),
            attn=getattr(config, "_attn_implementation", None),
            device=self.device.type,
            version=PREFIX_VERSION,
        )

    def prepare(
        self, video: str | Path, sampling: SamplingSettings, *, saliency: str | None = None
    ) -> Prepared:
        """The model-free half: a cache hit, or decoded frames. Safe to run on a background thread.
        saliency: look for the entry that carries the vision tower's saliency."""
        timings = Timings()
        key = None
        if self.cache is not None:
            start = time.perf_counter()
            check_path(video)  # a missing file is a VideoError, not a cache error
            key = self.cache_key(video, sampling, saliency=saliency)
            entry = self.cache.get(key)
            timings.cache_read = time.perf_counter() - start
            if entry is not None:
                return Prepared(
                    str(video), entry=entry, key=key, timings=timings, sampling=sampling, saliency=saliency
                )
        start = time.perf_counter()
        clip = self.decode(video, sampling)
        timings.decode = time.perf_counter() - start
        return Prepared(str(video), clip=clip, key=key, timings=timings, sampling=sampling, saliency=saliency)

    @torch.inference_mode()
    def encode(self, prepared: Prepared, *, saliency: str | None = None) -> VideoEncoding:
        """Processor + vision tower (nothing on a cache hit); stores fresh features in the cache.
        saliency: the encoding must carry the vision tower's per-token saliency (FastVID): a cache entry
        without it is encoded again (and rewritten with it)."""
        reset_peak(self.device)  # the item's peak starts here: the vision tower is usually its largest
        timings = prepared.timings
        if saliency != prepared.saliency and prepared.key and prepared.sampling is not None:
            # prepared for another saliency mode: its cache entry is another one (entries are immutable)
            if prepared.entry is None:  # decoded: store under this mode's key
                prepared.key = self.cache_key(prepared.video, prepared.sampling, saliency=saliency)
            else:  # read for another mode: look for this mode's entry, else decode
                earlier = timings
                prepared = self.prepare(prepared.video, prepared.sampling, saliency=saliency)
                timings = prepared.timings
                timings.add(earlier)
        start = self.clock.now()
        if prepared.entry is not None:
            encoding = from_entry(
                prepared.video, *prepared.entry, device=self.device, dtype=self.adapter.model.dtype
            )
            timings.cache_read += self.clock.now() - start
        else:
            assert prepared.clip is not None
            visual, layout = self.adapter.encode(prepared.clip, saliency=saliency)
            encoding = VideoEncoding.from_clip(prepared.video, prepared.clip, visual, layout)
            timings.vision = self.clock.now() - start
            self._store(prepared.key, encoding, timings)
        timings.total = sum(getattr(timings, name) for name in VIDEO_PHASES)
        encoding.timings = timings
        encoding.key = prepared.key
        encoding.sampling = prepared.sampling
        return encoding

    @torch.inference_mode()
    def add_saliency(self, encoding: VideoEncoding, mode: str) -> None:
        """Give an encoding made without it the vision tower's saliency (the frames are decoded again when
        they are not at hand); its features stay as they are."""
        frames = encoding.frames
        if frames is None:
            assert encoding.sampling is not None, "an encoding without frames must know its sampling"
            clip = self.decode(encoding.video, encoding.sampling)
        else:
            from vidqa.video import Clip

            clip = Clip(path=encoding.video, frames=frames, times=list(encoding.times),
                        frame_indices=list(encoding.frame_indices), info=encoding.info, decoded_frames=0,
                        skipped_packets=0, warnings=list(encoding.warnings))  # fmt: skip
        visual, _ = self.adapter.encode(clip, saliency=mode)
        encoding.visual.saliency = visual.saliency
        encoding.visual.frame_features = visual.frame_features
        encoding.visual.saliency_mode = visual.saliency_mode

    def _store(self, key: str | None, encoding: VideoEncoding, timings: Timings) -> None:
        """Write fresh features to the cache; a cache that cannot be written is a warning, not a failure."""
        if self.cache is None or key is None:
            return
        start = time.perf_counter()
        try:
            self.cache.put(key, entry_tensors(encoding), entry_meta(encoding))
        except CacheError as exc:
            encoding.warnings.append(f"features not cached: {exc}")
        timings.cache_write = time.perf_counter() - start

    def encode_video(
        self, video: str | Path, sampling: SamplingSettings | None = None, *, saliency: str | None = None
    ) -> VideoEncoding:
        """Decode (or read from the cache) and encode one video: its question-independent half."""
        prepared = self.prepare(video, sampling or SamplingSettings(), saliency=saliency)
        return self.encode(prepared, saliency=saliency)

    def session(
        self,
        video: str | Path | VideoEncoding,
        compression: Compression | None = None,
        *,
        method: str | None = None,
        keep: float | None = None,
        params: dict[str, Any] | None = None,
        tokens: int | None = None,
        sampling: SamplingSettings | None = None,
        generation: GenerationSettings | None = None,
        keep_prefix: bool = True,
    ) -> Session:
        """Questions about one video under one compression setting: a built `compression`, or `method`,
        `keep` and `params` (default: VidCom² at 0.25, as the CLI); `tokens` makes it a token budget. The
        video is decoded and encoded now; the selection and the video prefix on the first question; every
        later question reuses all three
        (`keep_prefix=False` when only one question will be asked and nothing is cached on disk)."""
        if compression is not None and (method is not None or keep is not None or params):
            raise UsageError("give either a built compression or method/keep/params, not both")
        sampling = sampling or SamplingSettings()
        compression = compression or build_compression(method or DEFAULT_METHOD, keep=keep, params=params)
        if tokens is not None:
            compression = compression.with_tokens(tokens)
        encoding = (
            video
            if isinstance(video, VideoEncoding)
            else self.encode_video(video, sampling, saliency=needs_saliency(compression))
        )
        settings = self.settings(sampling, generation or GenerationSettings())
        return Session(self, encoding, compression, settings=settings, keep_prefix=keep_prefix)

    def selection_inputs(self, encoding: VideoEncoding) -> dict[str, Any]:
        """What a method that `needs` more than the features gets: the saliency and the family's variant."""
        visual = encoding.visual
        return {
            "saliency": visual.saliency,
            "frame_features": visual.frame_features,
            "variant": self.adapter.fastvid_variant,
        }

    def validate(self, compression: Compression) -> None:
        """Refuse, before any video is read, a setting this model cannot run (e.g. DyCoke's layer)."""
        compression.impl.validate_model(self.adapter.model, compression.params)

    # -- the public entry points ---------------------------------------------------------------------
    def run(
        self,
        items: list[Item],
        *,
        compression: Compression,
        sampling: SamplingSettings | None = None,
        generation: GenerationSettings | None = None,
        on_text: TextCallbackFactory | None = None,
        prefetch: bool = True,
    ) -> Iterator[Result]:
        """Answer many (video, question) items, one record each, failures included (see vidqa.runner)."""
        from vidqa.runner import run

        sampling = sampling or SamplingSettings()
        return run(
            self, items, sampling=sampling, compression=compression, generation=generation, on_text=on_text,
            prefetch=prefetch,
        )  # fmt: skip

    def ask(
        self,
        video: str | Path,
        question: str,
        *,
        method: str = DEFAULT_METHOD,
        keep: float | None = None,
        params: dict[str, Any] | None = None,
        frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        max_new_tokens: int = 128,
        min_new_tokens: int = 0,
        on_text: TextCallback | None = None,
    ) -> Result:
        """Answer one question about one video (VidCom² at keep 0.25 unless told otherwise, as the CLI).
        Raises VidqaError subclasses on bad input."""
        return next(
            self.ask_many(
                video,
                [question],
                compression=build_compression(method, keep=keep, params=params),
                sampling=SamplingSettings(frames=frames, fps=fps, max_frames=max_frames),
                generation=GenerationSettings(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens),
                on_text=on_text,
            )
        )

    def ask_many(
        self,
        video: str | Path,
        questions: list[str],
        *,
        compression: Compression,
        sampling: SamplingSettings | None = None,
        generation: GenerationSettings | None = None,
        on_text: TextCallback | None = None,
    ) -> Iterator[Result]:
        """Answer several questions about one video; decode, vision and selection run once for all.

        A generator: each Result is yielded as soon as its answer is complete.
        """
        if not questions:
            raise UsageError("no question given")
        generation = generation or GenerationSettings()
        reuse = len(questions) > 1 or self.cache is not None
        session = self.session(
            video, compression, sampling=sampling, generation=generation, keep_prefix=reuse
        )
        for question in questions:
            yield session.ask(question, generation=generation, on_text=on_text)

    def inspect(
        self,
        video: str | Path,
        *,
        method: str = "vidcom2",
        keep: float | None = None,
        params: dict[str, Any] | None = None,
        frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
    ) -> InspectReport:
        """What `method` would keep of this video: sampling, vision tower and selection (no generation)."""
        return self.inspect_setting(
            video,
            build_compression(method, keep=keep, params=params),
            sampling=SamplingSettings(frames=frames, fps=fps, max_frames=max_frames),
        )

    def inspect_setting(
        self, video: str | Path, compression: Compression, *, sampling: SamplingSettings
    ) -> InspectReport:
        """`inspect` for a built setting. Thumbnails come from the decoded frames (decoded again when the
        features came from the cache)."""
        encoding = self.encode_video(video, sampling, saliency=needs_saliency(compression))
        t, m, _ = encoding.visual.shape
        compression = compression.for_video(t, m)
        selection = compression.select(encoding.visual.features, self.selection_inputs(encoding))
        step = max(1, len(encoding.times) // t)  # Qwen: one selection frame per temporal patch of 2 frames
        return InspectReport(
            video=str(video),
            model=self.model_name,
            compression=compression,
            frame_times=[encoding.times[i * step] for i in range(t)],
            tokens_per_frame=m,
            budgets=[int(v) for v in selection.budgets],
            kept_indices=[idx.tolist() for idx in selection.indices],
            scores=compression.impl.frame_scores(selection),
            grid=encoding.visual.grid or (1, m),
            frames=self._frames_for(video, sampling, encoding)[::step][:t],
            warnings=list(encoding.warnings),
        )

    def _frames_for(
        self, video: str | Path, sampling: SamplingSettings, encoding: VideoEncoding
    ) -> np.ndarray:
        return encoding.frames if encoding.frames is not None else self.decode(video, sampling).frames
