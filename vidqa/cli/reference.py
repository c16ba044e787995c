"""Render docs/cli.md from the commands' own `--help`, so the reference cannot drift from the CLI.

    python -m vidqa.cli.reference > docs/cli.md

A test regenerates it and compares with the checked-in file.
"""

from __future__ import annotations

from typing import Any

import typer.main

from vidqa.cli import app

WIDTH = 100
HEADER = (
    "# vidqa command-line reference\n\n"
    "Generated from `--help` by `python -m vidqa.cli.reference > docs/cli.md`; a test keeps it in sync.\n"
)


def _sections(command: Any, path: list[str], parent: Any) -> list[str]:
    # The command's own context class: recent Typer versions vendor their own copy of click.
    ctx = command.context_class(
        command, info_name=path[-1], parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )
    sections = [f"## `{' '.join(path)}`\n\n```\n{command.get_help(ctx).rstrip()}\n```\n"]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                sections += _sections(sub, [*path, name], ctx)
    return sections


def render() -> str:
    return "\n".join([HEADER, *_sections(typer.main.get_command(app), ["vidqa"], None)])


if __name__ == "__main__":
    print(render(), end="")
