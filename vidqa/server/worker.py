"""One model, one answer at a time: the queue between HTTP requests and the model.

Requests are answered in arrival order by a single thread that owns the model (generation is not
re-entrant, and one answer at a time uses the accelerator fully). The queue is bounded: a request that
finds it full is refused at once (503 with `Retry-After`), never left waiting without end. A request whose
client went away is skipped if it has not started, and stops after the current token if it has.

Sessions (video + setting: its encoding, selection and video prefix) are kept for the last few videos, so a
second request about a video — another question, or the next turn of a conversation — reads only its own
tokens; the on-disk cache does the same across restarts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vidqa.errors import PromptTooLongError, VidqaError, describe_error, is_out_of_memory
from vidqa.server.protocol import ApiError

if TYPE_CHECKING:
    from vidqa.compress.registry import Compression
    from vidqa.engine import Engine
    from vidqa.server.protocol import Conversation
    from vidqa.server.sources import VideoSource
    from vidqa.session import Session
    from vidqa.settings import GenerationSettings, SamplingSettings

log = logging.getLogger("vidqa.serve")


@dataclass
class Job:
    """One request on its way through the queue; events flow back to the request's event loop."""

    source: VideoSource
    conversation: Conversation
    compression: Compression
    sampling: SamplingSettings
    generation: GenerationSettings
    stream: bool
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, kind: str, value: Any) -> None:
        """("text", piece) while streaming, then ("done", record) or ("error", ApiError)."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))

    def cancel(self) -> None:
        self.cancelled.set()


class Worker:
    """The model's thread and its bounded queue."""

    def __init__(self, engine: Engine, *, queue_size: int = 16, sessions: int = 4) -> None:
        self.engine = engine
        self.queue_size = queue_size
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._sessions: OrderedDict[tuple[Any, ...], Session] = OrderedDict()
        self._kept_sessions = sessions
        self._durations: deque[float] = deque(maxlen=32)
        self._thread = threading.Thread(target=self._run, name="vidqa-model", daemon=True)
        self.closing = False
        self.counts: Counter[str] = Counter()
        self.busy = False

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop_accepting(self) -> None:
        """Refuse new requests and answer the queued ones with 503; the answer in progress finishes."""
        self.closing = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self.counts["refused"] += 1
                job.emit(
                    "error",
                    ApiError(503, "the server is shutting down", kind="server_error", code="shutdown"),
                )

    def close(self, timeout: float | None = None) -> None:
        self.stop_accepting()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # -- requests ------------------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if self.closing:
            raise ApiError(503, "the server is shutting down", kind="server_error", code="shutdown")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.counts["refused"] += 1
            raise ApiError(
                503,
                f"the server is busy: {self.queue_size} requests are already waiting; retry later",
                kind="server_error",
                code="queue_full",
                headers={"Retry-After": str(self.retry_after())},
            ) from None

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely: the recent answer time times the queue's length."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, math.ceil(mean * (self._queue.qsize() + 1)))

    def status(self) -> dict[str, Any]:
        return {
            "queued": self._queue.qsize(),
            "queue_size": self.queue_size,
            "busy": self.busy,
            "sessions": len(self._sessions),
            **{name: self.counts[name] for name in ("answered", "failed", "cancelled", "refused")},
        }

    # -- the model's thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled.is_set():  # the client left while it waited
                self.counts["cancelled"] += 1
                continue
            self.busy = True
            started = time.perf_counter()
            try:
                self._answer(job)
            finally:
                self.busy = False
                self._durations.append(time.perf_counter() - started)

    def _answer(self, job: Job) -> None:
        chat = job.conversation
        try:
            session = self._session(job)
            result = session.ask(
                chat.question,
                generation=job.generation,
                history=chat.history,
                system=chat.system,
                on_text=(lambda piece: job.emit("text", piece)) if job.stream else None,
                should_stop=job.cancelled.is_set,
            )
        except Exception as exc:  # one bad request must never stop the model's thread
            self.counts["failed"] += 1
            job.emit("error", self._api_error(exc, job))
            return
        self.counts["cancelled" if result.finish_reason == "cancelled" else "answered"] += 1
        job.emit("done", result.to_dict())

    def _session(self, job: Job) -> Session:
        """The kept session for this video, setting and system text (they fix the video prefix), or a new one
        (the least recently used is dropped)."""
        path = job.source.path
        key = (self.engine.cache_key(path, job.sampling), job.compression, job.conversation.system)
        session = self._sessions.pop(key, None)
        if session is None:
            session = self.engine.session(
                path, job.compression, sampling=job.sampling, generation=job.generation
            )
            session.encoding.frames = None  # pixels are not needed again; keep only the features
        self._sessions[key] = session
        while len(self._sessions) > self._kept_sessions:
            self._sessions.popitem(last=False)
        return session

    def _api_error(self, exc: BaseException, job: Job) -> ApiError:
        message = describe_error(exc).replace(str(job.source.path), job.source.label)
        if isinstance(exc, PromptTooLongError):
            return ApiError(400, message, param="messages", code="context_length_exceeded")
        if isinstance(exc, VidqaError):
            return ApiError(400, message, code=type(exc).__name__)
        if is_out_of_memory(exc):
            return ApiError(503, message, kind="server_error", code="out_of_memory")
        log.exception("request failed")
        return ApiError(500, f"internal error: {message}", kind="server_error")
