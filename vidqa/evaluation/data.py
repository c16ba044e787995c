"""Multiple-choice video QA benchmarks from local files: a generic JSONL, MVBench and Video-MME as their
authors distribute them. Each question becomes an `EvalItem` whose prompt is built as lmms-eval builds it
for that benchmark, so numbers compare with lmms-eval runs. No torch here.

Layouts (`layout="auto"` picks by what the path holds):

- **jsonl**: a `.jsonl` file, one question per line: `video` (relative to the file's folder unless absolute),
  `question`, `options` (list of texts), `answer` (a letter, a 0-based index or the option's text), optional
  `id`, `task` and `duration` (the group the table reports on).
- **mvbench**: the `OpenGVLab/MVBench` dataset folder: `json/<task>.json` (20 tasks; each item has `video`,
  `question`, `candidates`, `answer` = the correct candidate's text) and the videos unpacked from its
  `video/*.zip` under `video/` (or the folder itself, as lmms-eval's cache lays them out), in the per-task
  sub-folders lmms-eval uses (`MVBENCH_VIDEO_FOLDERS`).
- **videomme**: the `lmms-lab/Video-MME` dataset folder: `videomme/test-*.parquet` (columns `question_id`,
  `videoID`, `duration`, `question`, `options` as "A. …" strings, `answer` a letter) and the videos unpacked
  from its `videos_chunked_*.zip` into `data/` (`data/<videoID>.mp4`). Reading parquet needs `pyarrow`.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidqa.errors import UsageError

LETTERS = string.ascii_uppercase
LAYOUTS = ("auto", "jsonl", "mvbench", "videomme")

#: lmms-eval's post-prompt for letter answers (Video-MME's default, and vidqa's generic prompt).
LETTER_POST_PROMPT = "Answer with the option's letter from the given choices directly."
#: lmms-eval's MVBench post-prompt (tasks/mvbench/mvbench_*.yaml).
MVBENCH_POST_PROMPT = "Only give the best option.\n"
#: lmms-eval's Video-MME instruction before the question (tasks/videomme/utils.py, no subtitles given).
VIDEOMME_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)

#: Where lmms-eval expects each MVBench task's videos (relative to the unpacked `video/` folder).
MVBENCH_VIDEO_FOLDERS = {
    "action_antonym": "ssv2_video_mp4",
    "action_count": "perception/videos",
    "action_localization": "sta/sta_video_segment",
    "action_prediction": "star/Charades_segment",
    "action_sequence": "star/Charades_segment",
    "character_order": "perception/videos",
    "counterfactual_inference": "clevrer/video_validation",
    "egocentric_navigation": "vlnqa",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "fine_grained_pose": "nturgbd_convert",
    "moving_attribute": "clevrer/video_validation",
    "moving_count": "clevrer/video_validation",
    "moving_direction": "clevrer/video_validation",
    "object_existence": "clevrer/video_validation",
    "object_interaction": "star/Charades_segment",
    "object_shuffle": "perception/videos",
    "scene_transition": "scene_qa/video",
    "state_change": "perception/videos",
    "unexpected_action": "FunQA_test/test",
}

_LETTER_PREFIX = re.compile(r"^\(?([A-Z])[.):]\s*")


@dataclass(frozen=True)
class EvalItem:
    """One multiple-choice question about one video."""

    id: str
    video: str
    question: str  # the question alone, as the benchmark gives it
    options: tuple[str, ...]  # option texts, without their letters
    answer: str  # the correct option's letter
    task: str  # the group the table reports on (MVBench task, Video-MME duration, the JSONL's task)
    prompt: str  # what the model is asked: question, lettered options, post-prompt

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]


def load_benchmark(
    path: str | Path,
    *,
    layout: str = "auto",
    video_root: str | Path | None = None,
    tasks: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[EvalItem]:
    """Every question of a benchmark (in file order; `tasks` keeps some groups, `limit` the first N of
    each). A malformed file or question is a `UsageError` naming the file and what is wrong."""
    source = Path(path)
    if not source.exists():
        raise UsageError(f"{source}: no such file or folder")
    kind = detect_layout(source) if layout == "auto" else layout
    if kind not in LAYOUTS[1:]:
        raise UsageError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    root = Path(video_root) if video_root is not None else None
    loaders = {"jsonl": _read_jsonl, "mvbench": _read_mvbench, "videomme": _read_videomme}
    items = loaders[kind](source, root)
    wanted = set(tasks or ())
    if wanted:
        unknown = wanted - {item.task for item in items}
        if unknown:
            known = ", ".join(sorted({item.task for item in items}))
            raise UsageError(f"--tasks: {', '.join(sorted(unknown))} not in {source} (it has: {known})")
        items = [item for item in items if item.task in wanted]
    if limit is not None:
        items = _first_per_task(items, limit)
    _check_unique_ids(items, source)
    return items


def detect_layout(path: Path) -> str:
    if path.is_file() and path.suffix.lower() in (".jsonl", ".json"):
        return "jsonl"
    if path.is_dir() and (path / "json").is_dir():
        return "mvbench"
    if path.is_dir() and any(path.glob("**/*.parquet")):
        return "videomme"
    if path.is_file() and path.suffix.lower() == ".parquet":
        return "videomme"
    raise UsageError(
        f"{path}: not a benchmark vidqa knows (a .jsonl file, an MVBench folder with json/, or a Video-MME "
        "folder with videomme/*.parquet); see docs/evaluation.md"
    )


def _first_per_task(items: list[EvalItem], limit: int) -> list[EvalItem]:
    counts: dict[str, int] = {}
    kept = []
    for item in items:
        counts[item.task] = counts.get(item.task, 0) + 1
        if counts[item.task] <= limit:
            kept.append(item)
    return kept


def _check_unique_ids(items: list[EvalItem], source: Path) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise UsageError(f"{source}: the id {item.id!r} is used by more than one question")
        seen.add(item.id)


# -- prompts ----------------------------------------------------------------------------------------------
def lettered_prompt(question: str, options: tuple[str, ...]) -> str:
    """The generic prompt: the question, one "A. option" line per option, lmms-eval's letter post-prompt."""
    lines = [f"{LETTERS[index]}. {option}" for index, option in enumerate(options)]
    return "\n".join([question, *lines, LETTER_POST_PROMPT])


