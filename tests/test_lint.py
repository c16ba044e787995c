"""The code stays ruff clean (lint and format); part of the one test command so CI enforces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["vidqa", "tests", "benchmarks", "examples"]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    targets = [t for t in TARGETS if (ROOT / t).exists()]
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *targets], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_check() -> None:
    proc = _ruff("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    proc = _ruff("format", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
