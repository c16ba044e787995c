"""Load a checkpoint (alias, hub id or local folder) with clear errors, and pick device, dtype, attention.

A hub model is first loaded from the local cache alone (no network: no update check that stalls when
offline). When anything is missing — never downloaded, or a download interrupted part-way — vidqa checks
in a few seconds that the hub answers and then downloads, resuming partial files; an unreachable hub is
one clear error within seconds instead of half a minute of retries. Weights load straight onto the target
device (no host-RAM copy of a 7B model).

Every failure a user can hit — offline and not cached, gated, unknown id, missing folder, unsupported
architecture, flash-attention requested but absent — becomes one `ModelLoadError` that says which and how
to fix it (recognised by the hub's exception types, not by message text). `trust_remote_code` stays off
unless the caller asks for it.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidqa.errors import ModelLoadError, UsageError, is_out_of_memory
from vidqa.models import adapter_class, resolve_model_id

if TYPE_CHECKING:
    import torch

    from vidqa.models.base import VideoAdapter

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


#: Seconds to wait for the hub to answer before saying it cannot be reached.
HUB_PROBE_TIMEOUT = 3.0


def _load_error(name: str, model_id: str, exc: BaseException) -> ModelLoadError:
    """Translate hub/transformers exceptions (looked up along the `__cause__` chain) into one message."""
    from huggingface_hub import errors as hub

    label = f"'{name}'" if name == model_id else f"'{name}' ({model_id})"
    chain = _causes(exc)
    if any(isinstance(e, hub.GatedRepoError) for e in chain):
        return ModelLoadError(
            f"model {label} is gated: accept its licence on the hub, then log in with `hf auth login`"
        )
    if any(isinstance(e, hub.RevisionNotFoundError) for e in chain):
        return ModelLoadError(f"model {label}: no such revision on the hub (check --revision)")
    if any(
        isinstance(e, hub.RepositoryNotFoundError) for e in chain
    ) or "is not a valid model identifier" in str(exc):
        return ModelLoadError(
            f"model {label} not found on the hub (check the spelling, or give a local folder or an alias: "
            f"`vidqa models`)"
        )
    if any(isinstance(e, (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled)) for e in chain):
        return _offline_error(label)
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else type(exc).__name__
    return ModelLoadError(f"cannot load model {label}: {first_line}")


def _offline_error(label: str) -> ModelLoadError:
    return ModelLoadError(
        f"model {label} is not (fully) in the local cache and the hub cannot be reached: connect to the "
        f"internet once to download it, or pass a local folder with --model"
    )


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Does the hub answer within `timeout` seconds? (No retries: this only decides whether to try.)"""
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # DNS, connect, TLS, timeout: all mean "not now"
        return False
    return True


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
    attn_chosen_by_auto: bool = False,
) -> VideoAdapter:
    """Load config → adapter class → processor → model, on `device` in `dtype` with `attn`.

    attn_chosen_by_auto: `attn` is what `--attn auto` picked, so a family that cannot run it (FlashAttention-2
    on Gemma 4) quietly gets sdpa instead of an error.
    """
    model_id = resolve_model_id(name)
    looks_local = name.startswith((".", "/", "~")) or Path(name).expanduser().exists()
    if looks_local and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"model folder '{name}' does not exist")
    source = str(Path(name).expanduser()) if looks_local else model_id
    options: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    attention = {"attn": attn, "auto": attn_chosen_by_auto}
    placement = {"device_map": device_map} if device_map else {"device_map": {"": str(device)}}
    if device.type == "cpu" and not device_map:
        placement = {}  # CPU is where weights are made anyway; no accelerate round trip needed
    label = f"'{name}'" if name == model_id else f"'{name}' ({model_id})"
    try:
        if looks_local:
            return _load(
                source, options, dtype=dtype, attention=attention, placement=placement, show_bars=False
            )
        try:  # everything from the local cache, without touching the network
            local_only = {**options, "local_files_only": True}
            return _load(
                source, local_only, dtype=dtype, attention=attention, placement=placement, show_bars=False
            )
        except OSError:  # something is missing: never downloaded, or a download cut short
            if not hub_reachable():
                raise _offline_error(label) from None
        return _load(source, options, dtype=dtype, attention=attention, placement=placement, show_bars=True)
    except (OSError, ValueError) as exc:
        raise _load_error(name, model_id, exc) from exc
    except Exception as exc:
        if is_out_of_memory(exc):
            raise ModelLoadError(
                f"out of GPU memory while loading {label}: choose a smaller model, --dtype bfloat16, or "
                "--device-map auto to spread it over several GPUs"
            ) from exc
        raise


def _load(
    source: str,
    options: dict[str, Any],
    *,
    dtype: torch.dtype,
    attention: dict[str, Any],
    placement: dict[str, Any],
    show_bars: bool,
) -> VideoAdapter:
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from vidqa.identity import model_identity

    config = AutoConfig.from_pretrained(source, **options)
    adapter_cls = adapter_class(getattr(config, "model_type", "unknown"))
    attn = _attention_for(config, attention["attn"], chosen_by_auto=attention["auto"])
    with _progress_bars(enabled=show_bars):  # download bars are useful; a bar for files on disk is noise
        processor = AutoProcessor.from_pretrained(source, **options)
        model = AutoModelForImageTextToText.from_pretrained(
            source, config=config, dtype=dtype, attn_implementation=attn, **placement, **options
        )
    model.eval()
    return adapter_cls(model, processor, identity=model_identity(source, options.get("revision")))


def _attention_for(config: Any, attn: str, *, chosen_by_auto: bool) -> str:
    """FlashAttention-2 only where the family supports it (Gemma 4 does not: its frame blocks need a mask)."""
    if attn != "flash_attention_2":
        return attn
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    model_class = MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING.get(type(config), None)
    if model_class is None or getattr(model_class, "_supports_flash_attn", True):
        return attn
    if chosen_by_auto:
        return "sdpa"
    raise ModelLoadError(
        f"{config.model_type} models do not support flash_attention_2 in transformers; use --attn sdpa"
    )