def mvbench_prompt(question: str, options: tuple[str, ...]) -> str:
    """lmms-eval's `mvbench_doc_to_text`, character for character."""
    lines = "".join(f"({LETTERS[index]}) {option}\n" for index, option in enumerate(options))
    return "Question:" + question + "\nOption:\n" + lines + MVBENCH_POST_PROMPT


def videomme_prompt(question: str, lettered_options: list[str]) -> str:
    """lmms-eval's `videomme_doc_to_text` with the default post-prompt, character for character."""
    return "\n".join([VIDEOMME_INSTRUCTION, question, *lettered_options, "\n" + LETTER_POST_PROMPT])


# -- the generic JSONL -------------------------------------------------------------------------------------
def _read_jsonl(source: Path, video_root: Path | None) -> list[EvalItem]:
    if source.is_dir():
        raise UsageError(f"{source}: is a folder; give the .jsonl file")
    root = video_root or source.parent
    items = []
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{source}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UsageError(f"{where}: expected a JSON object")
            items.append(_jsonl_item(row, where, root, default_id=f"{source.stem}:{number}"))
    if not items:
        raise UsageError(f"{source}: no questions")
    return items


def _jsonl_item(row: dict[str, Any], where: str, root: Path, *, default_id: str) -> EvalItem:
    for name in ("video", "question", "options", "answer"):
        if name not in row:
            raise UsageError(f"{where}: missing {name!r}")
    options = row["options"]
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise UsageError(f"{where}: 'options' must be a list of at least two strings")
    if len(options) > len(LETTERS):
        raise UsageError(f"{where}: more than {len(LETTERS)} options")
    texts = tuple(_strip_letter(option, index) for index, option in enumerate(options))
    answer = _answer_letter(row["answer"], texts, where)
    video = Path(str(row["video"])).expanduser()
    question = str(row["question"]).strip()
    task = str(row.get("task") or row.get("duration") or "all")
    return EvalItem(
        id=str(row.get("id", default_id)),
        video=str(video if video.is_absolute() else root / video),
        question=question,
        options=texts,
        answer=answer,
        task=task,
        prompt=lettered_prompt(question, texts),
    )


def _strip_letter(option: str, index: int) -> str:
    """ "B. text" or "(B) text" at position B → "text" (some datasets letter their options already)."""
    match = _LETTER_PREFIX.match(option.strip())
    if match and match.group(1) == LETTERS[index]:
        return option.strip()[match.end() :].strip()
    return option.strip()


