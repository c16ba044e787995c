"""What identifying a video for the feature cache costs: the whole-file hash (vidqa ≤ 0.1, now `--full-hash`)
against the quick identity (size, mtime, inode, first and last MiB), on a large file.

    python -m benchmarks.bench_cache_key --size 2G [--dir /scratch]

Writes a file of the given size (random blocks, so nothing compresses or deduplicates), then times both in
the same run, each with the file's pages in the OS cache ("warm") and after asking the OS to drop them
(`posix_fadvise(DONTNEED)`, "cold": the file is read from disk). Prints one markdown table. The file is
removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vidqa.cache import parse_size
from vidqa.identity import _whole_file_digest, file_identity


def _write(path: Path, size: int) -> None:
    block = os.urandom(64 * 1024 * 1024)
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            handle.write(chunk)
            written += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())


def _drop_pages(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _time(fn: Callable[[], object], path: Path, *, cold: bool, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        if cold:
            _drop_pages(path)
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2G", help="file size, e.g. 2G")
    parser.add_argument("--dir", default=None, help="where to write the file [default: a temp dir]")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="vidqa-bench-key-"))
    path = folder / "big.mp4"
    _write(path, size)
    try:
        st = path.stat()

        def full() -> str:  # the memo is bypassed: every call reads the whole file, as before
            return _whole_file_digest.__wrapped__(str(path), st.st_size, st.st_mtime_ns, st.st_ino)

        def quick() -> str:
            return file_identity(path)

        print("| file | identity | warm (page cache) | cold (from disk) |\n| --- | --- | --- | --- |")
        for name, fn in (("whole-file blake2b (before; now --full-hash)", full), ("quick (now)", quick)):
            warm = _time(fn, path, cold=False, repeat=args.repeat)
            cold = _time(fn, path, cold=True, repeat=args.repeat)
            print(f"| {size / 2**30:.1f} GiB | {name} | {warm * 1000:.1f} ms | {cold * 1000:.1f} ms |")
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
