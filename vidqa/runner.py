"""Run many items through one Engine: each video encoded once, the next one decoded while the model works.

`run` yields one `Result` per item, grouped by video (first appearance order), as soon as each is complete; a
failing video yields failure records for all its questions and the run goes on. Decoding (or the cache read)
of video i+1 runs on a background thread while video i is in the model: PyAV releases the GIL while it
decodes, so the two overlap. Every question goes through `Session.ask`, the same path as `Engine.ask`.

A closed stdout (`BrokenPipeError` from the text callback) and Ctrl-C end the run at once: no further video
is decoded or answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from vidqa.compress.registry import Compression, needs_saliency
from vidqa.encoding import Prepared
from vidqa.engine import Engine
from vidqa.errors import describe_error
from vidqa.items import Item, group_by_video
from vidqa.record import Result
from vidqa.session import Session
from vidqa.settings import GenerationSettings, SamplingSettings

TextCallbackFactory = Callable[[Item], Callable[[str], None] | None]


def run(
    engine: Engine,
    items: list[Item],
    *,
    sampling: SamplingSettings,
    compression: Compression,
    generation: GenerationSettings | None = None,
    on_text: TextCallbackFactory | None = None,
    prefetch: bool = True,
) -> Iterator[Result]:
    """Answer every item; never raises for a bad video (its items get records with `error` set)."""
    generation = generation or GenerationSettings()
    settings = engine.settings(sampling, generation)
    groups = dict(group_by_video(items))
    saliency = needs_saliency(compression)
    for video, future, started in prepared_videos(
        engine, list(groups), sampling, prefetch=prefetch, saliency=saliency
    ):
        yield from _answer_video(
            engine, future, video, groups[video], started, compression=compression, generation=generation,
            settings=settings, on_text=on_text,
        )  # fmt: skip


def prepared_videos(
    engine: Engine, videos: list[str], sampling: SamplingSettings, *, prefetch: bool = True,
    saliency: bool = False,
) -> Iterator[tuple[str, Future[Prepared], float]]:  # fmt: skip
    """(video, its decoding or cache read, when its turn started) in order, the next video decoded on a
    background thread while the caller works on this one. `future.result()` raises the video's error."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidqa-prefetch")
    try:
        pending: Future[Prepared] | None = None
        for index, video in enumerate(videos):
            started = time.perf_counter()
            future = pending or pool.submit(engine.prepare, video, sampling, saliency=saliency)
            pending = None
            if prefetch and index + 1 < len(videos):
                pending = pool.submit(engine.prepare, videos[index + 1], sampling, saliency=saliency)
            yield video, future, started
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C or a closed pipe: do not decode what is next


def _answer_video(
    engine: Engine,
    future: Future[Prepared],
    video: str,
    questions: list[str],
    started: float,
    *,
    compression: Compression,
    generation: GenerationSettings,
    settings: dict[str, Any],
    on_text: TextCallbackFactory | None,
) -> Iterator[Result]:
    answered = 0
    try:
        reuse = (
            len(questions) > 1 or engine.cache is not None
        )  # else nothing would read the video prefix again
        session = Session(
            engine,
            engine.encode(future.result(), saliency=needs_saliency(compression)),
            compression,
            settings=settings,
            keep_prefix=reuse,
        )
        for question in questions:
            callback = on_text(Item(video, question)) if on_text else None
            result = session.ask(question, generation=generation, on_text=callback)
            if answered == 0:
                result.timings.total = time.perf_counter() - started  # includes waiting for the prefetch
            answered += 1
            yield result
    except BrokenPipeError:
        raise  # stdout is gone: nothing more can be delivered
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
                compression=compression,
                settings=settings,
            )
