"""On-disk cache of question-independent visual features, so a second run on a clip skips decode + vision.

This module owns the cache's files and nothing else: it stores named tensors plus a JSON-able metadata dict
under a caller-chosen key (build keys with `cache_key(video=..., model=..., frames=...)`; what identifies a
video file or a model is `vidqa.identity`'s business). It knows nothing about models or videos; the engine
decides what goes in the key and the entry.

Layout (one directory per entry, so an entry is published or removed with a single atomic rename):

    <directory>/<key[:2]>/<key>/tensors.safetensors   # CPU, contiguous tensors (safetensors, never pickle)
    <directory>/<key[:2]>/<key>/meta.json             # format version, tensor file size + blake2b, dtypes,
                                                      # shapes, and the caller's metadata under "meta"

Writers build an entry in a `.tmp-*` directory next to its final place and `os.rename` it in; when another
process won the race the loser's copy is discarded (entries are immutable: same key, same content).
Removal renames the entry to a `.del-*` name first, so a reader sees a whole entry or none. A reader that
finds a damaged entry (bad JSON, wrong size or checksum, missing file, unreadable safetensors) removes it
and reports a miss; the caller recomputes and puts again. `meta.json`'s mtime is the entry's last use, so
eviction is least-recently-used; the bound counts the bytes of the entries' files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidqa.errors import CacheError, UsageError

if TYPE_CHECKING:  # torch is imported where tensors are handled, so `parse_size` & co. stay light for the CLI
    import torch

FORMAT_VERSION = 1
TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"
_TMP_PREFIX = ".tmp-"
_DEL_PREFIX = ".del-"
_STALE_SECONDS = 3600  # a temp/trash dir untouched this long belongs to a dead process
_DIGEST_BYTES = 32  # blake2b digest size: 64 hex chars
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{2,128}")


def default_cache_dir() -> Path:
    """Where features live unless the caller says otherwise: $XDG_CACHE_HOME/vidqa/features."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative value.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "vidqa" / "features"


def cache_key(**parts: str | int | float | bool | list | tuple | None) -> str:
    """Stable hex digest of the parts (order of keyword arguments does not matter; tuples equal lists)."""
    try:
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except TypeError as exc:
        raise TypeError(f"cache_key parts must be JSON values: {exc}") from exc
    return hashlib.blake2b(text.encode(), digest_size=_DIGEST_BYTES).hexdigest()


_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    **{u: 1024**p for p, u in enumerate(("k", "m", "g", "t"), start=1)},
    **{f"{u}ib": 1024**p for p, u in enumerate(("k", "m", "g", "t"), start=1)},
    **{f"{u}b": 1000**p for p, u in enumerate(("k", "m", "g", "t"), start=1)},
}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


def parse_size(text: str) -> int:
    """Bytes from a human size: "0", "4096", "500MB" (SI, 10^6), "2G" / "1.5GiB" (binary, 2^30).

    K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024 (as in Docker); KB/MB/GB/TB are powers of 1000 (SI).
    Case-insensitive; fractions round down to whole bytes.
    """
    match = _SIZE_RE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise UsageError(
            f"invalid size {text!r}: expected a number with an optional unit, e.g. 0, 500MB, 2G, 1.5GiB"
        )
    try:
        return int(Decimal(match.group(1)) * _UNITS[unit])
    except InvalidOperation as exc:  # unreachable given the regex; kept so a bad value never escapes
        raise UsageError(f"invalid size {text!r}") from exc


@dataclass(frozen=True)
class CacheInfo:
    """What `vidqa cache info` would show: where, how many entries, how many bytes, and the bound."""

    directory: Path
    entries: int
    size_bytes: int
    max_bytes: int
    kinds: dict[str, int] = field(default_factory=dict)  # entries per metadata "kind" (features, prefix)


@dataclass(frozen=True)
class _Entry:
    """One published entry as seen by a directory scan."""

    path: Path
    size_bytes: int
    used_ns: int  # meta.json mtime: last put or get


class _Damaged(Exception):
    """An entry's files do not match its sidecar; the entry is removed and reported as a miss."""