def _answer_letter(answer: Any, options: tuple[str, ...], where: str) -> str:
    letters = LETTERS[: len(options)]
    if isinstance(answer, bool):
        raise UsageError(f"{where}: 'answer' must be a letter, an index or an option's text")
    if isinstance(answer, int):
        if 0 <= answer < len(options):
            return letters[answer]
        raise UsageError(f"{where}: 'answer' index {answer} is out of range for {len(options)} options")
    text = str(answer).strip()
    bare = text.strip("().: ")
    if len(bare) == 1 and bare.upper() in letters:
        return bare.upper()
    for index, option in enumerate(options):
        if option == text or option.casefold() == text.casefold():
            return letters[index]
    raise UsageError(
        f"{where}: 'answer' {text!r} is neither one of {', '.join(letters)} nor an option's text"
    )


# -- MVBench ---------------------------------------------------------------------------------------------
def _read_mvbench(source: Path, video_root: Path | None) -> list[EvalItem]:
    folder = source / "json"
    files = sorted(folder.glob("*.json"))
    if not files:
        raise UsageError(f"{folder}: no task files (*.json); see docs/evaluation.md for MVBench's layout")
    items = []
    for path in files:
        task = path.stem
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read ({exc})") from None
        if not isinstance(rows, list):
            raise UsageError(f"{path}: expected a JSON list of questions")
        for index, row in enumerate(rows):
            items.append(_mvbench_item(row, task, index, source, video_root, where=f"{path}[{index}]"))
    return items


def _mvbench_item(row: Any, task: str, index: int, source: Path, video_root: Path | None, *,
                  where: str) -> EvalItem:  # fmt: skip
    if not isinstance(row, dict) or not all(name in row for name in ("video", "question", "candidates")):
        raise UsageError(f"{where}: expected 'video', 'question', 'candidates' and 'answer'")
    options = tuple(str(option) for option in row["candidates"])
    if str(row.get("answer")) not in options:
        raise UsageError(f"{where}: 'answer' is not one of the candidates")
    question = str(row["question"])
    return EvalItem(
        id=f"{task}/{index}",
        video=str(_mvbench_video(task, str(row["video"]), source, video_root)),
        question=question,
        options=options,
        answer=LETTERS[options.index(str(row["answer"]))],
        task=task,
        prompt=mvbench_prompt(question, options),
    )


def _mvbench_video(task: str, name: str, source: Path, video_root: Path | None) -> Path:
    """The first existing candidate (lmms-eval's folders, under `video/` or the root, and its `data0613/`
    fallback); the first candidate when none exists, so the item's record names a clear missing file."""
    folder = MVBENCH_VIDEO_FOLDERS.get(task, task)
    roots = [video_root] if video_root is not None else [source / "video", source]
    candidates = [root / sub / folder / name for root in roots for sub in ("", "data0613")]
    return next((path for path in candidates if path.exists()), candidates[0])


# -- Video-MME -------------------------------------------------------------------------------------------
def _read_videomme(source: Path, video_root: Path | None) -> list[EvalItem]:
    files = (
        [source]
        if source.is_file()
        else sorted(source.glob("videomme/*.parquet")) or sorted(source.glob("**/*.parquet"))
    )
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise UsageError(
            "reading Video-MME's parquet files needs pyarrow: pip install 'vidqa[eval]'"
        ) from None
    root = video_root or (source.parent if source.is_file() else source) / "data"
    items = []
    for path in files:
        try:
            rows = parquet.read_table(path).to_pylist()
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read ({exc})") from None
        for index, row in enumerate(rows):
            items.append(_videomme_item(row, root, where=f"{path}[{index}]"))
    return items


def _videomme_item(row: dict[str, Any], root: Path, *, where: str) -> EvalItem:
    names = ("question_id", "videoID", "duration", "question", "options", "answer")
    missing = [name for name in names if row.get(name) is None]
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)}")
    lettered = [str(option) for option in row["options"]]
    texts = tuple(_strip_letter(option, index) for index, option in enumerate(lettered))
    answer = str(row["answer"]).strip()
    if answer not in LETTERS[: len(texts)]:
        raise UsageError(f"{where}: 'answer' {answer!r} is not an option's letter")
    video_id = str(row["videoID"])
    candidates = [root / f"{video_id}{ext}" for ext in (".mp4", ".MP4", ".mkv")]
    video = next((path for path in candidates if path.exists()), candidates[0])
    question = str(row["question"])
    return EvalItem(
        id=str(row["question_id"]),
        video=str(video),
        question=question,
        options=texts,
        answer=answer,
        task=str(row["duration"]),
        prompt=videomme_prompt(question, lettered),
    )
