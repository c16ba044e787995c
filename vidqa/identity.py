"""What the feature cache keys on: which video file, and which model, exactly.

Both identities are cheap to compute and err on the side of a cache miss, never a wrong hit.

Video files (`file_identity`):
- quick (the default): size, mtime_ns and inode of the file plus a blake2b of its first and last MiB. It
  reads at most 2 MiB whatever the file's size, so a multi-GB file is not streamed end to end to sample 32
  frames. Limits: a copy or a `touch` gets a new identity (a miss: the features are recomputed, never
  wrong); an edit that keeps size and mtime (e.g. `touch -r`) and changes only the middle of the file is
  not noticed.
- full (`--full-hash`): a blake2b of the whole content, and nothing else. Survives copies, renames and
  touches; costs one read of the whole file per process (memoised per path, size, mtime and inode).

Models (`model_identity`):
- a hub id: the snapshot commit the revision resolves to in the hub cache (never a branch name such as
  `main`, which moves);
- a local folder: a digest of its contents: every small file (configs, processor and tokenizer files, chat
  template) in full, and for each weight file its name, size, safetensors header and first and last MiB of
  data. Two checkpoints written in turn to the same folder therefore never share cache entries.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import struct
from pathlib import Path
from typing import Any

from vidqa.errors import VideoError

BLOCK = 1024 * 1024  # bytes read from each end of a large file
SMALL_FILE = 32 * 1024 * 1024  # files up to this size are hashed whole in a model folder
_DIGEST_BYTES = 32


def file_identity(path: str | Path, *, full: bool = False) -> str:
    """A video file's identity (see the module doc); raises VideoError when the file cannot be read."""
    try:
        resolved = Path(path).resolve()
        st = resolved.stat()
        if full:
            return "content:" + _whole_file_digest(str(resolved), st.st_size, st.st_mtime_ns, st.st_ino)
        digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
        digest.update(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode())
        _hash_ends(digest, resolved, st.st_size)
        return "quick:" + digest.hexdigest()
    except OSError as exc:
        raise VideoError(path, f"cannot read file ({exc.strerror or exc})") from exc


@functools.lru_cache(maxsize=4096)
def _whole_file_digest(resolved: str, size: int, mtime_ns: int, inode: int) -> str:
    """Stream the whole file; the stat fields are only the memo key (an edited file gets a new one)."""
    with open(resolved, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=_DIGEST_BYTES)).hexdigest()


def _hash_ends(digest: Any, path: Path, size: int, *, skip: int = 0) -> None:
    """Feed the first and last BLOCK bytes after `skip` (the whole rest when it is small) to `digest`."""
    with open(path, "rb") as handle:
        handle.seek(skip)
        if size - skip <= 2 * BLOCK:
            digest.update(handle.read())
            return
        digest.update(handle.read(BLOCK))
        handle.seek(size - BLOCK)
        digest.update(handle.read(BLOCK))


def model_identity(source: str, revision: str | None = None) -> str:
    """The identity of a loaded model: `hub:<id>@<commit>`, or `folder:<digest>` for a local folder."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        return "folder:" + folder_digest(folder)
    commit = hub_commit(source, revision)
    if commit is None:  # not in the hub cache layout we know: fall back to the loaded files themselves
        raise ValueError(f"cannot find the cached snapshot of {source} to identify it")
    return f"hub:{source}@{commit}"


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The snapshot commit a hub model (branch, tag or commit `revision`) resolves to in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    match = (
        re.search(r"snapshots/([0-9a-f]{40})/", str(path).replace(os.sep, "/"))
        if isinstance(path, str)
        else None
    )
    return match.group(1) if match else None


def folder_digest(folder: Path) -> str:
    """Digest of a checkpoint folder's contents (see the module doc); hidden files and folders are skipped."""
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for path in sorted(_files(folder)):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        if path.suffix == ".safetensors":
            header_end = _safetensors_header(path, digest)
            _hash_ends(digest, path, size, skip=header_end)
        elif size <= SMALL_FILE:
            digest.update(path.read_bytes())
        else:
            _hash_ends(digest, path, size)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / name for name in files if not name.startswith("."))
    return found


def _safetensors_header(path: Path, digest: Any) -> int:
    """Feed the JSON header (names, dtypes, shapes, offsets) to `digest`; returns where the data starts."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            digest.update(prefix)
            return len(prefix)
        (length,) = struct.unpack("<Q", prefix)
        header = handle.read(min(length, SMALL_FILE))
    digest.update(header)
    return 8 + len(header)
