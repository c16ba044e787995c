"""The adapter contract: how vidqa talks to one VideoLLM family without patching its `forward`.

An adapter does three things, each a named phase of the pipeline:

1. `prompt`   question + decoded clip → processor outputs (token ids with the video placeholders expanded,
              pixel values, grids) — the transformers processor does the work;
2. `encode`   processor outputs → the video's visual tokens `(T, M, D)` plus whatever else the LLM needs
              per visual token (Qwen3-VL deepstack features);
3. `assemble` processor outputs + visual tokens + a keep mask `(T, M)` → `inputs_embeds`, attention mask and
              position ids for `model.generate`, with positions computed on the full sequence first.

An adapter never decides what to keep; a compressor never sees a model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from vidqa.errors import VidqaError

if TYPE_CHECKING:
    from transformers import BatchFeature, PreTrainedModel, ProcessorMixin

    from vidqa.video import Clip


@dataclass
class VisualTokens:
    """One video's visual tokens as the LLM sees them, before any dropping.

    features: (T, M, D) in the model dtype, on the model device.
    extras: per-token tensors that must be dropped with the same mask, each shaped (..., T, M, D')
            (Qwen3-VL deepstack levels: (levels, T, M, D)).
    """

    features: torch.Tensor
    per_token: dict[str, torch.Tensor] = field(default_factory=dict)
    grid: tuple[int, int] | None = None  # (rows, cols) of a frame's M tokens in raster order

    @property
    def shape(self) -> tuple[int, int, int]:
        t, m, d = self.features.shape
        return t, m, d


@dataclass
class GenerateInputs:
    """What `model.generate` receives, plus where the visual tokens sit in it.

    inputs_embeds: (1, L', D); attention_mask: (1, L'); position_ids: (1, L') or (3, 1, L') or None
    (None = contiguous positions, generate derives them). visual_positions: (V',) indices into L' of the
    kept visual tokens, ascending (DyCoke's decode stage restricts attention among exactly these).
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None
    visual_positions: torch.Tensor
    prefill_hooks: list[Any] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.inputs_embeds.shape[1])

    def generate_kwargs(self) -> dict[str, torch.Tensor]:
        kwargs = {"inputs_embeds": self.inputs_embeds, "attention_mask": self.attention_mask}
        if self.position_ids is not None:
            kwargs["position_ids"] = self.position_ids
        return kwargs

    @contextlib.contextmanager
    def hooks_installed(self) -> Iterator[None]:
        """Install the prefill hooks (e.g. deepstack injection) for one generate call; always removed."""
        handles = [install() for install in self.prefill_hooks]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class AdapterError(VidqaError):
    """The model's inputs do not match what the adapter expects (a bug or an unsupported checkpoint)."""


class VideoAdapter:
    """Base class for one model family. Subclasses set `model_types` and implement the three phases."""

    model_types: ClassVar[tuple[str, ...]] = ()
    #: sampled frame counts must be a multiple of this (Qwen merges 2 frames per temporal patch)
    frame_multiple: ClassVar[int] = 1

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, *, identity: str = "") -> None:
        self.model = model
        self.processor = processor
        self.identity = identity  # what was loaded, exactly (vidqa.identity.model_identity)

    # -- configuration the engine asks for -------------------------------------------------------------
    def default_frames(self, device: torch.device) -> int:
        """Frames sampled when the user gives neither --frames nor --fps."""
        return 32 if device.type == "cuda" else 8

    def decode_side(self) -> int | None:
        """Longest frame side worth decoding (frames are shrunk before RGB conversion); None = full size."""
        return None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def video_token_id(self) -> int:
        config = self.model.config
        token_id = getattr(config, "video_token_id", None)
        if token_id is None:
            token_id = config.video_token_index
        return int(token_id)

    # -- phase 1: prompt --------------------------------------------------------------------------------
    def prompt(self, question: str, clip: Clip) -> BatchFeature:
        """Chat-template the question with one video and run the processor on the sampled frames."""
        from transformers.video_utils import VideoMetadata

        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        info = clip.info
        fps = info.fps or (len(clip.times) / info.duration if info.duration else 1.0)
        total = info.num_frames or max(clip.frame_indices[-1] + 1, round(info.duration * fps))
        metadata = VideoMetadata(
            total_num_frames=total,
            fps=fps,
            width=int(clip.frames.shape[2]),
            height=int(clip.frames.shape[1]),
            duration=info.duration,
            video_backend="pyav",
            frames_indices=list(clip.frame_indices),
        )
        return self.processor(
            text=[text],
            videos=[clip.frames],
            video_metadata=[metadata],
            do_sample_frames=False,
            return_tensors="pt",
        )

    # -- phase 2: encode --------------------------------------------------------------------------------
    def encode(self, batch: BatchFeature) -> VisualTokens:
        raise NotImplementedError

    # -- phase 3: assemble ------------------------------------------------------------------------------
    def assemble(
        self, batch: BatchFeature, visual: VisualTokens, keep: torch.Tensor | None
    ) -> GenerateInputs:
        raise NotImplementedError

    # -- shared helpers -----------------------------------------------------------------------------------
    def _merge_kept(
        self, input_ids: torch.Tensor, video_embeds: torch.Tensor, visual_keep: torch.Tensor
    ) -> KeptSequence:
        """The kept sequence's embeddings with the kept visual tokens in their placeholders.

        input_ids: (1, L); video_embeds: (N, D), one per video placeholder, in order; visual_keep: (N,) bool.
        Drops first, then embeds and fills only what is kept (what `forward` does, on fewer tokens). Checks
        the counts match: a template or processor that expands the placeholder differently must fail
        loudly, never shift tokens silently.
        """
        video_mask = input_ids == self.video_token_id  # (1, L)
        placeholders = int(video_mask.sum())
        if placeholders != video_embeds.shape[0]:
            raise AdapterError(
                f"the prompt has {placeholders} video placeholder tokens but the vision tower produced "
                f"{video_embeds.shape[0]} visual tokens"
            )
        visual_keep = visual_keep.to(input_ids.device)
        seq_keep = torch.ones_like(video_mask[0])
        seq_keep[video_mask[0]] = visual_keep  # (L,): every non-video token, the kept video ones
        kept_video_mask = video_mask[:, seq_keep]  # (1, L')
        embeds = self.model.get_input_embeddings()(input_ids[:, seq_keep])  # (1, L', D)
        kept_embeds = video_embeds[visual_keep.to(video_embeds.device)].to(embeds.device, embeds.dtype)
        embeds[kept_video_mask] = kept_embeds
        return KeptSequence(embeds=embeds, seq_keep=seq_keep, kept_video_mask=kept_video_mask)


@dataclass
class KeptSequence:
    """The prompt after dropping: embeddings (1, L', D), the keep mask over the original sequence (L,), and
    where the kept video placeholders sit in the new one (1, L')."""

    embeds: torch.Tensor
    seq_keep: torch.Tensor
    kept_video_mask: torch.Tensor


def token_keep_mask(keep: torch.Tensor | None, count: int, device: torch.device) -> torch.Tensor:
    """Flat (T·M,) bool keep mask; None (keep everything) becomes all True."""
    if keep is None:
        return torch.ones(count, dtype=torch.bool, device=device)
    return keep.flatten().to(device)
