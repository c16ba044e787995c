"""One error hierarchy for vidqa; the CLI translates it to one-line messages and exit codes.

Library code raises these (never prints, never exits). `exit_code` follows design.md: 1 when an item
failed, 2 for usage errors (bad flag, bad preset, unknown model).
"""

from __future__ import annotations

import sys
from pathlib import Path


class VidqaError(Exception):
    """Base class: an expected failure with a message fit for a user."""

    exit_code: int = 1


class UsageError(VidqaError):
    """The user asked for something invalid (bad option value, bad combination)."""

    exit_code = 2


class PromptTooLongError(UsageError):
    """The prompt (after dropping) and the answer do not fit in the model's context."""


class PresetError(UsageError):
    """A preset name or file that cannot be used."""


class ModelLoadError(VidqaError):
    """A model or processor that cannot be loaded (offline, gated, unknown id, unsupported)."""

    exit_code = 2


class UnsupportedModelError(ModelLoadError):
    """A checkpoint whose architecture vidqa has no adapter for."""


class VideoError(VidqaError):
    """A video file that cannot be read; the message names the file and the cause."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class CacheError(VidqaError):
    """The feature cache cannot be used (e.g. the directory is not writable)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error (checked without importing torch when nothing imported it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def describe_error(exc: BaseException) -> str:
    """One line for a record's `error` field and the CLI's message."""
    if isinstance(exc, VidqaError):
        return str(exc)
    if is_out_of_memory(exc):
        return "out of GPU memory: use fewer --frames, a smaller --keep, or a smaller model"
    return f"{type(exc).__name__}: {exc}"
