"""Run many items through one Engine: each video prepared once, the next one decoded while the model works.

`run` yields one `Result` per item, in order, as soon as it is complete; a failing video yields failure
records for all its questions and the run goes on. Decoding (or the cache lookup) of video i+1 runs on a
background thread while video i is in the model: PyAV releases the GIL while it decodes, so the two overlap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from vidqa.batch import Item, group_by_video
from vidqa.compress.registry import Compression
from vidqa.engine import Engine, describe_error
from vidqa.features import Prepared
from vidqa.record import Result
from vidqa.settings import SamplingSettings

TextCallbackFactory = Callable[[Item], Callable[[str], None] | None]


def run(
    engine: Engine,
    items: list[Item],
    *,
    sampling: SamplingSettings,
    compression: Compression,
    max_new_tokens: int = 128,
    min_new_tokens: int = 0,
    on_text: TextCallbackFactory | None = None,
    prefetch: bool = True,
) -> Iterator[Result]:
    """Answer every item; never raises for a bad video (its items get records with `error` set)."""
    groups = group_by_video(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidqa-prefetch") as pool:
        pending: Future[Prepared] | None = None
        for index, (video, questions) in enumerate(groups):
            started = time.perf_counter()
            future = pending or pool.submit(engine.prepare, video, sampling)
            pending = None
            if prefetch and index + 1 < len(groups):
                pending = pool.submit(engine.prepare, groups[index + 1][0], sampling)
            yield from _answer_video(
                engine,
                future,
                video,
                questions,
                started,
                sampling=sampling,
                compression=compression,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                on_text=on_text,
            )


def _answer_video(
    engine: Engine,
    future: Future[Prepared],
    video: str,
    questions: list[str],
    started: float,
    *,
    sampling: SamplingSettings,
    compression: Compression,
    max_new_tokens: int,
    min_new_tokens: int,
    on_text: TextCallbackFactory | None,
) -> Iterator[Result]:
    answered = 0
    try:
        prepared = future.result()
        encoded = engine.encode_prepared(prepared, questions[0])
        for question in questions:
            callback = on_text(Item(video, question)) if on_text else None
            result = engine.answer(
                video,
                question,
                encoded,
                compression,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                on_text=callback,
            )
            if answered == 0:
                result.timings.total = time.perf_counter() - started  # includes waiting for the prefetch
            answered += 1
            yield result
    except Exception as exc:  # one failed video must not stop the batch; KeyboardInterrupt still does
        message = describe_error(exc)
        for question in questions[answered:]:
            yield Result.failure(
                video,
                question,
                message,
                exception=exc,
                started=started,
                model=engine.model_name,
                method=compression.method,
                keep=compression.keep,
            )
