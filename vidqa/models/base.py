"""The adapter contract: how vidqa talks to one VideoLLM family without patching its `forward`.

An adapter does three things, each a named phase of the pipeline:

1. `encode`   decoded clip → the video's visual tokens `(T, M, D)` (processor over the pixels, vision tower,
              projector) plus its `VideoLayout`: how the processor expands the template's video placeholder
              into tokens (per-frame placeholders, timestamps, separators) and the tensors positions need.
              Both are question-independent: computed once per video, and what the feature cache stores.
2. `prompt`   question + layout → token ids of the whole prompt. Only the question is tokenised: the
              placeholder is replaced by the stored expansion at the text level and the text tokenised the way
              the processor does (checked once per encode), so the result is exactly the processor's, with no
              pixel work.
3. `assemble` prompt + visual tokens + a keep mask `(T, M)` → `inputs_embeds`, attention mask and position
              ids for `model.generate`, with positions computed on the full sequence first.

An adapter never decides what to keep; a compressor never sees a model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from vidqa.errors import UsageError, VidqaError

if TYPE_CHECKING:
    from transformers import BatchFeature, PreTrainedModel, ProcessorMixin

    from vidqa.video import Clip

#: How many tokenised prompt starts (template text before the video + one video's expansion) an adapter keeps.
_PROMPT_HEADS_KEPT = 16
#: The question the video is expanded with at encode time; any question gives the same video expansion.
PROBE_QUESTION = "What happens in this video?"
Prompt = dict[str, torch.Tensor]  # input_ids (1, L), attention_mask (1, L), + what positions need


#: turns a vision-tower run's recordings into (saliency (T, M), frame features (T, Dg) or None)
SaliencyFinish = Callable[["VisualTokens", "BatchFeature"], "tuple[torch.Tensor, torch.Tensor | None]"]


@dataclass
class VisualTokens:
    """One video's visual tokens as the LLM sees them, before any dropping.

    features: (T, M, D) in the model dtype, on the model device.
    per_token: tensors that must be dropped with the same mask, each shaped (..., T, M, D')
               (Qwen3-VL deepstack levels: (levels, T, M, D)).
    grid: (rows, cols) of a frame's M tokens in raster order.
    """

    features: torch.Tensor
    per_token: dict[str, torch.Tensor] = field(default_factory=dict)
    grid: tuple[int, int] | None = None
    saliency: torch.Tensor | None = None  # (T, M) float32, when a method needs it (models/saliency.py)
    frame_features: torch.Tensor | None = None  # (T, Dg): a per-frame global feature (the SigLIP head's)
    saliency_mode: str | None = None  # which saliency was asked for: "attention" or "head"

    @property
    def shape(self) -> tuple[int, int, int]:
        t, m, d = self.features.shape
        return t, m, d


@dataclass
class VideoLayout:
    """How one video sits in a prompt, whatever the question.

    placeholder: the string the chat template writes for the video (e.g. "<video>", "<|video_pad|>");
    replacement: what the processor expands it to for this clip (every per-token placeholder, timestamps,
                 frame separators);
    add_special_tokens: how the processor's tokenizer call treats special tokens (found at encode time);
    token_types: whether the processor returns `mm_token_type_ids` (0 text, 1 image, 2 video);
    position_inputs: processor outputs the positions are computed from (Qwen: video_grid_thw, …), CPU.
    """

    placeholder: str
    replacement: str
    add_special_tokens: bool
    token_types: bool
    position_inputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def to_meta(self) -> dict[str, Any]:
        return {
            "placeholder": self.placeholder,
            "replacement": self.replacement,
            "add_special_tokens": self.add_special_tokens,
            "token_types": self.token_types,
            "position_inputs": sorted(self.position_inputs),
        }


#: Installs one forward pre-hook for a prefill that covers the first `length` tokens; returns its handle.
HookInstaller = Callable[[int], Any]


@dataclass
class GenerateInputs:
    """What the LLM receives for one prompt, plus where the visual tokens sit in it.

    Either `inputs_embeds` (1, L', D) with the kept visual features already in place (most families), or
    `input_ids` (1, L') with the kept features handed over in `visual_inputs` (Gemma 4, whose generate takes
    no embeddings). attention_mask: (1, L'); position_ids: (1, L') or (3, 1, L') or None (contiguous
    positions, derived by the model). token_ids: (1, L') the kept token ids, whatever the model is fed (what
    a cached prefix is checked against). visual_positions: (V',) indices into L' of the kept visual tokens,
    ascending (DyCoke's decode stage restricts attention among exactly these). sequence_inputs: further
    keyword arguments shaped (1, L'), cut like the sequence (Gemma 4's `mm_token_type_ids`). visual_inputs:
    keyword arguments only a forward that reads the visual tokens needs (Gemma 4's `mm_encoder_outputs`).
    prefill_hooks: installers of hooks the forward that reads the visual tokens needs (Qwen3-VL deepstack).
    """

    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None
    visual_positions: torch.Tensor
    token_ids: torch.Tensor
    inputs_embeds: torch.Tensor | None = None
    input_ids: torch.Tensor | None = None
    sequence_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    visual_inputs: dict[str, Any] = field(default_factory=dict)
    prefill_hooks: list[HookInstaller] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.attention_mask.shape[1])

    @property
    def echoes_prompt(self) -> bool:
        """generate returns the prompt before the answer when given input_ids (not for embeddings alone)."""
        return self.input_ids is not None

    def generate_kwargs(self, *, cached: int = 0) -> dict[str, Any]:
        """The whole prompt for `generate`. With `cached` > 0 tokens already in the cache it is still the
        whole prompt (generate feeds only the uncached part and keeps the full mask), but without what only
        the visual tokens need: they are all in the cached part."""
        kwargs: dict[str, Any] = {"attention_mask": self.attention_mask, **self.sequence_inputs}
        if not cached:
            kwargs.update(self.visual_inputs)
        if self.inputs_embeds is not None:
            kwargs["inputs_embeds"] = self.inputs_embeds
        if self.input_ids is not None:
            kwargs["input_ids"] = self.input_ids
        if self.position_ids is not None:
            kwargs["position_ids"] = self.position_ids
        return kwargs

    def prefix_kwargs(self, length: int) -> dict[str, Any]:
        """A forward over the first `length` tokens (they hold every visual token): the video prefix."""
        last_visual = int(self.visual_positions[-1]) if self.visual_positions.numel() else -1
        if length <= last_visual:
            raise AdapterError(f"a prefix of {length} tokens does not hold every visual token")
        kwargs: dict[str, Any] = {"attention_mask": self.attention_mask[:, :length], **self.visual_inputs}
        kwargs.update({name: value[:, :length] for name, value in self.sequence_inputs.items()})
        if self.inputs_embeds is not None:
            kwargs["inputs_embeds"] = self.inputs_embeds[:, :length]
        if self.input_ids is not None:
            kwargs["input_ids"] = self.input_ids[:, :length]
        if self.position_ids is not None:
            kwargs["position_ids"] = self.position_ids[..., :length]
        return kwargs

    @contextlib.contextmanager
    def hooks_installed(self, length: int | None = None) -> Iterator[None]:
        """Install the prefill hooks for a forward over the first `length` tokens (default: all); always
        removed afterwards."""
        handles = [install(self.length if length is None else length) for install in self.prefill_hooks]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class AdapterError(VidqaError):
    """The model's inputs do not match what the adapter expects (a bug or an unsupported checkpoint)."""


class VideoAdapter:
    """Base class for one model family: subclasses implement `visual_tokens` and `assemble`."""

    #: sampled frame counts must be a multiple of this (Qwen merges 2 frames per temporal patch)
    frame_multiple: ClassVar[int] = 1
    #: processor outputs the positions are computed from, kept with the features
    position_input_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, *, identity: str = "") -> None:
        self.model = model
        self.processor = processor
        self.identity = identity  # what was loaded, exactly (vidqa.identity.model_identity)
        # the tokenised start of a prompt, up to the end of the video, per (template text before the video,
        # video expansion): see `prompt`
        self._prompt_heads: dict[tuple[str, str], _PromptHead] = {}

    # -- configuration the engine asks for -------------------------------------------------------------
    def default_frames(self, device: torch.device) -> int:
        """Frames sampled when the user gives neither --frames nor --fps (vidqa.models.DEFAULT_FRAMES)."""
        from vidqa.models import DEFAULT_FRAMES

        cpu, gpu = DEFAULT_FRAMES.get(self.model.config.model_type, (8, 32))
        return gpu if device.type == "cuda" else cpu

    def decode_side(self) -> int | None:
        """Longest frame side worth decoding (frames are shrunk before RGB conversion); None = full size."""
        return None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def video_token_id(self) -> int:
        """The placeholder token that receives visual features (families that take frames as images use the
        image token)."""
        config = self.model.config
        token_id = getattr(config, "video_token_id", None)
        if token_id is None:
            token_id = config.video_token_index
        return int(token_id)

    # -- phase 1: encode (question-independent) ---------------------------------------------------------
    def chat_text(self, question: str, history: Sequence[Turn] = (), system: str | None = None) -> str:
        """The chat-templated prompt for one video and a question, after an optional system message and the
        earlier turns of a conversation (the video sits in the first user turn), ready for generation."""
        first = history[0].question if history else question
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        messages.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": first}]})
        for index, turn in enumerate(history):
            messages.append({"role": "assistant", "content": [{"type": "text", "text": turn.answer}]})
            following = history[index + 1].question if index + 1 < len(history) else question
            messages.append({"role": "user", "content": [{"type": "text", "text": following}]})
        # Qwen3.5-style templates otherwise open a reasoning block before the answer, which multiplies the
        # answer's length: ask them not to (only templates that read the variable get it).
        template_kwargs = (
            {"enable_thinking": False} if "enable_thinking" in str(self.processor.chat_template) else {}
        )
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, **template_kwargs
        )

    def encode(self, clip: Clip, *, saliency: str | None = None) -> tuple[VisualTokens, VideoLayout]:
        """Processor over the pixels and vision tower: the video's tokens and its place in any prompt.
        saliency: also the per-token saliency ("attention": of the vision tower's last block, or the
        fallback; "head": a family's pretrained pooling head where it has one, else as "attention")."""
        text = self.chat_text(PROBE_QUESTION)
        batch = self._process(text, clip)
        layout = self._layout(text, batch)
        if saliency is None:
            return self.visual_tokens(batch), layout
        with self.recording(saliency) as finish:
            visual = self.visual_tokens(batch)
        visual.saliency, visual.frame_features = finish(visual, batch)
        visual.saliency_mode = saliency
        return visual, layout

    @contextlib.contextmanager
    def recording(self, mode: str) -> Iterator[SaliencyFinish]:
        """Around the vision tower: yields what turns its recordings into (saliency, frame features)."""
        from vidqa.models.saliency import feature_saliency, recorded_attention

        module = self.saliency_module()
        if module is None:
            yield lambda visual, _batch: (feature_saliency(visual.features), None)
            return
        with recorded_attention(module) as records:
            yield lambda visual, batch: (self.saliency_from(records, visual, batch), None)

    #: FastVID's rules for this family (the reference's `ov` for LLaVA-OneVision, `qwen` otherwise)
    fastvid_variant = "qwen"

    def saliency_module(self) -> torch.nn.Module | None:
        """The vision tower's last attention block, for families with a saliency rule (else None: the
        fallback from the visual tokens is used)."""
        return None

    def saliency_from(
        self, records: list[tuple[torch.Tensor, torch.Tensor]], visual: VisualTokens, batch: BatchFeature
    ) -> torch.Tensor:
        """(T, M) saliency from the last block's recorded queries and keys."""
        raise NotImplementedError

    def visual_tokens(self, batch: BatchFeature) -> VisualTokens:
        """Vision tower + projector on the processor's pixel outputs → (T, M, D)."""
        raise NotImplementedError

    def processor_kwargs(self) -> dict[str, Any]:
        """Video-processor settings vidqa chooses for this family on top of the checkpoint's own."""
        return {}

    def _process(self, text: str, clip: Clip) -> BatchFeature:
        from transformers.video_utils import VideoMetadata

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
            return_text_replacement_offsets=True,
            return_tensors="pt",
            **self.processor_kwargs(),
        )

    def _layout(self, text: str, batch: BatchFeature) -> VideoLayout:
        """Read the expansion off the processor's output, and find how it tokenises the expanded text."""
        videos = [o for o in batch["text_replacement_offsets"][0] if o["type"] == "video"]
        if len(videos) != 1:
            raise AdapterError(f"expected one expanded video in the prompt, the processor made {len(videos)}")
        placeholder, replacement = videos[0]["text"], videos[0]["replacement"]
        expected = batch["input_ids"]
        expanded = text.replace(placeholder, replacement, 1)
        for add_special in (True, False):
            ids = self.processor.tokenizer(expanded, add_special_tokens=add_special, return_tensors="pt")
            if torch.equal(ids["input_ids"], expected):
                return VideoLayout(
                    placeholder=placeholder,
                    replacement=replacement,
                    add_special_tokens=add_special,
                    token_types="mm_token_type_ids" in batch,
                    position_inputs={
                        name: batch[name].cpu() for name in self.position_input_names if name in batch
                    },
                )
        raise AdapterError("cannot reproduce the processor's tokenisation of the video prompt")

    # -- phase 2: prompt (the question only) ------------------------------------------------------------
    def prompt(
        self, question: str, layout: VideoLayout, history: Sequence[Turn] = (), *, system: str | None = None
    ) -> Prompt:
        """Token ids of the prompt for `question` about the video laid out by `layout` (after `history`).

        The text up to the end of the video's expansion is the same for every question, so its ids are
        tokenised once and only the text after it is tokenised per question — after checking, once per
        template text and layout, that tokenising the two parts apart gives exactly the ids of the whole
        (it does when the expansion ends with a special token, as in every supported family; where it does
        not, the whole prompt is tokenised each time).
        """
        text = self.chat_text(question, history, system)
        if text.count(layout.placeholder) != 1:
            raise UsageError(
                f"a question or answer must not contain the model's video placeholder {layout.placeholder}"
            )
        before, after = text.split(layout.placeholder)
        head = self._prompt_heads.get((before, layout.replacement))
        if head is None:
            ids = self._tokenize(before + layout.replacement + after, layout.add_special_tokens)
            head_ids = self._tokenize(before + layout.replacement, layout.add_special_tokens)
            tail_ids = self._tokenize(after, False)
            split = torch.equal(torch.cat([head_ids, tail_ids]), ids)
            head = _PromptHead(head_ids, self._token_types(head_ids) if layout.token_types else None, split)
            if len(self._prompt_heads) >= _PROMPT_HEADS_KEPT:  # a few videos' worth; drop the oldest
                self._prompt_heads.pop(next(iter(self._prompt_heads)))
            self._prompt_heads[(before, layout.replacement)] = head
            if not split:
                return self._prompt_from(ids, layout)
        if not head.split:
            ids = self._tokenize(before + layout.replacement + after, layout.add_special_tokens)
            return self._prompt_from(ids, layout)
        tail_ids = self._tokenize(after, False)
        types = None
        if head.token_types is not None:
            types = torch.cat([head.token_types, self._token_types(tail_ids)])
        return self._prompt_from(torch.cat([head.ids, tail_ids]), layout, types)

    def _tokenize(self, text: str, add_special_tokens: bool) -> torch.Tensor:
        """(n,) ids of `text`, as the processor's tokenizer call makes them."""
        ids = self.processor.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def _token_types(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.processor.create_mm_token_type_ids([ids.tolist()])[0], dtype=torch.long)

    def _prompt_from(
        self, ids: torch.Tensor, layout: VideoLayout, types: torch.Tensor | None = None
    ) -> Prompt:
        prompt: Prompt = {"input_ids": ids[None], "attention_mask": torch.ones_like(ids)[None]}
        if layout.token_types:
            prompt["mm_token_type_ids"] = (types if types is not None else self._token_types(ids))[None]
        prompt.update(layout.position_inputs)
        return prompt

    # -- phase 3: assemble ------------------------------------------------------------------------------
    def assemble(self, prompt: Prompt, visual: VisualTokens, keep: torch.Tensor | None) -> GenerateInputs:
        raise NotImplementedError

    # -- shared helpers -----------------------------------------------------------------------------------
    def _kept_sequence(self, input_ids: torch.Tensor, visual_keep: torch.Tensor) -> KeptSequence:
        """Which prompt tokens survive: every non-video token and the kept video placeholders.

        input_ids: (1, L); visual_keep: (N,) bool, one per video placeholder in order. Checks the counts
        match: a template or processor that expands the placeholder differently must fail loudly, never
        shift tokens.
        """
        video_mask = input_ids == self.video_token_id  # (1, L)
        placeholders = int(video_mask.sum())
        if placeholders != visual_keep.shape[0]:
            raise AdapterError(
                f"the prompt has {placeholders} video placeholder tokens but the vision tower produced "
                f"{visual_keep.shape[0]} visual tokens"
            )
        seq_keep = torch.ones_like(video_mask[0])
        seq_keep[video_mask[0]] = visual_keep.to(input_ids.device)  # (L,)
        return KeptSequence(
            seq_keep=seq_keep, kept_video_mask=video_mask[:, seq_keep], token_ids=input_ids[:, seq_keep]
        )

    def _merge_kept(
        self, input_ids: torch.Tensor, video_embeds: torch.Tensor, visual_keep: torch.Tensor
    ) -> KeptSequence:
        """The kept sequence with its embeddings, the kept visual tokens in their placeholders.

        video_embeds: (N, D), one per video placeholder, in order. Drops first, then embeds and fills only
        what is kept (what `forward` does, on fewer tokens).
        """
        kept = self._kept_sequence(input_ids, visual_keep)
        embeds = self.model.get_input_embeddings()(input_ids[:, kept.seq_keep])  # (1, L', D)
        kept_embeds = video_embeds[visual_keep.to(video_embeds.device)].to(embeds.device, embeds.dtype)
        embeds[kept.kept_video_mask] = kept_embeds
        kept.embeds = embeds
        return kept

    def _assemble_1d(
        self, prompt: Prompt, video_embeds: torch.Tensor, visual_keep: torch.Tensor
    ) -> GenerateInputs:
        """1-D positions: the kept sequence is re-indexed 0..L'-1, as the reference code runs LLaVA-OV."""
        kept = self._merge_kept(prompt["input_ids"].to(self.device), video_embeds, visual_keep)
        return GenerateInputs(
            inputs_embeds=kept.embeds,
            attention_mask=prompt["attention_mask"].to(self.device)[:, kept.seq_keep],
            position_ids=None,  # contiguous, derived by generate from the attention mask
            visual_positions=kept.kept_video_mask[0].nonzero(as_tuple=True)[0],
            token_ids=kept.token_ids,
        )


@dataclass
class KeptSequence:
    """The prompt after dropping: the keep mask over the original sequence (L,), where the kept video
    placeholders sit in the new one (1, L'), its token ids (1, L') and (once merged) embeddings (1, L', D)."""

    seq_keep: torch.Tensor
    kept_video_mask: torch.Tensor
    token_ids: torch.Tensor
    embeds: torch.Tensor | None = None


@dataclass(frozen=True)
class _PromptHead:
    """A prompt's ids up to the end of the video (and their modality types), and whether tokenising the
    rest apart was checked to give exactly the ids of the whole."""

    ids: torch.Tensor
    token_types: torch.Tensor | None
    split: bool


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation about a video: what was asked and what the model answered."""

    question: str
    answer: str


def token_keep_mask(keep: torch.Tensor | None, count: int, device: torch.device) -> torch.Tensor:
    """Flat (T·M,) bool keep mask; None (keep everything) becomes all True."""
    if keep is None:
        return torch.ones(count, dtype=torch.bool, device=device)
    return keep.flatten().to(device)
