"""Load a checkpoint (alias, hub id or local folder) with clear errors, and pick device, dtype, attention.

Every failure a user can hit — offline and not cached, gated, unknown id, missing folder, unsupported
architecture, flash-attention requested but absent — becomes one `ModelLoadError` that says which and how
to fix it. `trust_remote_code` stays off unless the caller asks for it.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vidqa.errors import ModelLoadError, UsageError
from vidqa.models import adapter_class, resolve_model_id

if TYPE_CHECKING:
    import torch

    from vidqa.models.base import VideoAdapter

AttnChoice = Literal["auto", "sdpa", "flash_attention_2", "eager"]
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_device(device: str) -> torch.device:
    """'auto' → cuda when available, else cpu; anything torch understands otherwise."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"invalid --device '{device}': {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device} requested but no CUDA device is available")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' → bfloat16 on GPUs that support it (else float16), float32 on CPU."""
    import torch

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    name = _DTYPES.get(dtype.lower())
    if name is None:
        raise UsageError(f"invalid --dtype '{dtype}' (choose auto, float32, bfloat16 or float16)")
    return getattr(torch, name)


def flash_attention_usable(device: torch.device, dtype: torch.dtype) -> bool:
    import torch

    return (
        device.type == "cuda"
        and dtype in (torch.float16, torch.bfloat16)
        and importlib.util.find_spec("flash_attn") is not None
    )


def resolve_attn(attn: str, device: torch.device, dtype: torch.dtype) -> str:
    """'auto' → flash_attention_2 only when installed and usable, else sdpa."""
    if attn == "auto":
        return "flash_attention_2" if flash_attention_usable(device, dtype) else "sdpa"
    if attn == "flash_attention_2" and not flash_attention_usable(device, dtype):
        raise UsageError(
            "--attn flash_attention_2 needs a CUDA device, float16/bfloat16 and the flash-attn package "
            "(pip install 'vidqa[flash]'); use --attn sdpa"
        )
    if attn not in ("sdpa", "flash_attention_2", "eager"):
        raise UsageError(f"invalid --attn '{attn}' (choose auto, sdpa, flash_attention_2 or eager)")
    return attn


def _load_error(name: str, model_id: str, exc: BaseException) -> ModelLoadError:
    """Translate hub/transformers exceptions into one actionable message."""
    kind = type(exc).__name__
    text = str(exc)
    label = f"'{name}'" if name == model_id else f"'{name}' ({model_id})"
    if kind == "GatedRepoError" or "gated repo" in text.lower():
        return ModelLoadError(
            f"model {label} is gated: accept its licence on the hub, then log in with `hf auth login`"
        )
    if (
        kind in ("RepositoryNotFoundError", "RevisionNotFoundError")
        or "is not a valid model identifier" in text
    ):
        return ModelLoadError(
            f"model {label} not found on the hub (check the spelling, or give a local folder or an alias: "
            f"`vidqa models`)"
        )
    if (
        kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled")
        or "couldn't connect" in text.lower()
        or ("cached files" in text and "offline" in text.lower())
    ):
        return ModelLoadError(
            f"model {label} is not in the local cache and the hub cannot be reached: connect to the internet "
            f"once to download it, or pass a local folder with --model"
        )
    first_line = text.strip().splitlines()[0] if text.strip() else kind
    return ModelLoadError(f"cannot load model {label}: {first_line}")


@contextlib.contextmanager
def _progress_bars(*, enabled: bool) -> Iterator[None]:
    """Turn transformers' progress bars off for a block (never on: a caller may have disabled them)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if not enabled and was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not enabled and was_enabled:
            hf_logging.enable_progress_bar()


def load_adapter(
    name: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    attn: str,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> VideoAdapter:
    """Load config → adapter class → processor → model, on `device` in `dtype` with `attn`."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    if device_map is not None and importlib.util.find_spec("accelerate") is None:
        raise ModelLoadError("--device-map needs the accelerate package: pip install 'vidqa[multi-gpu]'")
    model_id = resolve_model_id(name)
    looks_local = name.startswith((".", "/", "~")) or Path(name).expanduser().exists()
    if looks_local and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"model folder '{name}' does not exist")
    source = str(Path(name).expanduser()) if looks_local else model_id
    options: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        # Cached files first: a model already downloaded loads without touching the network (no update
        # check that stalls ~20 s in retries when offline); only a cache miss goes to the hub.
        config = AutoConfig.from_pretrained(source, local_files_only=True, **options)
        options["local_files_only"] = True
    except (OSError, ValueError):
        config = None
    try:
        config = config or AutoConfig.from_pretrained(source, **options)
    except (OSError, ValueError) as exc:
        raise _load_error(name, model_id, exc) from exc
    adapter_cls = adapter_class(getattr(config, "model_type", "unknown"))
    local = bool(options.get("local_files_only")) or Path(source).is_dir()
    try:
        # Download bars are useful; a "Loading weights" bar for files already on disk is noise.
        with _progress_bars(enabled=not local):
            processor = AutoProcessor.from_pretrained(source, **options)
            model = AutoModelForImageTextToText.from_pretrained(
                source, config=config, dtype=dtype, attn_implementation=attn, device_map=device_map, **options
            )
    except (OSError, ValueError) as exc:
        raise _load_error(name, model_id, exc) from exc
    if device_map is None:
        model = model.to(device)
    model.eval()
    from vidqa.identity import model_identity

    return adapter_cls(model, processor, identity=model_identity(source, config))
