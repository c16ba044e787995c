"""The HTTP surface of `vidqa serve`: OpenAI's chat completions, models and a health check, on FastAPI.

    POST /v1/chat/completions   a question (and earlier turns) about one video; streamed as server-sent
                                events with "stream": true
    GET  /v1/models             the one model this server holds
    GET  /health                liveness, the queue and what has been answered

Every error is OpenAI-shaped JSON with a fitting status (400 bad input, 401 bad key, 404 unknown model or
route, 413 too large, 503 busy or shutting down, 500 a bug) and leaves the server serving. The request body
is read with a size cap before it is parsed. Headers of a streamed answer are sent with its first token, so
anything that fails before it (a broken video, an over-long prompt) is still a plain error response.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vidqa.errors import UsageError
from vidqa.server import protocol
from vidqa.server.protocol import ApiError, bad_request
from vidqa.server.sources import SourcePolicy, VideoSources
from vidqa.server.worker import Job, Worker

if TYPE_CHECKING:
    from vidqa.compress.registry import Compression
    from vidqa.engine import Engine
    from vidqa.settings import SamplingSettings

#: how often a waiting non-streamed request checks whether its client is still there
_DISCONNECT_POLL_S = 0.25


@dataclass
class ServerConfig:
    """Everything `vidqa serve` decides at start-up."""

    model_names: tuple[str, ...]  # ids a request may name; the first is the one /v1/models lists
    compression: Compression  # the default setting (--preset/--method/--keep/-p)
    sampling: SamplingSettings  # the default frames (--frames/--fps/--max-frames)
    max_tokens: int = 512  # the default and the largest answer a request may ask for
    max_request_frames: int = 256
    policy: SourcePolicy = field(default_factory=SourcePolicy)
    api_key: str | None = None
    queue_size: int = 16
    sessions: int = 4

    @property
    def max_body(self) -> int:
        return self.policy.max_upload * 4 // 3 + 2**20  # a base64 video at the cap, plus the JSON around it


def create_app(engine: Engine, config: ServerConfig) -> FastAPI:
    """The ASGI app; the worker thread starts and stops with the app's lifespan."""
    worker = Worker(engine, queue_size=config.queue_size, sessions=config.sessions)
    sources = VideoSources(config.policy)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await asyncio.to_thread(worker.close)
            sources.close()

    app = FastAPI(title="vidqa", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.worker = worker
    app.state.sources = sources

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        error = ApiError(exc.status_code, str(exc.detail), kind=kind)
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.middleware("http")
    async def authorize(request: Request, call_next: Any) -> Any:
        if (
            config.api_key
            and request.url.path.startswith("/v1/")
            and not _authorized(request, config.api_key)
        ):
            error = ApiError(
                401, "invalid or missing API key (Authorization: Bearer …)", kind="authentication_error"
            )
            return JSONResponse(error.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "shutting down" if worker.closing else "ok",
            "model": config.model_names[0],
            **worker.status(),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": config.model_names[0], "object": "model", "created": created, "owned_by": "vidqa"}
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        chat = protocol.parse_request(await _json_body(request, config.max_body))
        if chat.model not in config.model_names:
            raise ApiError(
                404,
                f"model {chat.model!r} is not served here: this server serves {config.model_names[0]!r}",
                kind="not_found_error",
                param="model",
                code="model_not_found",
            )
        conversation = protocol.conversation(chat.messages)
        job = Job(
            source=await sources.resolve(conversation.video_url),
            conversation=conversation,
            compression=_compression(chat.vidqa, config),
            sampling=_sampling(chat.vidqa, config),
            generation=_generation(chat, config),
            stream=chat.stream,
            loop=asyncio.get_running_loop(),
        )
        worker.submit(job)
        first = await _first_event(job, request)
        if first is None:  # the client went away while the request waited
            return JSONResponse({}, status_code=499)
        kind, value = first
        if kind == "error":
            raise value
        request_id, name = protocol.completion_id(), config.model_names[0]
        if not chat.stream:
            return protocol.completion(request_id, name, value)
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        events = _sse(job, first, request_id, name, include_usage=include_usage)
        return StreamingResponse(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return app


# -- request pieces ---------------------------------------------------------------------------------------
def _authorized(request: Request, key: str) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def _json_body(request: Request, cap: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise ApiError(413, f"the request body is larger than {cap / 2**20:.0f} MiB", code="body_too_large")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > cap:
            raise ApiError(
                413, f"the request body is larger than {cap / 2**20:.0f} MiB", code="body_too_large"
            )
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON ({exc})") from None


def _compression(options: protocol.VidqaOptions, config: ServerConfig) -> Compression:
    """The request's setting: its own fields over its preset over the server's default."""
    from vidqa.cli.options import compression_from_flags

    if not options.sets_compression:
        return config.compression
    params = [f"{name}={_flag_value(value)}" for name, value in options.params.items()]
    method = options.method or (None if options.preset else config.compression.method)
    try:
        return compression_from_flags(
            preset=options.preset, method=method, keep=options.keep, params=params, tokens=options.tokens
        )
    except UsageError as exc:
        raise bad_request(f"vidqa: {exc}", param="vidqa") from None


def _flag_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (bool, list, dict)) or value is None else str(value)


def _sampling(options: protocol.VidqaOptions, config: ServerConfig) -> SamplingSettings:
    from vidqa.settings import SamplingSettings

    frames, fps = config.sampling.frames, config.sampling.fps
    if options.frames is not None or options.fps is not None:
        frames, fps = options.frames, options.fps
    max_frames = options.max_frames if options.max_frames is not None else config.sampling.max_frames
    for name, value in (("frames", frames), ("max_frames", max_frames)):
        if value is not None and value > config.max_request_frames:
            raise bad_request(
                f"vidqa.{name}: at most {config.max_request_frames} frames", param=f"vidqa.{name}"
            )
    try:
        return SamplingSettings(frames=frames, fps=fps, max_frames=max_frames)
    except UsageError as exc:
        raise bad_request(f"vidqa: {exc}", param="vidqa") from None


def _generation(chat: protocol.ChatRequest, config: ServerConfig) -> Any:
    from vidqa.settings import GenerationSettings

    asked = chat.max_completion_tokens or chat.max_tokens or config.max_tokens
    if asked > config.max_tokens:
        raise bad_request(f"max_tokens may be at most {config.max_tokens} on this server", param="max_tokens")
    try:
        return GenerationSettings(
            max_new_tokens=asked,
            temperature=chat.temperature or 0.0,
            top_p=chat.top_p if chat.top_p is not None else 1.0,
            seed=chat.seed,
            stop=chat.stops,
        )
    except UsageError as exc:
        raise bad_request(str(exc)) from None


# -- answering ---------------------------------------------------------------------------------------------
async def _first_event(job: Job, request: Request) -> tuple[str, Any] | None:
    """The job's first event (its first text, its answer or its error); None when the client left first."""
    waiting = asyncio.ensure_future(job.events.get())
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=_DISCONNECT_POLL_S)
            if done:
                return waiting.result()
            if await request.is_disconnected():
                job.cancel()
                return None
    finally:
        if not waiting.done():
            waiting.cancel()


async def _sse(
    job: Job, first: tuple[str, Any], request_id: str, model: str, *, include_usage: bool
) -> AsyncIterator[str]:
    """Server-sent events: the role, each piece of text, the finish reason (with what vidqa applied), the
    usage when asked for, then [DONE]. If the client goes away the job is cancelled (after its current
    token)."""
    created = int(time.time())

    def event(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    try:
        yield event(protocol.chunk(request_id, model, created, {"role": "assistant", "content": ""}))
        kind, value = first
        while kind == "text":
            yield event(protocol.chunk(request_id, model, created, {"content": value}))
            kind, value = await job.events.get()
        if kind == "error":
            yield event(value.body())
        else:
            last = protocol.chunk(
                request_id, model, created, {}, protocol.openai_finish_reason(value["finish_reason"])
            )
            yield event({**last, "vidqa": protocol.applied(value)})
            if include_usage:
                yield event(
                    {
                        **protocol.chunk(request_id, model, created, {}),
                        "choices": [],
                        "usage": protocol.usage(value),
                    }
                )
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()  # a no-op once the answer is complete; stops generation if the client went away


def _version() -> str:
    from vidqa._version import __version__

    return __version__