class FeatureCache:
    """Named CPU tensors + JSON metadata per key, bounded to `max_bytes` by LRU eviction.

    Safe across processes sharing the directory: publishing and removal are atomic renames, and files that
    vanish under a reader are a miss. `max_bytes == 0` stores nothing (reads still work).
    """

    def __init__(self, directory: str | Path, max_bytes: int = 2 * 1024**3, *, create: bool = True) -> None:
        """create=False: only look (info, clear): a missing directory is an empty cache, nothing is made."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.directory = Path(directory).expanduser()
        self.max_bytes = max_bytes
        if max_bytes > 0 and create:
            self._ensure_writable(self.directory)

    # ---- public API -------------------------------------------------------------------------------

    def get(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The entry's tensors (CPU) and metadata, or None on a miss or a damaged entry (then removed)."""
        path = self._entry_path(key)
        try:
            tensors, meta = _read_entry(path, key)
        except (FileNotFoundError, NotADirectoryError):
            if path.is_dir():  # the directory is there but a file is not: damaged
                _remove_entry(path)
            return None
        except _Damaged:
            _remove_entry(path)
            return None
        except OSError:  # unreadable (permissions, I/O error): a miss, leave it for someone who can
            return None
        _touch(path / META_FILE)
        return tensors, meta

    def put(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Store an entry, then evict least recently used ones until the bound holds.

        An entry larger than the bound alone is not stored; an existing entry for the key is kept (entries
        are immutable). Raises CacheError when the directory cannot be written, TypeError for values that
        are not tensors / not JSON-able.
        """
        path = self._entry_path(key)
        if self.max_bytes == 0:
            return
        if path.is_dir():  # already stored (same key, same content): just mark it used
            _touch(path / META_FILE)
            return
        tensor_bytes, meta_bytes = _serialize(key, tensors, meta)
        if len(tensor_bytes) + len(meta_bytes) > self.max_bytes:
            return
        if self._publish(path, tensor_bytes, meta_bytes):
            self._evict(keep=path)

    def info(self) -> CacheInfo:
        """Count and total bytes of the published entries, and how many of each kind (the callers' metadata
        field "kind"; entries without one count as "features")."""
        entries, _ = self._scan()
        kinds: dict[str, int] = {}
        for entry in entries:
            kind = _entry_kind(entry.path)
            kinds[kind] = kinds.get(kind, 0) + 1
        total = sum(e.size_bytes for e in entries)
        return CacheInfo(self.directory, len(entries), total, self.max_bytes, kinds)

    def clear(self) -> int:
        """Remove every entry (and stale temp dirs); returns how many entries this call removed."""
        entries, stale = self._scan()
        _remove_stale(stale)
        removed = sum(_remove_entry(e.path) for e in entries)
        if entries and not removed and not os.access(self.directory, os.W_OK):
            raise CacheError(f"cannot clear the feature cache {self.directory}: it is not writable")
        return removed

    # ---- writing ----------------------------------------------------------------------------------

    def _publish(self, path: Path, tensor_bytes: bytes, meta_bytes: bytes) -> bool:
        """Write into a temp dir beside the entry and rename it in; False when another writer won."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{path.name}-", dir=path.parent))
        except OSError as exc:
            raise self._error(exc) from exc
        try:
            (tmp / TENSORS_FILE).write_bytes(tensor_bytes)
            (tmp / META_FILE).write_bytes(meta_bytes)
            os.rename(tmp, path)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or path.is_dir():
                return False  # another process published the same key first: theirs is as good as ours
            raise self._error(exc) from exc
        _touch(path / META_FILE)
        return True

    def _evict(self, keep: Path) -> None:
        """Remove least recently used entries (never `keep`) until the total fits in max_bytes."""
        entries, stale = self._scan()
        _remove_stale(stale)
        entries.sort(key=lambda e: (e.used_ns, e.path.name))
        total = sum(e.size_bytes for e in entries)
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.path == keep:
                continue
            _remove_entry(entry.path)  # gone either way: removed by us or by a concurrent process
            total -= entry.size_bytes

    # ---- directory helpers ------------------------------------------------------------------------

    def _entry_path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"cache key must be 2-128 characters of [A-Za-z0-9_-], got {key!r}")
        return self.directory / key[:2] / key

    def _scan(self) -> tuple[list[_Entry], list[Path]]:
        """One pass over the shards: published entries, and temp/trash dirs left by dead processes.

        Entries that vanish mid-scan (a concurrent removal) are skipped.
        """
        entries: list[_Entry] = []
        stale: list[Path] = []
        cutoff = time.time() - _STALE_SECONDS
        for shard in _subdirs(str(self.directory)):
            if shard.name.startswith("."):
                continue
            for child in _subdirs(shard.path):
                if not child.name.startswith("."):
                    entry = _stat_entry(child.path)
                    if entry is not None:
                        entries.append(entry)
                elif child.name.startswith((_TMP_PREFIX, _DEL_PREFIX)) and _mtime(child) < cutoff:
                    stale.append(Path(child.path))
        return entries, stale

    def _ensure_writable(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc) from exc
        if not os.access(directory, os.W_OK | os.X_OK):
            raise CacheError(f"feature cache directory {directory} is not writable")

    def _error(self, exc: OSError) -> CacheError:
        return CacheError(f"cannot write to feature cache directory {self.directory}: {exc.strerror or exc}")


# ---- entry files ----------------------------------------------------------------------------------


