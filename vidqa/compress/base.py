"""The contract every compression method fulfils: which visual tokens of one video to keep.

A compressor sees one video's visual tokens `(T, M, D)` (T frames or temporal patches, M tokens per frame,
D channels) and returns a `Selection`. It knows nothing about files, CLIs or prompts. A method that also acts
while the answer is decoded (DyCoke stage 2) hands the engine a decode stage, a context manager around
`model.generate`; that one piece is model-aware by nature.

A method is one module holding a `Method` subclass with:
- `name` and a one-line `summary` (for `vidqa methods`);
- `Params`, a frozen, strict parameter model: defaults, ranges and descriptions in one declaration;
- `params_for_keep(keep)`: the parameters `--keep R` (the share of visual tokens that reach the LLM at
  prefill) stands for, and `params_for_tokens(N, total)` those of `--tokens N` (default: keep N / total);
  `keep_of(params)`: the share a setting keeps; `is_identity(params)`: no compression;
- `select(features, params)` → `Selection`;
- optionally `decode_stage(model, visual_positions, params)` and `frame_scores(selection)` for `inspect`.
Registering it is one line in `vidqa.compress.registry.METHOD_MODULES` (or `register_method` at run time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from vidqa.errors import UsageError

if TYPE_CHECKING:  # torch is imported where tensors are made, so the registry stays light for the CLI
    import torch

    from vidqa.generation import DecodeStage


@dataclass(frozen=True)
class Selection:
    """Kept tokens of one video.

    indices: T ascending LongTensors of local token indices kept in each frame (on the features' device).
    budgets: (T,) long, `budgets[t] == len(indices[t])`.
    scores: per-frame (T,) float32 scores the method defines (VidCom²: uniqueness and weight), for inspect.
    anchor, values: a merging method's replacement features for some kept tokens (FastVID's anchors):
    `anchor` flags kept tokens in kept order (frames in time order, ascending inside a frame), `values`
    holds their features in the same order. Positions never change; the adapter writes `values` into
    those tokens' slots. None for pure pruning.
    """

    indices: list[torch.Tensor]
    budgets: torch.Tensor
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    anchor: torch.Tensor | None = (
        None  # merging methods: (kept,) bool, True where `values` replaces the token
    )
    values: torch.Tensor | None = None  # (anchor count, D): the replacement features, in kept-token order

    @property
    def num_frames(self) -> int:
        return len(self.indices)

    @property
    def kept(self) -> int:
        """Total number of kept visual tokens."""
        return int(self.budgets.sum())

    @property
    def uniqueness(self) -> torch.Tensor | None:
        """VidCom²'s per-frame uniqueness u[t] (None for other methods)."""
        return self.scores.get("uniqueness")

    @property
    def weights(self) -> torch.Tensor | None:
        """VidCom²'s per-frame softmax weights sigma[t] (None for other methods)."""
        return self.scores.get("weight")

    def mask(self, tokens_per_frame: int) -> torch.Tensor:
        """(T, M) bool mask, True where a token is kept."""
        import torch

        device = self.budgets.device
        mask = torch.zeros(self.num_frames, tokens_per_frame, dtype=torch.bool, device=device)
        for t, idx in enumerate(self.indices):
            mask[t, idx] = True
        return mask

    @classmethod
    def from_mask(cls, mask: torch.Tensor, scores: dict[str, torch.Tensor] | None = None) -> Selection:
        """Build from a (T, M) bool mask; indices come out ascending by construction."""
        indices = [row.nonzero(as_tuple=True)[0] for row in mask]
        return cls(indices=indices, budgets=mask.sum(dim=1).long(), scores=scores or {})

    @classmethod
    def keep_all(
        cls, num_frames: int, tokens_per_frame: int, device: torch.device | str = "cpu"
    ) -> Selection:
        import torch

        mask = torch.ones(num_frames, tokens_per_frame, dtype=torch.bool, device=device)
        return cls.from_mask(mask)


class MethodParams(BaseModel):
    """A method's parameters: frozen (hashable, usable as a cache key), strict types, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Method:
    """One compression method. Subclasses set the class attributes and implement `select`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[MethodParams]]
    #: extra inputs `select` needs beside the features ("saliency": the vision tower's per-token attention
    #: and the per-frame global feature, which the engine then computes while encoding)
    needs: ClassVar[frozenset[str]] = frozenset()

    def params_for_keep(self, keep: float) -> dict[str, Any]:
        """The parameters `--keep` stands for; raise UsageError for a share the method cannot keep."""
        raise NotImplementedError

    def params_for_tokens(self, tokens: int, total: int) -> dict[str, Any]:
        """The parameters a budget of `tokens` of a video's `total` visual tokens stands for: by default
        the keep ratio tokens / total (1 when the budget covers the whole video)."""
        return self.params_for_keep(min(1.0, tokens / total))

    def keep_of(self, params: MethodParams) -> float:
        """The (nominal) share of visual tokens this setting keeps at prefill."""
        raise NotImplementedError

    def is_identity(self, params: MethodParams) -> bool:
        """True when this setting changes nothing: the model then runs exactly its plain `generate`."""
        raise NotImplementedError

    def select(self, features: torch.Tensor, params: MethodParams) -> Selection:
        """Which of one video's tokens (T, M, D) to keep (a method with `needs` also gets `inputs`)."""
        raise NotImplementedError

    def decode_stage(
        self, model: Any, visual_positions: torch.Tensor, params: MethodParams
    ) -> DecodeStage | None:
        """A context manager active around `model.generate` (a decode-time stage), or None."""
        return None

    def frame_scores(self, selection: Selection) -> dict[str, list[float]]:
        """Per-frame scores `inspect` shows as bars (first one charted); empty when the method has none."""
        return {name: [float(v) for v in values] for name, values in selection.scores.items()}

    def saliency_mode(self, params: MethodParams) -> str | None:
        """For a method that `needs` saliency: which ("attention", or "head" for a family's pretrained
        pooling head where it has one)."""
        return "attention" if "saliency" in self.needs else None

    def validate_model(self, model: Any, params: MethodParams) -> None:
        """Refuse, before any video is read, a setting that cannot work with this model."""


class KeepRatioMethod(Method):
    """A method whose `keep` parameter is its retention ratio R (VidCom², V-CAST, FastVID): `--keep R` sets
    it, and R = 1 is no compression (the method is not run: vidqa's keep 1 is the model's plain generate)."""

    def params_for_keep(self, keep: float) -> dict[str, Any]:
        return {"keep": keep}

    def keep_of(self, params: MethodParams) -> float:
        return float(params.keep)  # type: ignore[attr-defined]

    def is_identity(self, params: MethodParams) -> bool:
        return params.keep == 1.0  # type: ignore[attr-defined]


def check_features(features: object, method: str) -> None:
    """One video's visual tokens must be a non-empty floating-point (T, M, D) tensor (else a usage error
    naming the method)."""
    import torch

    if (
        not isinstance(features, torch.Tensor)
        or features.dim() != 3
        or min(features.shape) < 1
        or not features.is_floating_point()
    ):
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise UsageError(f"{method} needs non-empty floating-point visual tokens (T, M, D), got {got}")


def check_keep(keep: object) -> float:
    """`--keep` is a number in (0, 1]; the one check every method and every entry point shares."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < float(keep) <= 1.0:
        raise UsageError(f"--keep must be a number in (0, 1] (got {keep!r})")
    return float(keep)
