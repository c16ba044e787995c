"""Compression methods: which visual tokens of a video reach the language model.

Every method, `none` included, is one module registered by name (`registry.METHOD_MODULES`) and fulfils the
small contract in `base.Method`. Methods work on one video's visual tokens `(T, M, D)` and know nothing about
files, CLIs or prompts; DyCoke's decode stage is the one model-aware piece (a registered attention function).
Importing this package does not import torch.
"""

from __future__ import annotations

from vidqa.compress.base import Method, MethodParams, Selection
from vidqa.compress.registry import (
    METHOD_MODULES,
    Compression,
    build_compression,
    get_method,
    layered_compression,
    method_names,
    parse_param_flags,
    register_method,
    unregister_method,
)

__all__ = [
    "METHOD_MODULES",
    "Compression",
    "Method",
    "MethodParams",
    "Selection",
    "build_compression",
    "get_method",
    "layered_compression",
    "method_names",
    "parse_param_flags",
    "register_method",
    "unregister_method",
]
