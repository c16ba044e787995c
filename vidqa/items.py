"""Many videos × many questions: how command-line inputs become items, and which 1/N of them a shard runs.

An item is one (video, question) pair and gets exactly one JSON record. Inputs are files, folders, `-` for
paths on stdin and questions files (plain text, or JSON Lines with per-video questions); `--shard I/N` picks
a deterministic 1/N of the items. No torch here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vidqa.errors import UsageError

#: Extensions taken as videos without probing (a broken file with one of them still gets a record).
VIDEO_EXTENSIONS = frozenset(
    [
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".flv",
        ".wmv",
        ".3gp",
        ".ogv",
        ".gif",
    ]
)


@dataclass(frozen=True)
class Item:
    video: str
    question: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.video, self.question)


# -- inputs -------------------------------------------------------------------------------------------
def _has_video_stream(path: Path) -> bool:
    """Container probing for files without a video extension (a quick open, no decoding)."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return bool(container.streams.video)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return False


def _folder_videos(folder: Path, *, recursive: bool) -> list[str]:
    pattern = "**/*" if recursive else "*"
    found = []
    for path in sorted(folder.glob(pattern)):
        if (
            path.is_file()
            and not path.name.startswith(".")
            and (path.suffix.lower() in VIDEO_EXTENSIONS or _has_video_stream(path))
        ):
            found.append(str(path))
    return found


def expand_videos(
    inputs: Iterable[str], *, recursive: bool = False, stdin: IO[str] | None = None
) -> list[str]:
    """Files as given (a missing one still becomes an item, so it gets its error record), folders
    expanded to the videos in them, and `-` replaced by the paths read from stdin, one per line."""
    videos: list[str] = []
    for entry in inputs:
        if entry == "-":
            if stdin is None:
                raise UsageError("'-' reads video paths from stdin, but no stdin is available")
            videos.extend(line.strip() for line in stdin if line.strip())
        elif Path(entry).is_dir():
            videos.extend(_folder_videos(Path(entry), recursive=recursive))
        else:
            videos.append(entry)
    return list(dict.fromkeys(videos))  # a file named twice is asked once


def read_questions(path: str | Path) -> tuple[list[str], list[Item]]:
    """A questions file: plain text (one question per line), or JSON Lines with `question` and optionally
    `video` (a per-video question); blank lines and `#` comment lines are skipped in both.

    Returns (questions for every video, explicit items).
    """
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"questions file {path}: {exc.strerror if isinstance(exc, OSError) else exc}"
        ) from None
    content = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    content = [(n, line) for n, line in content if not line.startswith("#")]  # comments, in either form
    if not content or not content[0][1].startswith("{"):
        return [line for _, line in content], []
    shared: list[str] = []
    items: list[Item] = []
    for number, line in content:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"questions file {path}, line {number}: not valid JSON") from None
        question = entry.get("question") if isinstance(entry, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise UsageError(f'questions file {path}, line {number}: needs a non-empty "question" string')
        video = entry.get("video")
        if video is None:
            shared.append(question)
        elif isinstance(video, str):
            items.append(Item(video, question))
        else:
            raise UsageError(f'questions file {path}, line {number}: "video" must be a path string')
    return shared, items


def build_items(videos: list[str], questions: list[str], explicit: list[Item]) -> list[Item]:
    """Every video × every shared question, then the explicit pairs; duplicates removed, order kept."""
    items = [Item(video, question) for video in videos for question in questions] + explicit
    return list(dict.fromkeys(items))


def group_by_video(items: list[Item]) -> list[tuple[str, list[str]]]:
    """Items grouped per video (first-appearance order), so each video is decoded and encoded once."""
    groups: dict[str, list[str]] = {}
    for item in items:
        groups.setdefault(item.video, []).append(item.question)
    return list(groups.items())


# -- sharding -----------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise UsageError(f"--shard expects I/N, e.g. 0/4 (got {text!r})") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: need 0 <= I < N")
    return index, count


def in_shard(item: Item, index: int, count: int) -> bool:
    """Stable across runs, processes and machines: a hash of the item's text, not Python's hash()."""
    digest = hashlib.blake2b(f"{item.video}\0{item.question}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count == index


def shard(items: list[Item], index: int, count: int) -> list[Item]:
    return [item for item in items if in_shard(item, index, count)]
