"""What the lmms-eval plug-in does with lmms-eval's requests, without importing lmms-eval (so it is tested
everywhere): unpack a chat request's messages into video, question and system text; map lmms-eval's
`gen_kwargs` onto vidqa's generation settings; answer a batch grouped by video, so each video is encoded
once and its questions share one session (prefix reuse), and return the answers in the batch's order.

A request that fails (a missing video, an image-only task) is answered with an empty string, logged once
and written to the records file with its error: lmms-eval scores it wrong and the run goes on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vidqa.compress.registry import Compression
from vidqa.engine import Engine
from vidqa.errors import UsageError, describe_error
from vidqa.record import Result
from vidqa.records import RecordFile
from vidqa.session import Session
from vidqa.settings import GenerationSettings, SamplingSettings

log = logging.getLogger("vidqa.lmms_eval")

#: lmms-eval's default answer length for its video multiple-choice tasks.
DEFAULT_MAX_NEW_TOKENS = 16


@dataclass(frozen=True)
class ChatRequest:
    """One lmms-eval generation request, unpacked."""

    video: str | None
    text: str
    system: str | None
    generation: GenerationSettings
    task: str = ""
    doc_id: Any = None
    error: str | None = None  # why it cannot be answered (set when unpacking fails)


def unpack_messages(messages: Sequence[dict[str, Any]]) -> tuple[str | None, str, str | None]:
    """(video path or URL, the user's text, the system text) of one single-turn chat request."""
    videos: list[str] = []
    texts: list[str] = []
    system: list[str] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": str(content or "")}]
        for part in parts:
            kind = part.get("type")
            if kind == "text":
                (system if role == "system" else texts).append(str(part.get("text", "")))
            elif kind == "video" and role == "user":
                videos.append(_video_url(part.get("url")))
            elif kind in ("image", "audio"):
                raise UsageError(f"{kind} inputs are not supported: vidqa answers about one video")
        if role == "assistant":
            raise UsageError("multi-turn requests are not supported by the plug-in")
    if len(videos) != 1:
        raise UsageError(f"a request must carry exactly one video (got {len(videos)})")
    text = "\n".join(piece for piece in texts if piece).strip()
    return videos[0], text, "\n".join(system).strip() or None


def _video_url(url: Any) -> str:
    if isinstance(url, dict):  # a video with start/end metadata: vidqa reads the whole file
        url = url.get("url") or url.get("path")
    if not isinstance(url, str) or not url:
        raise UsageError("the request's video is not a file path")
    return url


def generation_from(gen_kwargs: dict[str, Any] | None) -> GenerationSettings:
    """lmms-eval's `gen_kwargs` (max_new_tokens, temperature, top_p, do_sample, until) as vidqa's settings."""
    kwargs = dict(gen_kwargs or {})
    sampled = bool(kwargs.get("do_sample")) and float(kwargs.get("temperature") or 0) > 0
    until = kwargs.get("until") or ()
    stops = (until,) if isinstance(until, str) else tuple(until)
    return GenerationSettings(
        max_new_tokens=int(kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
        temperature=float(kwargs.get("temperature") or 0) if sampled else 0.0,
        top_p=float(kwargs.get("top_p") or 1.0) if sampled else 1.0,
        stop=tuple(stop for stop in stops if stop),
    )


class Answerer:
    """Answers requests with one engine and one compression setting, keeping a few videos' sessions."""

    def __init__(self, engine: Engine, compression: Compression, sampling: SamplingSettings, *,
                 records: RecordFile | None = None, sessions: int = 2) -> None:  # fmt: skip
        engine.validate(compression)
        self.engine = engine
        self.compression = compression
        self.sampling = sampling
        self.records = records
        self.settings = engine.settings(sampling, GenerationSettings())
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._capacity = sessions

    def answer_all(self, requests: Sequence[ChatRequest]) -> list[tuple[str, Result]]:
        """(answer, its result) per request, in the given order; requests about one video run together."""
        order = sorted(range(len(requests)), key=lambda index: (requests[index].video or "", index))
        answers: dict[int, tuple[str, Result]] = {}
        for index in order:
            result = self.answer(requests[index])
            answers[index] = ((result.answer or "") if result.ok else "", result)
        return [answers[index] for index in range(len(requests))]

    def answer(self, request: ChatRequest) -> Result:
        """One request's result (never raises for a bad request: the result carries the error)."""
        try:
            if request.error is not None:
                raise UsageError(request.error)
            assert request.video is not None
            result = self._session(request.video).ask(
                request.text, generation=request.generation, system=request.system
            )
        except Exception as exc:
            result = Result.failure(
                request.video or "", request.text, describe_error(exc), exception=exc,
                model=self.engine.model_name, settings=self.settings, compression=self.compression,
            )  # fmt: skip
            log.warning("vidqa: %s %s: %s", request.task, request.doc_id, result.error)
        if self.records is not None:
            self.records.write({"task": request.task, "doc_id": request.doc_id, **result.to_dict()})
        return result

    def _session(self, video: str) -> Session:
        session = self._sessions.get(video)
        if session is not None:
            self._sessions.move_to_end(video)
            return session
        session = self.engine.session(video, self.compression, sampling=self.sampling)
        self._sessions[video] = session
        while len(self._sessions) > self._capacity:
            self._sessions.popitem(last=False)
        return session
