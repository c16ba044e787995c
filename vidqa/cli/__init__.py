"""The `vidqa` command: a thin Typer layer that parses and validates, calls the library, and hands results to
one output sink (`output.Reporter`). Commands live in `ask.py`, `chat.py`, `serve.py`, `evaluate.py` (eval),
`tools.py` (inspect, bench) and `info.py` (methods, presets, models, cache); shared options in `options.py`;
error translation in `common.py`.
"""

from __future__ import annotations

from vidqa.cli import ask, chat, evaluate, info, serve, tools  # noqa: F401 - importing registers the commands on the app
from vidqa.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
