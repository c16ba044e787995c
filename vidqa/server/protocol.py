"""The OpenAI chat-completions wire format as vidqa serves it: requests in, responses, chunks and errors out.

A request is validated here, before anything is queued: unknown fields are refused by name, fields vidqa
cannot honour (`n` > 1, tools, logprobs, penalties) are refused with the reason, and the messages are turned
into what a `Session` takes: an optional system text, earlier turns, the question, and the one video (a
`video_url` part in the first user message, the form vLLM and `transformers serve` accept). Per-request
vidqa options ride in the extra body field `"vidqa"`.

No torch and no web framework here: plain pydantic and dicts, so the rules are testable on their own.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vidqa.models.base import Turn


class ApiError(Exception):
    """An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


# -- request ----------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class VideoURL(_Strict):
    url: str


class VideoPart(_Strict):
    type: Literal["video_url"]
    video_url: VideoURL


class OtherPart(BaseModel):
    """Any other part type (images, audio, files): recognised only to be refused with a reason."""

    model_config = ConfigDict(extra="allow")
    type: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart | VideoPart | OtherPart] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class VidqaOptions(_Strict):
    """Per-request compression and sampling (extra body field "vidqa"); unset fields keep the server's."""

    method: str | None = None
    keep: float | None = None
    tokens: int | None = Field(default=None, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    preset: str | None = None
    frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None

    @property
    def sets_compression(self) -> bool:
        return (
            self.method is not None
            or self.keep is not None
            or self.tokens is not None
            or bool(self.params)
            or self.preset is not None
        )


#: fields OpenAI defines that vidqa refuses unless they carry their no-op value
_UNSUPPORTED: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "top_logprobs": None,
    "tools": None,
    "tool_choice": None,
    "functions": None,
    "function_call": None,
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logit_bias": None,
    "audio": None,
    "modalities": None,
    "prediction": None,
}


class ChatRequest(_Strict):
    model: str
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    vidqa: VidqaOptions = Field(default_factory=VidqaOptions)
    # refused unless at their no-op value (see _UNSUPPORTED)
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    audio: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    response_format: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not stop for stop in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return value

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


def parse_request(data: Any) -> ChatRequest:
    """Validate a decoded JSON body; the first problem becomes a 400 naming the field."""
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            raise bad_request(f"unrecognized request argument: {where}", param=where) from None
        raise bad_request(f"{where}: {first['msg']}", param=where) from None
    for name, neutral in _UNSUPPORTED.items():
        value = getattr(request, name)
        if value is not None and value != neutral:
            raise bad_request(f"{name} is not supported by vidqa serve", param=name, code="unsupported")
    if request.response_format not in (None, {"type": "text"}):
        raise bad_request("only text responses are supported", param="response_format", code="unsupported")
    return request


@dataclass(frozen=True)
class Conversation:
    """What a session needs from the messages."""

    video_url: str
    question: str
    history: tuple[Turn, ...]
    system: str | None


def conversation(messages: list[Message]) -> Conversation:
    """System text first (if any), then user/assistant turns ending with a user question; exactly one video,
    in the first user message."""
    system_parts: list[str] = []
    turns: list[tuple[int, Message]] = []
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            if turns:
                raise bad_request(
                    "system messages must come before the conversation", param=f"messages.{index}"
                )
            system_parts.append(_text(message, index, videos_allowed=False)[0])
        else:
            turns.append((index, message))
    if not turns or turns[-1][1].role != "user":
        raise bad_request("the last message must be the user's question", param="messages")
    for position, (_, message) in enumerate(turns):
        if message.role != ("user" if position % 2 == 0 else "assistant"):
            raise bad_request(
                "user and assistant messages must alternate, starting with the user", param="messages"
            )
    texts: list[str] = []
    video_url: str | None = None
    for position, (index, message) in enumerate(turns):
        text, videos = _text(message, index, videos_allowed=position == 0)
        if position == 0:
            if len(videos) != 1:
                raise bad_request(
                    "the first user message must hold exactly one video_url part (one video per chat)",
                    param=f"messages.{index}.content",
                )
            video_url = videos[0]
        if message.role == "user" and not text.strip():
            raise bad_request("a user message needs text: the question", param=f"messages.{index}.content")
        texts.append(text)
    assert video_url is not None
    history = tuple(Turn(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2))
    return Conversation(video_url, texts[-1], history, "\n\n".join(system_parts) or None)


def _text(message: Message, index: int, *, videos_allowed: bool) -> tuple[str, list[str]]:
    """The message's text (parts joined by newlines) and its video URLs."""
    content = message.content
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    videos: list[str] = []
    for part_index, part in enumerate(content):
        where = f"messages.{index}.content.{part_index}"
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, VideoPart):
            if not videos_allowed:
                raise bad_request("a video may only be sent in the first user message", param=where)
            videos.append(part.video_url.url)
        else:
            raise bad_request(
                f"content parts of type {part.type!r} are not supported: send text and one video_url",
                param=where,
            )
    return "\n".join(texts), videos


# -- responses --------------------------------------------------------------------------------------------
def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(record: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(record["prompt_tokens"]), int(record["generated_tokens"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def applied(record: dict[str, Any]) -> dict[str, Any]:
    """What vidqa did for the request: the setting applied, tokens, phases (what ran, what was reused)."""
    return {
        "method": record["method"],
        "keep": record["keep"],
        "params": record["params"],
        **({"tokens": record["tokens"]} if "tokens" in record else {}),
        "frames": record["frames"]["count"],
        "visual_tokens": record["visual_tokens"],
        "timings": record["timings"],
        "skipped": record["skipped"],
        "prefix": record["prefix"],
        "cached": record["cached"],
        "warnings": record["warnings"],
    }


def openai_finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def completion(request_id: str, model: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": record["answer"]},
                "finish_reason": openai_finish_reason(record["finish_reason"]),
                "logprobs": None,
            }
        ],
        "usage": usage(record),
        "vidqa": applied(record),
    }


def chunk(
    request_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
