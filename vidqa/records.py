"""The record file (`--output`, `--resume`): records that survive interruption and failure.

Records are appended one whole line at a time and flushed, so an interrupted run leaves only complete
records (a half-written last line from a hard kill is removed before appending). Resuming reads the file
back: the newest record of an item wins, items whose newest record failed are run again, and a file written
with other settings (model, dtype, sampling, answer length, method or any method parameter) is refused, so
one file never mixes configurations. No torch here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
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


#: What must match for records to belong to one run (beside method and params, which sit at the top level).
SIGNATURE_SETTINGS = ("model", "dtype", "sampling", "max_new_tokens")


def signature(record: dict[str, Any], *, with_method: bool = True) -> dict[str, Any] | None:
    """The settings that produced a record, as resume compares them (None: an older vidqa's record).
    with_method=False: a run of several compression settings (`vidqa eval`), where they vary by record."""
    settings = record.get("settings")
    if not isinstance(settings, dict) or not settings:
        return None
    found = {name: settings.get(name) for name in SIGNATURE_SETTINGS}
    if with_method:
        found.update(method=record.get("method"), params=record.get("params"))
    return found


RecordKey = tuple[str, ...]


def item_key(record: dict[str, Any]) -> RecordKey | None:
    """`ask`'s items: one (video, question) pair."""
    if "video" in record and "question" in record:
        return (str(record["video"]), str(record["question"]))
    return None


@dataclass
class RecordLog:
    """What a record file holds: the newest record of each item, and the settings it was written with."""

    latest: dict[RecordKey, dict[str, Any]] = field(default_factory=dict)
    signatures: list[dict[str, Any] | None] = field(default_factory=list)  # distinct, in file order

    @property
    def done(self) -> set[RecordKey]:
        """Items whose newest record succeeded (a failed one is retried)."""
        return {key for key, record in self.latest.items() if record.get("error") is None}

    def check_settings(self, expected: dict[str, Any], path: Path) -> None:
        """Refuse to resume a file whose records were made with other settings (exit 2)."""
        for found in self.signatures:
            if found is None:
                raise UsageError(
                    f"--resume: {path} holds records from an older vidqa that did not record its settings; "
                    "write to another --output file"
                )
            if found != expected:
                changed = ", ".join(
                    f"{name} {found.get(name)!r} → {expected.get(name)!r}"
                    for name in expected
                    if found.get(name) != expected.get(name)
                )
                raise UsageError(
                    f"--resume: {path} holds records made with other settings ({changed}); resume with the "
                    "same settings or write to another --output file"
                )


def read_log(
    path: Path, *, key: Callable[[dict[str, Any]], RecordKey | None] = item_key, with_method: bool = True
) -> RecordLog:
    """Every complete record of a JSONL file (unreadable lines and records `key` rejects are ignored)."""
    log = RecordLog()
    if not path.exists():
        return log
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            found_key = key(record) if isinstance(record, dict) else None
            if found_key is not None:
                log.latest[found_key] = record
                found = signature(record, with_method=with_method)
                if found not in log.signatures:
                    log.signatures.append(found)
    return log


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

    def log(self) -> RecordLog:
        return read_log(self.path)

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
