"""Video file and model identities: what the feature cache keys on (vidqa.identity)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import pytest

import vidqa.identity
from vidqa.errors import VideoError
from vidqa.identity import BLOCK, file_identity, folder_digest, model_identity


class _CountingOpen:
    """Wraps `open` in vidqa.identity to count the bytes actually read."""

    def __init__(self) -> None:
        self.read = 0

    def __call__(self, *args: object, **kwargs: object) -> io.BufferedReader:
        handle = open(*args, **kwargs)  # noqa: SIM115 - returned to the caller, who closes it
        outer = self

        class Counting(io.BufferedReader):
            def read(self, size: int | None = -1) -> bytes:
                data = handle.read(size)
                outer.read += len(data)
                return data

            def readinto(self, buffer: bytearray | memoryview) -> int:
                count = handle.readinto(buffer)
                outer.read += count or 0
                return count

            def seek(self, *a: int) -> int:
                return handle.seek(*a)

            def close(self) -> None:
                handle.close()

        return Counting(io.BytesIO())


def test_quick_identity_reads_two_blocks_of_a_big_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.mp4"
    with open(path, "wb") as handle:
        handle.truncate(64 * BLOCK)  # sparse: 64 MiB without writing them
    counter = _CountingOpen()
    monkeypatch.setattr(vidqa.identity, "open", counter, raising=False)
    first = file_identity(path)
    assert counter.read == 2 * BLOCK
    assert file_identity(path) == first  # the same file, unchanged


def test_quick_identity_sees_the_ends_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    payload = bytearray(os.urandom(5 * BLOCK))
    path.write_bytes(payload)
    base = file_identity(path)
    st = path.stat()

    def rewritten(data: bytes) -> str:
        path.write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: only the content can tell
        return file_identity(path)

    head, tail = bytearray(payload), bytearray(payload)
    head[10] ^= 1
    tail[-10] ^= 1
    assert rewritten(bytes(head)) != base
    assert rewritten(bytes(tail)) != base
    assert rewritten(bytes(payload)) == base
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert file_identity(path) != base  # touched: a (safe) miss


def test_quick_identity_does_not_follow_content_across_copies(tmp_path: Path) -> None:
    a = tmp_path / "a.mp4"
    a.write_bytes(os.urandom(1000))
    b = tmp_path / "b.mp4"
    shutil.copy(a, b)
    assert file_identity(a) != file_identity(b)  # a copy is another file: recomputed, never wrong
    assert file_identity(a, full=True) == file_identity(b, full=True)  # --full-hash: content only


def test_full_identity_is_the_content_digest_memoised_per_stat(tmp_path: Path) -> None:
    path = tmp_path / "v.bin"
    payload = os.urandom(3 * BLOCK + 17)
    path.write_bytes(payload)
    assert file_identity(path, full=True) == "content:" + hashlib.blake2b(payload, digest_size=32).hexdigest()
    st = path.stat()
    path.write_bytes(b"x" * len(payload))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    # Same size, inode and mtime: the memo answers without reading again.
    assert file_identity(path, full=True).endswith(hashlib.blake2b(payload, digest_size=32).hexdigest())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert file_identity(path, full=True).endswith(
        hashlib.blake2b(b"x" * len(payload), digest_size=32).hexdigest()
    )


def test_missing_file_is_a_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"missing\.mp4"):
        file_identity(tmp_path / "missing.mp4")


def test_two_checkpoints_written_in_turn_to_one_folder_differ(tmp_path: Path) -> None:
    from tests.tiny_models import build_tiny_checkpoint

    folder = tmp_path / "ckpt"
    build_tiny_checkpoint("qwen2_vl", folder, seed=1)
    first = folder_digest(folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert folder_digest(copy) == first  # content, not path or mtime
    shutil.rmtree(folder)
    build_tiny_checkpoint("qwen2_vl", folder, seed=2)  # same shapes, same header, other weights
    assert folder_digest(folder) != first
    config = folder / "processor_config.json"
    before = folder_digest(folder)
    config.write_text(config.read_text().replace("{", '{"x": 1, ', 1))
    assert folder_digest(folder) != before  # a processor setting changes the identity too


def test_model_identity_is_the_snapshot_commit_for_hub_ids(tmp_path: Path, hermetic_hf_env: Path) -> None:
    repo = hermetic_hf_env / "hub" / "models--org--model"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    assert model_identity("org/model") == f"hub:org/model@{'b' * 40}"  # main → the commit it points at
    assert model_identity("org/model", "main") == f"hub:org/model@{'b' * 40}"
    assert model_identity("org/model", "a" * 40) == f"hub:org/model@{'a' * 40}"
    (tmp_path / "config.json").write_text("{}")
    assert model_identity(str(tmp_path)).startswith("folder:")
