"""The `vidqa` command: a thin Typer layer that parses and validates, calls the library, and hands results
to `vidqa.ui`. Commands live in `ask.py` and `tools.py`; shared options and error translation in `common.py`.
"""

from __future__ import annotations

import sys

from vidqa.cli import ask, tools  # noqa: F401 - importing registers the commands on the app
from vidqa.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("vidqa: interrupted\n")
        sys.exit(130)
