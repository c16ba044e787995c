"""Run a benchmark through several compression settings: every (question, setting) gets one record.

Each video is decoded and encoded once for all settings and questions (the next video decodes on a thread
meanwhile); per setting, its questions share one session, so the video's prefix is read by the LLM once
and each question costs only its own tokens. A broken video gives failure records for all its pairs; a
failing question gives its own; the run goes on. Answers are greedy unless the generation settings say
otherwise.

An eval record is `ask`'s record with the model's text renamed `output`, and `answer` the gold letter:
`item`, `task`, `method`, `keep`, `prediction` (the parsed letter or null), `answer`, `correct`, `output`,
then the rest (video, question = the prompt, visual tokens, timings, settings, …).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vidqa.compress.registry import Compression, needs_saliency
from vidqa.engine import Engine
from vidqa.errors import describe_error
from vidqa.evaluation.data import EvalItem
from vidqa.evaluation.extract import extract_choice
from vidqa.evaluation.report import setting_key
from vidqa.record import Result
from vidqa.records import RecordKey
from vidqa.runner import prepared_videos
from vidqa.session import Session
from vidqa.settings import GenerationSettings, SamplingSettings

#: lmms-eval's generation for these tasks: at most 16 new tokens, greedy.
EVAL_MAX_NEW_TOKENS = 16


def record_key(record: dict[str, Any]) -> RecordKey | None:
    """An eval record's identity for resuming: the question and the compression setting."""
    if "item" not in record or "method" not in record:
        return None
    return (str(record["item"]), setting_key(str(record["method"]), float(record["keep"]), record["params"]))


def key_of(item: EvalItem, compression: Compression) -> RecordKey:
    return (item.id, setting_key(compression.method, compression.keep, compression.params.model_dump()))


def run_eval(
    engine: Engine,
    items: list[EvalItem],
    configs: list[Compression],
    *,
    sampling: SamplingSettings,
    generation: GenerationSettings | None = None,
    done: set[RecordKey] | None = None,
    prefetch: bool = True,
) -> Iterator[dict[str, Any]]:
    """One record per (item, setting) not in `done`, grouped by video; never raises for a bad video."""
    generation = generation or GenerationSettings(max_new_tokens=EVAL_MAX_NEW_TOKENS)
    settings = engine.settings(sampling, generation)
    done = done or set()
    by_video: dict[str, list[EvalItem]] = {}
    for item in items:
        if any(key_of(item, config) not in done for config in configs):
            by_video.setdefault(item.video, []).append(item)
    saliency = needs_saliency(*configs)
    for video, future, started in prepared_videos(
        engine, list(by_video), sampling, prefetch=prefetch, saliency=saliency
    ):
        todo = [
            (config, [item for item in by_video[video] if key_of(item, config) not in done])
            for config in configs
        ]
        try:
            encoding = engine.encode(future.result(), saliency=saliency)
        except Exception as exc:  # a broken video: every pair about it gets its failure record
            for config, its_items in todo:
                for item in its_items:
                    yield _failure(engine, item, config, exc, settings, started)
            continue
        for config, its_items in todo:
            if its_items:
                yield from _ask_all(engine, encoding, config, its_items, generation, settings, started)


def _ask_all(engine: Engine, encoding: Any, config: Compression, items: list[EvalItem],
             generation: GenerationSettings, settings: dict[str, Any], started: float,
             ) -> Iterator[dict[str, Any]]:  # fmt: skip
    keep_prefix = len(items) > 1 or engine.cache is not None
    try:
        session = Session(engine, encoding, config, settings=settings, keep_prefix=keep_prefix)
    except Exception as exc:
        for item in items:
            yield _failure(engine, item, config, exc, settings, started)
        return
    for item in items:
        try:
            result = session.ask(item.prompt, generation=generation)
        except Exception as exc:  # one failing question must not stop the others
            yield _failure(engine, item, config, exc, settings, started)
        else:
            yield eval_record(item, result)


def eval_record(item: EvalItem, result: Result) -> dict[str, Any]:
    """`ask`'s record as an answer to a multiple-choice item: parsed, scored, gold answer attached."""
    record = result.to_dict()
    output = record.pop("answer")
    prediction = extract_choice(output, item.options) if result.ok else None
    head = {
        "item": item.id,
        "task": item.task,
        "method": record.pop("method"),
        "keep": record.pop("keep"),
        "prediction": prediction,
        "answer": item.answer,
        "correct": prediction == item.answer if result.ok else None,
        "output": output,
        "options": list(item.options),
    }
    return {**head, **record}


def _failure(engine: Engine, item: EvalItem, config: Compression, exc: Exception, settings: dict[str, Any],
             started: float) -> dict[str, Any]:  # fmt: skip
    result = Result.failure(
        item.video, item.prompt, describe_error(exc), exception=exc, started=started, model=engine.model_name,
        compression=config, settings=settings,
    )  # fmt: skip
    return eval_record(item, result)
