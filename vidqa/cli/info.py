"""Listings and housekeeping: `vidqa methods`, `presets`, `models`, `cache info|clear`."""

from __future__ import annotations

from typing import Any

import typer

from vidqa.cli.common import app, fail
from vidqa.cli.options import CacheDirOpt, CacheSizeOpt, DebugOpt, JsonOpt
from vidqa.cli.output import Reporter


@app.command()
def methods(json_output: JsonOpt = False) -> None:
    """List the compression methods and their parameters (set them with -p NAME=VALUE)."""
    from vidqa.compress.registry import get_method, method_names

    listing = []
    for name in method_names():
        impl = get_method(name)
        listing.append({"name": name, "summary": impl.summary, "params": _describe_params(impl.Params)})
    reporter = Reporter()
    if json_output:
        reporter.data(listing)
        return
    for entry in listing:
        typer.echo(f"{entry['name']:<9} {entry['summary']}")
        for param in entry["params"]:
            bounds = f" {param['range']}" if param["range"] else ""
            typer.echo(
                f"  -p {param['name']}={param['default']!r:<6} {param['type']}{bounds}  {param['help']}"
            )


def _describe_params(params_class: Any) -> list[dict[str, Any]]:
    """Name, type, default, range and description of each parameter, read off the parameter class."""
    described = []
    for name, info in params_class.model_fields.items():
        bounds = {
            key: getattr(m, key) for m in info.metadata for key in ("ge", "gt", "le", "lt") if hasattr(m, key)
        }
        low = f"[{bounds['ge']}" if "ge" in bounds else f"({bounds['gt']}" if "gt" in bounds else None
        high = f"{bounds['le']}]" if "le" in bounds else f"{bounds['lt']})" if "lt" in bounds else None
        described.append(
            {
                "name": name,
                "type": getattr(info.annotation, "__name__", str(info.annotation)),
                "default": info.default,
                "range": f"{low or '(-inf'}, {high or 'inf)'}" if low or high else "",
                "help": info.description or "",
            }
        )
    return described


@app.command()
def presets(json_output: JsonOpt = False) -> None:
    """List the built-in presets with the settings they stand for."""
    from vidqa.presets import all_presets

    rows = []
    for preset in all_presets():
        setting = preset.settings()
        rows.append({"name": preset.name, **setting.to_dict(), "description": preset.description})
    if json_output:
        Reporter().data(rows)
        return
    for row in rows:
        params = "".join(f" {k}={v}" for k, v in row["params"].items())
        typer.echo(
            f"{row['name']:<12} {row['method']} (keeps {row['keep']:g}){params}  — {row['description']}"
        )


@app.command()
def models(json_output: JsonOpt = False) -> None:
    """List the model aliases (family, size, laptop fit, default frames) and the supported architectures."""
    from vidqa.models import ADAPTERS, CATALOG, DEFAULT_FRAMES, DEFAULT_MODEL

    rows = [
        {
            "alias": alias,
            "hub_id": entry.hub_id,
            "family": entry.family,
            "parameters_billion": entry.parameters,
            "laptop": entry.laptop,
            "frames": dict(zip(("cpu", "gpu"), DEFAULT_FRAMES[entry.family], strict=True)),
            "default": alias == DEFAULT_MODEL,
        }
        for alias, entry in CATALOG.items()
    ]
    if json_output:
        Reporter().data({"models": rows, "model_types": sorted(ADAPTERS)})
        return
    typer.echo(f"{'alias':<16} {'family':<16} {'params':>7}  laptop  frames cpu/gpu  hub id")
    for row in rows:
        laptop = "yes" if row["laptop"] else "-"
        frames = f"{row['frames']['cpu']}/{row['frames']['gpu']}"
        default = "  (default)" if row["default"] else ""
        typer.echo(
            f"{row['alias']:<16} {row['family']:<16} {row['parameters_billion']:>6.2f}B  {laptop:<6}  "
            f"{frames:<14} {row['hub_id']}{default}"
        )
    typer.echo(f"\nany hub id or local folder of these model types works: {', '.join(sorted(ADAPTERS))}")


cache_app = typer.Typer(help="Inspect or clear the on-disk feature cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(
    cache_dir: CacheDirOpt = None, cache_size: CacheSizeOpt = None, json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:  # fmt: skip
    """Where the cache is, how many entries it holds, how big it is and its bound (creates nothing)."""
    from vidqa.cache import FeatureCache, default_cache_dir, parse_size
    from vidqa.cli.options import DEFAULT_CACHE_SIZE

    reporter = Reporter()
    try:
        bound = parse_size(cache_size) if cache_size is not None else DEFAULT_CACHE_SIZE
        info = FeatureCache(cache_dir or default_cache_dir(), max_bytes=bound, create=False).info()
    except Exception as exc:
        fail(exc, reporter, debug=debug)
    data = {
        "directory": str(info.directory),
        "exists": info.directory.is_dir(),
        "entries": info.entries,
        "kinds": info.kinds,
        "size_bytes": info.size_bytes,
        "max_bytes": info.max_bytes,
    }
    if json_output:
        reporter.data(data)
    else:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(info.kinds.items()))
        typer.echo(
            f"{info.directory}: {info.entries} entries{f' ({kinds})' if kinds else ''}, "
            f"{info.size_bytes / 2**20:.1f} MiB of {info.max_bytes / 2**30:.1f} GiB"
        )


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None, debug: DebugOpt = False) -> None:
    """Remove every entry of the feature cache."""
    from vidqa.cache import FeatureCache, default_cache_dir

    reporter = Reporter()
    directory = cache_dir or default_cache_dir()
    try:
        removed = FeatureCache(directory, max_bytes=0, create=False).clear()
    except Exception as exc:
        fail(exc, reporter, debug=debug)
    typer.echo(f"removed {removed} entries from {directory}")
