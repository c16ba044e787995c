"""The options every command shares, declared once, and the settings objects they build.

Commands take these `Annotated` aliases as keyword parameters (so `ask`, `inspect`, `bench`, … cannot drift
apart), then build one `ModelOptions`, one `CacheOptions` and the typed settings the library takes. Precedence
for compression: flag (`--method`, `--keep`, `-p`) > preset > the method's default. Nothing heavy is imported
here (`vidqa --help` must stay instant).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from vidqa.compress.registry import METHOD_MODULES
from vidqa.models import ALIASES, DEFAULT_MODEL

if TYPE_CHECKING:
    from vidqa.cache import FeatureCache
    from vidqa.compress.registry import Compression
    from vidqa.settings import SamplingSettings

Attn = Literal["auto", "sdpa", "flash_attention_2", "eager"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]

# -- model ----------------------------------------------------------------------------------------------
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        help=f"Alias ({', '.join(list(ALIASES)[:3])}, …: `vidqa models`), hub id or local folder.",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", metavar="DEVICE", help="auto (cuda when available), cpu, cuda, cuda:1, …")
]
DtypeOpt = Annotated[Dtype, typer.Option("--dtype", help="auto: bfloat16 on a GPU, float32 on CPU.")]
AttnOpt = Annotated[
    Attn, typer.Option("--attn", help="auto: flash_attention_2 when installed and usable, else sdpa.")
]
DeviceMapOpt = Annotated[
    str | None,
    typer.Option(
        "--device-map", metavar="MAP", help="'auto' spreads a large model over several GPUs (accelerate)."
    ),
]
RevisionOpt = Annotated[
    str | None, typer.Option("--revision", metavar="REV", help="Model revision (branch, tag or commit).")
]
RemoteCodeOpt = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Allow code from the model repository to run (off by default)."),
]

# -- compression ----------------------------------------------------------------------------------------
MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        metavar="METHOD",
        help=f"{', '.join(METHOD_MODULES)} (`vidqa methods`). [default: from --preset]",
    ),
]
KeepOpt = Annotated[
    float | None,
    typer.Option(
        "--keep",
        metavar="R",
        help="Share of the video's visual tokens that reach the LLM, in (0, 1]; 1 = no compression.",
    ),
]
TokensOpt = Annotated[
    int | None,
    typer.Option(
        "--tokens",
        metavar="N",
        min=1,
        help="Instead of --keep: N visual tokens reach the LLM whatever the frame count (the ratio follows).",
    ),
]
PresetOpt = Annotated[
    str | None,
    typer.Option("--preset", metavar="NAME|FILE", help="`vidqa presets`, or a YAML file. [default: vidcom2]"),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="NAME=VALUE",
        help="A method parameter, e.g. -p layer=4 (repeatable; `vidqa methods` lists them).",
    ),
]

# -- sampling -------------------------------------------------------------------------------------------
FramesOpt = Annotated[
    int | None,
    typer.Option(
        "--frames",
        metavar="N",
        help="Frames sampled uniformly over the video. [default: the model's; 8 on CPU, 32 on a GPU]",
    ),
]
FpsOpt = Annotated[
    float | None, typer.Option("--fps", metavar="F", help="Sample one frame every 1/F seconds instead.")
]
MaxFramesOpt = Annotated[
    int | None,
    typer.Option("--max-frames", metavar="N", help="Cap on the frames sampled (--frames or --fps)."),
]

# -- the feature cache ------------------------------------------------------------------------------------
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", metavar="DIR", help="Feature cache folder. [default: $XDG_CACHE_HOME/vidqa/features]"
    ),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")]
CacheSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--cache-size",
        metavar="SIZE",
        help="Bound of the feature cache, e.g. 5G; 0 = read only. [default: 2G]",
    ),
]
FullHashOpt = Annotated[
    bool,
    typer.Option(
        "--full-hash",
        help="Identify videos in the cache by a hash of their whole content (survives copies; reads it all).",
    ),
]

# -- output -------------------------------------------------------------------------------------------------
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of text.")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", help="No progress, spinners or tables on stderr; errors and warnings stay.")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]

DEFAULT_CACHE_SIZE = 2 * 1024**3


@dataclass(frozen=True)
class ModelOptions:
    """Which model to load, and how."""

    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    attn: str = "auto"
    device_map: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class CacheOptions:
    """Where the feature cache lives, how big it may grow, and how videos are identified."""

    directory: Path | None = None
    disabled: bool = False
    size: str | None = None
    full_hash: bool = False

    def open(self) -> FeatureCache | None:
        if self.disabled:
            return None
        from vidqa.cache import FeatureCache, default_cache_dir, parse_size

        size = parse_size(self.size) if self.size is not None else DEFAULT_CACHE_SIZE
        return FeatureCache(self.directory or default_cache_dir(), max_bytes=size)


def compression_from_flags(
    *, preset: str | None, method: str | None, keep: float | None, params: list[str] | None,
    tokens: int | None = None,
) -> Compression:  # fmt: skip
    """flag > preset > the method's default, validated by the method's parameter class; `--tokens` turns
    the setting into a token budget (instead of a keep ratio)."""
    from vidqa.compress.registry import parse_param_flags
    from vidqa.errors import UsageError
    from vidqa.presets import DEFAULT_PRESET, load_preset

    if tokens is not None and keep is not None:
        raise UsageError("give either --keep or --tokens, not both")
    chosen = load_preset(preset or DEFAULT_PRESET)
    compression = chosen.settings(method=method, keep=keep, params=parse_param_flags(params))
    return compression if tokens is None else compression.with_tokens(tokens)


def split_list(text: str) -> list[str]:
    """A comma-separated option (`--methods`, `--tasks`) as its non-empty items."""
    return [part.strip() for part in text.split(",") if part.strip()]


def settings_grid(
    *, methods: str, keeps: str, params: list[str] | None, presets: list[str] | None
) -> tuple[list[Compression], list[str]]:
    """`--methods` × `--keep` (+ `--preset` settings) for `bench` and `eval`: the settings, `none` first,
    and notes on what a method cannot reach."""
    from vidqa.bench import configurations
    from vidqa.compress.registry import parse_param_flags
    from vidqa.errors import UsageError
    from vidqa.presets import load_preset

    try:
        keep_list = [float(part) for part in split_list(keeps)]
    except ValueError:
        raise UsageError(f"--keep expects comma-separated numbers (got {keeps!r})") from None
    return configurations(
        split_list(methods), keep_list, params=parse_param_flags(params),
        extra=[load_preset(name).settings() for name in presets or []],
    )  # fmt: skip


def sampling_from_flags(*, frames: int | None, fps: float | None, max_frames: int | None) -> SamplingSettings:
    from vidqa.settings import SamplingSettings

    return SamplingSettings(frames=frames, fps=fps, max_frames=max_frames)
