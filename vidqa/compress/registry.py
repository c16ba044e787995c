"""The method registry and `Compression`, one validated compression setting (a method and its parameters).

Methods are found by name: the built-in ones in `METHOD_MODULES` (imported on first use, each module exposing
`METHOD`), others registered at run time with `register_method` (plug-ins, tests). Everything that knows a
method's parameters, ranges, `--keep` mapping or identity rule lives in that method's module; this module only
layers values (preset < command line), validates them through the method's `Params`, and turns validation
errors into one-line usage errors.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from vidqa.compress.base import Method, MethodParams, Selection, check_keep
from vidqa.errors import UsageError

if TYPE_CHECKING:
    import torch

    from vidqa.generation import DecodeStage

#: Built-in methods: name → module exposing `METHOD`. Adding a method is one module and one line here.
METHOD_MODULES: dict[str, str] = {
    "none": "vidqa.compress.none",
    "vidcom2": "vidqa.compress.vidcom2",
    "dycoke": "vidqa.compress.dycoke",
    "vcast": "vidqa.compress.vcast",
    "fastvid": "vidqa.compress.fastvid",
}
_REGISTERED: dict[str, Method] = {}
#: What runs when nothing says otherwise, in the CLI (the `vidcom2` preset) and the Python API alike.
DEFAULT_METHOD = "vidcom2"


def method_names() -> list[str]:
    """Every method name, built-in first (no method module is imported)."""
    return [*METHOD_MODULES, *(name for name in _REGISTERED if name not in METHOD_MODULES)]


def get_method(name: str) -> Method:
    """The method called `name`, or a usage error listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    module = METHOD_MODULES.get(name)
    if module is None:
        raise UsageError(f"unknown method '{name}' (choose {', '.join(method_names())})")
    return importlib.import_module(module).METHOD


def register_method(method: Method) -> None:
    """Make `method` available by its name (replacing a run-time registration of the same name)."""
    if method.name in METHOD_MODULES:
        raise ValueError(f"'{method.name}' is a built-in method")
    _REGISTERED[method.name] = method


def unregister_method(name: str) -> None:
    _REGISTERED.pop(name, None)


@dataclass(frozen=True)
class Compression:
    """A validated setting: which method, with which parameters. Hashable (a cache key for selections)."""

    method: str
    params: MethodParams
    tokens: int | None = None  # a token budget (`--tokens N`): the keep ratio follows each video's size

    @property
    def impl(self) -> Method:
        return get_method(self.method)

    @property
    def keep(self) -> float:
        """The share of visual tokens this setting keeps at prefill (nominal for DyCoke)."""
        return round(self.impl.keep_of(self.params), 6)

    @property
    def is_identity(self) -> bool:
        """Nothing is dropped and no decode stage runs: the model's plain generate."""
        return self.impl.is_identity(self.params)

    @property
    def label(self) -> str:
        if self.method == "none":
            return "none"
        return f"{self.method} {self.tokens} tokens" if self.tokens else f"{self.method} {self.keep:g}"

    def with_tokens(self, tokens: int) -> Compression:
        """This setting under a token budget: N visual tokens reach the LLM whatever the frame count."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise UsageError(f"--tokens must be a whole number of at least 1 (got {tokens!r})")
        if self.method == "none":
            raise UsageError("--tokens needs a compression method (none keeps every token)")
        return Compression(self.method, self.params, tokens=tokens)

    def for_video(self, num_frames: int, tokens_per_frame: int) -> Compression:
        """The concrete setting for one video: a token budget becomes the method's own parameters for this
        video's T·M tokens (the method maps it, `Method.params_for_tokens`); anything else is itself."""
        if self.tokens is None:
            return self
        total = num_frames * tokens_per_frame
        impl = self.impl
        try:
            values = {**self.params.model_dump(), **impl.params_for_tokens(self.tokens, total)}
        except UsageError as exc:
            raise UsageError(f"--tokens {self.tokens} of this video's {total} visual tokens: {exc}") from None
        return Compression(self.method, _validated(impl, values).params, tokens=self.tokens)

    def select(self, features: torch.Tensor, inputs: dict[str, Any] | None = None) -> Selection:
        """Which tokens to keep; `inputs` are the extra inputs a method `needs` (the encoding's saliency)."""
        t, m, _ = features.shape
        if self.is_identity:
            return Selection.keep_all(t, m, device=features.device)
        if self.impl.needs:
            return self.impl.select(features, self.params, inputs or {})  # type: ignore[call-arg]
        return self.impl.select(features, self.params)

    def decode_stage(self, model: Any, visual_positions: torch.Tensor) -> DecodeStage | None:
        if self.is_identity:
            return None
        return self.impl.decode_stage(model, visual_positions, self.params)

    def to_dict(self) -> dict[str, Any]:
        """What a record says about compression: method, keep and every parameter (and a token budget; keep
        is then the ratio it came to for the video)."""
        described = {"method": self.method, "keep": self.keep, "params": self.params.model_dump()}
        return {**described, "tokens": self.tokens} if self.tokens is not None else described


def needs_saliency(*compressions: Compression) -> str | None:
    """Which saliency encoding must also record for these settings ("attention", "head"), or None."""
    for compression in compressions:
        if "saliency" in compression.impl.needs and not compression.is_identity:
            return compression.impl.saliency_mode(compression.params)
    return None


def build_compression(
    method: str, *, keep: float | None = None, params: Mapping[str, Any] | None = None
) -> Compression:
    """One layer of settings (e.g. the command line) over the method's defaults."""
    impl = get_method(method)
    return _validated(impl, layer_values(impl, keep, params or {}, where="--keep"))


def layered_compression(
    method: str, layers: list[tuple[float | None, Mapping[str, Any], str]]
) -> Compression:
    """Layers (keep, params, where), lowest precedence first, over the method's defaults."""
    impl = get_method(method)
    values: dict[str, Any] = {}
    for keep, params, where in layers:
        values.update(layer_values(impl, keep, params, where=where))
    return _validated(impl, values)


def layer_values(
    impl: Method, keep: float | None, params: Mapping[str, Any], *, where: str
) -> dict[str, Any]:
    """The parameter values one layer sets: what its keep stands for, plus its explicit parameters."""
    values: dict[str, Any] = {}
    if keep is not None:
        values = impl.params_for_keep(check_keep(keep))
        clash = sorted(set(values) & set(params))
        if clash:
            names = ", ".join(clash)
            raise UsageError(
                f"{where} {keep:g} sets {impl.name}'s {names}; give either keep or the parameter {names}, "
                "not both"
            )
    values.update(params)
    return values


def _validated(impl: Method, values: Mapping[str, Any]) -> Compression:
    try:
        params = impl.Params(**values)
    except ValidationError as exc:
        raise UsageError(_one_line(impl, exc)) from None
    return Compression(method=impl.name, params=params)


def _one_line(impl: Method, exc: ValidationError) -> str:
    """The first problem pydantic found, in vidqa's words."""
    error = exc.errors()[0]
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        known = ", ".join(impl.Params.model_fields) or "none"
        return f"unknown parameter '{name}' for method {impl.name} (known: {known})"
    return f"{impl.name} parameter '{name}': {error['msg'].lower()} (got {error.get('input')!r})"


def parse_param_flags(flags: list[str] | None) -> dict[str, Any]:
    """`-p name=value` flags → {name: value}; values read as YAML scalars (0.5 → float, 3 → int)."""
    import yaml

    values: dict[str, Any] = {}
    for flag in flags or []:
        name, sep, text = flag.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--param expects name=value, e.g. -p layer=4 (got {flag!r})")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        values[name.strip()] = value
    return values
