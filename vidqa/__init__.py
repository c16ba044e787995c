"""vidqa: ask questions about videos with open VideoLLMs, fast, by dropping redundant visual tokens.

`from vidqa import Engine` works, but the import of torch/transformers happens only on first access, so the
CLI's `--help` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidqa._version import __version__

if TYPE_CHECKING:
    from vidqa.engine import Engine

__all__ = ["Engine", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from vidqa.engine import Engine

        return Engine
    raise AttributeError(f"module 'vidqa' has no attribute {name!r}")