def _serialize(key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[bytes, bytes]:
    """The two files' bytes; the sidecar records what the tensor file must look like when read back."""
    import safetensors.torch

    cpu = {name: _to_cpu(name, t) for name, t in tensors.items()}
    tensor_bytes = safetensors.torch.save(cpu)
    sidecar = {
        "format": FORMAT_VERSION,
        "key": key,
        "tensors_file": {
            "size": len(tensor_bytes),
            "blake2b": hashlib.blake2b(tensor_bytes, digest_size=_DIGEST_BYTES).hexdigest(),
        },
        "tensors": {name: _describe(t) for name, t in cpu.items()},
        "meta": meta,
    }
    try:
        meta_bytes = json.dumps(sidecar, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cache metadata must be JSON-able: {exc}") from exc
    return tensor_bytes, meta_bytes


def _to_cpu(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """A fresh contiguous CPU copy (one copy whether the source is on CPU or a device)."""
    import torch

    if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
        raise TypeError(f"cache tensors must map str to torch.Tensor, got {name!r}: {type(tensor).__name__}")
    out = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu")
    out.copy_(tensor.detach())
    return out


def _describe(tensor: torch.Tensor) -> dict[str, Any]:
    return {"dtype": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape)}


def _read_entry(path: Path, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load and validate one entry; raises _Damaged for contents that do not check out, OSError for I/O."""
    import safetensors.torch

    sidecar = _read_sidecar(path / META_FILE, key)
    data = (path / TENSORS_FILE).read_bytes()
    expected = sidecar["tensors_file"]
    if len(data) != expected["size"]:
        raise _Damaged(f"tensor file has {len(data)} bytes, expected {expected['size']}")
    if hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest() != expected["blake2b"]:
        raise _Damaged("tensor file checksum mismatch")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError (an Exception subclass)
        raise _Damaged(f"unreadable safetensors: {exc}") from exc
    if {name: _describe(t) for name, t in tensors.items()} != sidecar["tensors"]:
        raise _Damaged("tensor names, dtypes or shapes differ from the sidecar")
    return tensors, sidecar["meta"]


def _read_sidecar(path: Path, key: str) -> dict[str, Any]:
    try:
        sidecar = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Damaged(f"bad sidecar JSON: {exc}") from exc
    ok = (
        isinstance(sidecar, dict)
        and sidecar.get("format") == FORMAT_VERSION
        and sidecar.get("key") == key
        and isinstance(sidecar.get("tensors_file"), dict)
        and isinstance(sidecar["tensors_file"].get("size"), int)
        and isinstance(sidecar["tensors_file"].get("blake2b"), str)
        and isinstance(sidecar.get("tensors"), dict)
        and isinstance(sidecar.get("meta"), dict)
    )
    if not ok:  # includes entries written by another format version: stale, recompute
        raise _Damaged("sidecar fields missing or of another format version")
    return sidecar


def _remove_entry(path: Path) -> bool:
    """Atomically take an entry out of view, then delete it; False when it was already gone."""
    trash = path.with_name(f"{_DEL_PREFIX}{path.name}-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(path, trash)
    except OSError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _entry_kind(path: Path) -> str:
    """The caller's "kind" for an entry (read from its sidecar; unreadable entries count as "features")."""
    try:
        meta = json.loads((path / META_FILE).read_bytes()).get("meta", {})
    except (OSError, ValueError, AttributeError):
        return "features"
    kind = meta.get("kind", "features") if isinstance(meta, dict) else "features"
    return kind if isinstance(kind, str) else "features"


def _remove_stale(dirs: list[Path]) -> None:
    for directory in dirs:
        shutil.rmtree(directory, ignore_errors=True)


def _stat_entry(path: str) -> _Entry | None:
    """Size and last use of one entry; None when it vanished meanwhile."""
    try:
        with os.scandir(path) as it:
            stats = {f.name: f.stat() for f in it if f.is_file(follow_symlinks=False)}
        used_ns = stats[META_FILE].st_mtime_ns if META_FILE in stats else os.stat(path).st_mtime_ns
    except OSError:
        return None
    return _Entry(Path(path), sum(st.st_size for st in stats.values()), used_ns)


def _subdirs(directory: str) -> list[os.DirEntry[str]]:
    """Directories directly under `directory` (none when it is missing or unreadable)."""
    try:
        with os.scandir(directory) as it:
            return [d for d in it if d.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return time.time()  # vanished or unreadable: treat as fresh, leave it alone


def _touch(path: Path) -> None:
    """Mark an entry used now; precise ns (not the coarse kernel clock) keeps LRU order exact."""
    now = time.time_ns()
    with contextlib.suppress(OSError):  # evicted meanwhile, or a read-only cache: the data is still good
        os.utime(path, ns=(now, now))
