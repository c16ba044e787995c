"""Shared pytest fixtures for the vidqa test suite.

Owns the test environment (hermetic, offline Hugging Face) and fixtures reused across test files, such as
the tiny random-weight checkpoints. Keep heavy imports inside fixtures: huggingface_hub reads its
environment once, at import time, so the variables below must be set before anything imports it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# --- Hermetic Hugging Face environment -----------------------------------------------------------------
# Set at import (before test modules import transformers) so in-process constants see them, and
# re-applied by the autouse fixture so subprocesses spawned by tests inherit them too.
_HF_HOME = Path(tempfile.mkdtemp(prefix="vidqa-tests-hf-home-"))
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
_HF_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HOME": str(_HF_HOME),
    # vidqa's default feature cache lives under XDG_CACHE_HOME: keep tests out of the user's cache too.
    "XDG_CACHE_HOME": str(_HF_HOME / "xdg-cache"),
}
os.environ.update(_HF_ENV)


@pytest.fixture(scope="session", autouse=True)
def hermetic_hf_env() -> Iterator[Path]:
    """Keep every test offline and out of the user's HF cache; yields the throwaway HF_HOME."""
    import huggingface_hub.constants as hf_constants

    patch = pytest.MonkeyPatch()
    for name, value in _HF_ENV.items():
        patch.setenv(name, value)
    # In case huggingface_hub was imported before this conftest (e.g. by a plugin).
    patch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    yield _HF_HOME
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread: test tensors are tiny, and on a busy 2-core machine two spinning
    OpenMP threads made a tiny model's forward 10-30x slower (5 ms -> 150-450 ms measured)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- Tiny model checkpoints ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny offline checkpoint per supported family, built once per session: {family: directory}."""
    from tests.tiny_models import FAMILIES, build_tiny_checkpoint
    from tests.tiny_recent import RECENT_FAMILIES, build_recent_checkpoint

    root = tmp_path_factory.mktemp("tiny_checkpoints")
    built = {family: build_tiny_checkpoint(family, root / family) for family in FAMILIES}
    built.update({family: build_recent_checkpoint(family, root / family) for family in RECENT_FAMILIES})
    return built


# --- Synthetic clips -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short clip with motion and a scene cut (4 s, 10 fps, 160x120), made once per session."""
    from vidqa.synth import make_clip

    return make_clip(
        tmp_path_factory.mktemp("clips") / "sample.mp4",
        seconds=4,
        fps=10,
        size=(160, 120),
        pattern="cuts",
        cut_every=2.0,
    )


@pytest.fixture(scope="session")
def engines(tiny_checkpoints: dict[str, Path]) -> dict[str, object]:
    """One CPU float32 Engine per tiny checkpoint, loaded once per session: {family: Engine}."""
    from vidqa.engine import Engine

    return {
        family: Engine.load(str(path), device="cpu", dtype="float32", attn="sdpa")
        for family, path in tiny_checkpoints.items()
    }
