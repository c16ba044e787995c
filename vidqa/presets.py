"""Presets: named compression settings in YAML (presets/*.yaml, shipped inside the wheel).

A preset file holds `method`, optionally `keep` and `description`, and the method's parameters, e.g.

    method: dycoke
    prune: 0.7
    layer: 3

Precedence: command-line flag > preset value > the method's default. A `--method` other than the preset's
starts from that method's defaults (the preset's values belong to its own method). Files are read with
`yaml.safe_load` only; keys and values are validated once, by the method's parameter class, with messages
that say which file and what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vidqa.compress.registry import Compression, get_method, layered_compression, method_names
from vidqa.errors import PresetError, UsageError

DEFAULT_PRESET = "vidcom2"


@dataclass(frozen=True)
class Preset:
    name: str
    method: str
    keep: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    def settings(
        self, *, method: str | None = None, keep: float | None = None, params: dict[str, Any] | None = None
    ) -> Compression:
        """This preset under command-line flags: a flag beats the preset's value, which beats the default."""
        chosen = method or self.method
        layers: list[tuple[float | None, dict[str, Any], str]] = []
        if chosen == self.method:
            layers.append((self.keep, self.params, f"preset {self.source} keep"))
        layers.append((keep, params or {}, "--keep"))
        return layered_compression(chosen, layers)


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
    if method not in method_names():
        raise PresetError(
            f"preset {source}: 'method' must be one of {', '.join(method_names())} (got {method!r})"
        )
    keep = data.pop("keep", None)
    preset = Preset(
        name=name, method=method, keep=keep, params=data, description=str(description), source=source
    )
    try:
        preset.settings()  # validate types, ranges and unknown keys now, not at first use
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
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PresetError(f"preset file {name_or_file}: cannot read ({exc})") from None
        return _parse(path.stem, str(path), text)
    names = ", ".join(sorted(builtin))
    raise PresetError(f"unknown preset '{name_or_file}' (built-in: {names}; or give a .yaml file)")


def all_presets() -> list[Preset]:
    return [load_preset(name) for name in sorted(builtin_presets())]


def method_defaults(name: str) -> dict[str, Any]:
    """A method's default parameters (what a preset that names only the method runs)."""
    return get_method(name).Params().model_dump()
