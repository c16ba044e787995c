"""Peak memory of one item: reset at the start of the item, read at its end.

On CUDA it is the allocator's peak on the model's device (`torch.cuda.max_memory_allocated`; with
`--device-map` only the first device is reported). On Linux CPUs it is the process's peak resident set size
since the reset (`VmHWM`, reset by writing 5 to /proc/self/clear_refs). Elsewhere (macOS) the process's peak
RSS cannot be reset: the number is the lifetime peak, in bytes on every platform.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak(device: torch.device) -> None:
    """Start a new peak measurement (the vision tower is usually the item's peak, so call this first)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # not Linux, or not allowed: the lifetime peak is reported
        _CLEAR_REFS.write_text("5")


def peak_bytes(device: torch.device) -> int:
    """Peak memory since the last `reset_peak` (see the module doc for what that means per platform)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    with contextlib.suppress(OSError, AttributeError):
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
        if match:
            return int(match.group(1)) * 1024
    import resource

    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux and BSD
