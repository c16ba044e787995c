"""Presets: named compression settings in YAML (presets/*.yaml, shipped inside the wheel).

A preset file holds `method`, optionally `keep`, and the method's parameters, e.g.

    method: dycoke
    keep: null        # null: the method's own default (DyCoke: from `prune`)
    prune: 0.7
    layer: 3

Precedence: command-line flag > preset value > built-in default. Files are read with `yaml.safe_load` only,
and every key and value is validated here, once, with messages that say what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vidqa.errors import PresetError, UsageError
from vidqa.settings import METHOD_PARAMS, METHODS, CompressionSettings

DEFAULT_PRESET = "vidcom2"


@dataclass(frozen=True)
class Preset:
    name: str
    method: str
    keep: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    def settings(self, *, method: str | None = None, keep: float | None = None) -> CompressionSettings:
        """Apply flag overrides: a flag beats the preset's value; a different --method drops its params."""
        chosen = method or self.method
        params = self.params if chosen == self.method else {}
        final_keep = keep if keep is not None else (self.keep if chosen == self.method else None)
        return CompressionSettings.build(method=chosen, keep=final_keep, params=params)


def builtin_presets() -> dict[str, Path]:
    """Name → path of every preset shipped with vidqa."""
    folder = resources.files("vidqa._presets")
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith((".yaml", ".yml"))
    }


def _parse(name: str, source: str, text: str) -> Preset:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise PresetError(f"preset {source}: invalid YAML{where}") from None
    if not isinstance(data, dict):
        raise PresetError(f"preset {source}: expected a mapping of settings, got {type(data).__name__}")
    data = dict(data)
    description = data.pop("description", "")
    method = data.pop("method", None)
    if method not in METHODS:
        raise PresetError(f"preset {source}: 'method' must be one of {', '.join(METHODS)} (got {method!r})")
    keep = data.pop("keep", None)
    if keep is not None and (
        isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1
    ):
        raise PresetError(f"preset {source}: 'keep' must be a number in (0, 1] (got {keep!r})")
    unknown = sorted(set(data) - set(METHOD_PARAMS[method]))
    if unknown:
        allowed = ", ".join(["method", "keep", "description", *METHOD_PARAMS[method]])
        raise PresetError(
            f"preset {source}: unknown key '{unknown[0]}' for method {method} (allowed: {allowed})"
        )
    preset = Preset(
        name=name, method=method, keep=keep, params=data, description=str(description), source=source
    )
    try:
        preset.settings()  # validate types and ranges now, not at first use
    except UsageError as exc:
        raise PresetError(f"preset {source}: {exc}") from None
    return preset


def load_preset(name_or_file: str) -> Preset:
    """A built-in preset by name, or a YAML file by path."""
    builtin = builtin_presets()
    if name_or_file in builtin:
        path = builtin[name_or_file]
        return _parse(name_or_file, name_or_file, path.read_text(encoding="utf-8"))
    path = Path(name_or_file).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise PresetError(f"preset file {name_or_file}: no such file")
        return _parse(path.stem, str(path), path.read_text(encoding="utf-8"))
    names = ", ".join(sorted(builtin))
    raise PresetError(f"unknown preset '{name_or_file}' (built-in: {names}; or give a .yaml file)")


def all_presets() -> list[Preset]:
    return [load_preset(name) for name in sorted(builtin_presets())]
