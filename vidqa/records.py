"""The record file (`--output`, `--resume`): records that survive interruption and failure.

Records are appended one whole line at a time and flushed, so an interrupted run leaves only complete
records (a half-written last line from a hard kill is removed before appending). No torch here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vidqa.errors import UsageError


def _repair_tail(path: Path) -> None:
    """Drop a partial last line (a run killed mid-write), so appending continues on a clean line."""
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return
        data_start = max(0, size - 1_048_576)
        handle.seek(data_start)
        tail = handle.read()
        cut = tail.rfind(b"\n")
        handle.truncate(data_start + cut + 1 if cut >= 0 else 0)


def done_items(path: Path) -> set[tuple[str, str]]:
    """(video, question) of every complete record in a JSONL file (unreadable lines are ignored)."""
    done: set[tuple[str, str]] = set()
    if not path.exists():
        return done
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "video" in record and "question" in record:
                done.add((str(record["video"]), str(record["question"])))
    return done


class RecordFile:
    """Appends records to a JSONL file: one `write` of one whole line per record, flushed at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UsageError(f"--output {path} is a directory")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            _repair_tail(self.path)
            self._handle = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--output {path}: {exc.strerror}") from None

    def done(self) -> set[tuple[str, str]]:
        return done_items(self.path)

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
