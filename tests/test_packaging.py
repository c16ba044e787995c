"""The wheel carries everything a user needs: the CLI package and the built-in presets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_presets_and_cli(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("vidqa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {
        Path(name).name for name in names if name.startswith("vidqa/_presets/") and name.endswith(".yaml")
    }
    shipped = {path.name for path in (ROOT / "presets").glob("*.yaml")}
    assert presets == shipped and {"none.yaml", "vidcom2.yaml", "vidcom2-15.yaml", "dycoke.yaml"} <= presets
    assert {"vidqa/cli/__init__.py", "vidqa/cli/ask.py", "vidqa/compress/vidcom2.py"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "vidqa = vidqa.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
