"""`vidqa serve` live on localhost with tiny models, called through the official `openai` client and raw HTTP:
answers equal `vidqa ask`, per-request compression, multi-turn, concurrency, disconnects, every bad input,
path escapes, the API key, the queue bound, and a clean SIGTERM."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from vidqa.compress.registry import build_compression
from vidqa.models.base import Turn
from vidqa.server.app import ServerConfig, create_app
from vidqa.server.sources import SourcePolicy
from vidqa.settings import GenerationSettings, SamplingSettings

FRAMES = SamplingSettings(frames=4)
FAMILY = "qwen2_vl"  # its tiny model never ends an answer early: long answers for the disconnect tests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def live_server(engine: Any, **overrides: Any) -> Iterator[tuple[str, Any]]:
    """The app under uvicorn on a free localhost port, in a thread; yields (base URL, app)."""
    settings: dict[str, Any] = {"max_tokens": 64, **overrides}
    config = ServerConfig(
        model_names=("tiny", engine.model_name),
        compression=build_compression("vidcom2", keep=0.25),
        sampling=FRAMES,
        **settings,
    )
    app = create_app(engine, config)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> Path:
    """An allowed folder: the clip, a broken video, and a symlink that points outside."""
    root = tmp_path_factory.mktemp("allowed")
    shutil.copy(sample_clip, root / "clip.mp4")
    (root / "sub").mkdir()
    shutil.copy(sample_clip, root / "sub" / "again.mp4")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    outside = tmp_path_factory.mktemp("outside") / "secret.mp4"
    shutil.copy(sample_clip, outside)
    (root / "escape.mp4").symlink_to(outside)
    return root


@pytest.fixture(scope="module")
def server(engines: dict, videos: Path) -> Iterator[tuple[str, Any]]:
    with live_server(engines[FAMILY], policy=SourcePolicy(allow_dirs=(videos,)), max_tokens=900) as running:
        yield running


def client(base: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{base}/v1", api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs
    )


def messages(url: str, question: str, *history: tuple[str, str]) -> list[dict[str, Any]]:
    """The OpenAI form: the video in the first user message, earlier turns, then the question."""
    turns = [*history, (question, None)]
    out: list[dict[str, Any]] = []
    for index, (asked, answered) in enumerate(turns):
        text = {"type": "text", "text": asked}
        content = [{"type": "video_url", "video_url": {"url": url}}, text] if index == 0 else [text]
        out.append({"role": "user", "content": content})
        if answered is not None:
            out.append({"role": "assistant", "content": answered})
    return out


def answer_of(
    engines: dict, videos: Path, question: str, *, method: str = "vidcom2", keep: float | None = 0.25,
    params: dict | None = None, tokens: int = 6,
) -> Any:  # fmt: skip
    """What `vidqa ask` answers with the same settings (its Result)."""
    return engines[FAMILY].ask(
        videos / "clip.mp4",
        question,
        method=method,
        keep=keep,
        params=params,
        frames=4,
        max_new_tokens=tokens,
    )


def expected(engines: dict, videos: Path, question: str) -> str:
    return answer_of(engines, videos, question).answer


def post(base: str, body: Any, **kwargs: Any) -> httpx.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{base}/v1/chat/completions", content=data, timeout=60, **kwargs)


def status(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/health", timeout=10).json()


# -- answers ---------------------------------------------------------------------------------------------
def test_streamed_and_whole_answers_equal_vidqa_ask(server: tuple, engines: dict, videos: Path) -> None:
    base, _ = server
    api = client(base)
    whole = api.chat.completions.create(
        model="tiny", messages=messages("clip.mp4", "what happens?"), max_tokens=6
    )
    reference = answer_of(engines, videos, "what happens?")
    want = reference.answer
    assert whole.choices[0].message.content == want and whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 6
    assert whole.usage.prompt_tokens == reference.prompt_tokens  # counted after dropping
    applied = whole.model_extra["vidqa"]
    assert (applied["method"], applied["keep"]) == ("vidcom2", 0.25)  # the server's default
    stream = api.chat.completions.create(
        model="tiny", messages=messages("clip.mp4", "what happens?"), max_tokens=6, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_per_request_compression_is_applied_and_reported(server: tuple, engines: dict, videos: Path) -> None:
    base, _ = server
    api = client(base)
    for method, keep, params in (("none", 1.0, {}), ("vidcom2", 0.5, {}), ("dycoke", 0.5, {"layer": 1})):
        options = {"method": method, **({"keep": keep} if method != "none" else {}), "params": params}
        reply = api.chat.completions.create(
            model="tiny",
            messages=messages("clip.mp4", "who is there?"),
            max_tokens=6,
            extra_body={"vidqa": options},
        )
        applied = reply.model_extra["vidqa"]
        assert (applied["method"], applied["keep"]) == (method, keep)
        assert all(applied["params"][name] == value for name, value in params.items())
        keep_flag = keep if method != "none" else None
        same = answer_of(engines, videos, "who is there?", method=method, keep=keep_flag, params=params)
        assert reply.choices[0].message.content == same.answer
    reply = api.chat.completions.create(
        model="tiny", messages=messages("clip.mp4", "q"), max_tokens=2, extra_body={"vidqa": {"frames": 6}}
    )
    assert reply.model_extra["vidqa"]["frames"] == 6


def test_a_second_request_reuses_the_video_prefix(server: tuple) -> None:
    base, _ = server
    api = client(base)
    first = api.chat.completions.create(
        model="tiny",
        messages=messages("sub/again.mp4", "first?"),
        max_tokens=3,
        extra_body={"vidqa": {"keep": 0.75}},
    )
    second = api.chat.completions.create(
        model="tiny",
        messages=messages("sub/again.mp4", "second?"),
        max_tokens=3,
        extra_body={"vidqa": {"keep": 0.75}},
    )
    assert first.model_extra["vidqa"]["prefix"]["source"] == "read"
    assert second.model_extra["vidqa"]["prefix"]["source"] == "memory"
    assert second.model_extra["vidqa"]["skipped"] == ["decode", "vision", "compress", "prefix"]


def test_multi_turn_answers_like_a_session_with_that_history(
    server: tuple, engines: dict, videos: Path
) -> None:
    base, _ = server
    api = client(base)
    first = api.chat.completions.create(model="tiny", messages=messages("clip.mp4", "who?"), max_tokens=6)
    answer = first.choices[0].message.content
    follow = api.chat.completions.create(
        model="tiny", messages=messages("clip.mp4", "and then?", ("who?", answer)), max_tokens=6
    )
    session = engines[FAMILY].session(
        videos / "clip.mp4", build_compression("vidcom2", keep=0.25), sampling=FRAMES
    )
    want = session.ask(
        "and then?", history=[Turn("who?", answer)], generation=GenerationSettings(max_new_tokens=6)
    )
    assert follow.choices[0].message.content == want.answer
    assert (
        follow.model_extra["vidqa"]["prefix"]["source"] == "conversation"
    )  # continued from the first answer


def test_eight_concurrent_clients_are_all_answered(server: tuple, engines: dict, videos: Path) -> None:
    base, _ = server
    questions = [f"question number {index}?" for index in range(8)]

    def ask(question: str) -> str:
        reply = client(base).chat.completions.create(
            model="tiny", messages=messages("clip.mp4", question), max_tokens=6
        )
        return reply.choices[0].message.content or ""

    before = status(base)["answered"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, questions))
    assert answers == [expected(engines, videos, question) for question in questions]
    assert status(base)["answered"] == before + 8


def test_a_client_that_goes_away_stops_its_answer_not_the_others(server: tuple) -> None:
    base, _ = server
    before = status(base)
    body = {
        "model": "tiny",
        "messages": messages("clip.mp4", "a long story"),
        "max_tokens": 800,
        "stream": True,
    }
    other: dict[str, Any] = {}

    def patient() -> None:
        reply = client(base).chat.completions.create(
            model="tiny", messages=messages("clip.mp4", "q?"), max_tokens=4
        )
        other["answer"] = reply.choices[0].message.content

    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        waiting = threading.Thread(target=patient)
        waiting.start()  # queued behind the stream that is about to be dropped
        next(response.iter_lines())  # the first event, then hang up
    waiting.join(60)
    assert other.get("answer")
    deadline = time.monotonic() + 10
    while status(base)["cancelled"] == before["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = status(base)
    assert after["cancelled"] == before["cancelled"] + 1 and after["answered"] == before["answered"] + 1


# -- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        ([], 400, "JSON object"),
        ({"model": "tiny"}, 400, "messages"),
        ({"model": "tiny", "messages": messages("clip.mp4", "q"), "vidqa": {"bogus": 1}}, 400, "vidqa.bogus"),
        ({"model": "tiny", "messages": messages("clip.mp4", "q"), "vidqa": {"method": "nope"}}, 400, "nope"),
        ({"model": "tiny", "messages": messages("clip.mp4", "q"), "vidqa": {"keep": 7}}, 400, "keep"),
        ({"model": "tiny", "messages": messages("clip.mp4", "q"), "n": 2}, 400, "n is not supported"),
        ({"model": "tiny", "messages": messages("clip.mp4", "q"), "temperature": 9}, 400, "temperature"),
        ({"model": "tiny", "messages": messages("clip.mp4", "q"), "max_tokens": 100000}, 400, "at most 900"),
        ({"model": "other", "messages": messages("clip.mp4", "q")}, 404, "not served here"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "no video"}]}, 400, "video_url"),
        ({"model": "tiny", "messages": messages("broken.mp4", "q")}, 400, "broken.mp4"),
        ({"model": "tiny", "messages": messages("missing.mp4", "q")}, 400, "no such video"),
        ({"model": "tiny", "messages": messages("../outside.mp4", "q")}, 400, "not inside"),
        ({"model": "tiny", "messages": messages("escape.mp4", "q")}, 400, "not inside"),
        ({"model": "tiny", "messages": messages("/etc/hostname", "q")}, 400, "not inside"),
        ({"model": "tiny", "messages": messages("file:///etc/hostname", "q")}, 400, "not inside"),
        ({"model": "tiny", "messages": messages("ftp://host/v.mp4", "q")}, 400, "scheme"),
        ({"model": "tiny", "messages": messages("https://example.com/v.mp4", "q")}, 400, "--allow-remote"),
        (
            {"model": "tiny", "messages": messages("data:text/plain;base64,aGk=", "q")},
            400,
            "must hold a video",
        ),
        ({"model": "tiny", "messages": messages("data:video/mp4;base64,!!!", "q")}, 400, "base64"),
    ],
)
def test_bad_input_gets_its_status_and_the_server_keeps_serving(
    server: tuple, videos: Path, body: Any, code: int, needle: str
) -> None:
    base, _ = server
    response = post(base, body)
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert needle in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert str(videos) not in response.text and "secret" not in response.text  # no server path leaks
    good = post(base, {"model": "tiny", "messages": messages("clip.mp4", "still there?"), "max_tokens": 2})
    assert good.status_code == 200


def test_an_over_long_prompt_is_a_400(engines: dict, videos: Path) -> None:
    with live_server(engines[FAMILY], policy=SourcePolicy(allow_dirs=(videos,)), max_tokens=5000) as (
        base,
        _,
    ):
        response = post(base, {"model": "tiny", "messages": messages("clip.mp4", "q"), "max_tokens": 5000})
        assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"


def test_uploads_and_downloads_within_their_caps(engines: dict, videos: Path, tmp_path: Path) -> None:
    data = (videos / "clip.mp4").read_bytes()
    upload = f"data:video/mp4;base64,{base64.b64encode(data).decode()}"
    handler = _quiet_files(videos)
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as files:
        threading.Thread(target=files.serve_forever, daemon=True).start()
        remote = f"http://127.0.0.1:{files.server_address[1]}"
        policy = SourcePolicy(allow_remote=True, max_upload=len(data) + 10, max_download=len(data) + 10)
        with live_server(engines[FAMILY], policy=policy) as (base, _):
            for url in (upload, f"{remote}/clip.mp4"):
                response = post(base, {"model": "tiny", "messages": messages(url, "q"), "max_tokens": 3})
                assert response.status_code == 200, response.text
            missing = post(base, {"model": "tiny", "messages": messages(f"{remote}/nope.mp4", "q")})
            assert missing.status_code == 400 and "HTTP 404" in missing.text
            local = post(base, {"model": "tiny", "messages": messages("clip.mp4", "q")})
            assert local.status_code == 400 and "--allow-dir" in local.text
        small = SourcePolicy(allow_remote=True, max_upload=len(data) // 2, max_download=len(data) // 2)
        with live_server(engines[FAMILY], policy=small) as (base, _):
            for url in (upload, f"{remote}/clip.mp4"):
                response = post(base, {"model": "tiny", "messages": messages(url, "q")})
                assert response.status_code == 413, response.text
        files.shutdown()


def _quiet_files(root: Path) -> type:
    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    return Files


def test_a_body_over_the_cap_is_refused_before_it_is_read(engines: dict, videos: Path) -> None:
    policy = SourcePolicy(allow_dirs=(videos,), max_upload=1000)
    with live_server(engines[FAMILY], policy=policy) as (base, _):
        response = post(base, b"{" + b" " * 3 * 2**20 + b"}")
        assert response.status_code == 413
        assert (
            post(base, {"model": "tiny", "messages": messages("clip.mp4", "q"), "max_tokens": 2}).status_code
            == 200
        )


def test_the_api_key_is_enforced(engines: dict, videos: Path) -> None:
    with live_server(engines[FAMILY], policy=SourcePolicy(allow_dirs=(videos,)), api_key="s3cret") as (
        base,
        _,
    ):
        with pytest.raises(openai.AuthenticationError):
            client(base, api_key="wrong").models.list()
        assert httpx.get(f"{base}/v1/models").status_code == 401
        assert [m.id for m in client(base, api_key="s3cret").models.list()] == ["tiny"]
        assert httpx.get(f"{base}/health").status_code == 200  # liveness needs no key


def test_a_full_queue_answers_503_with_retry_after(engines: dict, videos: Path) -> None:
    with live_server(engines[FAMILY], policy=SourcePolicy(allow_dirs=(videos,)), queue_size=1) as (base, app):
        worker = app.state.worker
        gate = threading.Event()
        real = worker._answer
        worker._answer = lambda job: (gate.wait(30), real(job))  # hold the model's thread
        body = {"model": "tiny", "messages": messages("clip.mp4", "q"), "max_tokens": 2}
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(post, base, body)
            _wait_for(lambda: status(base)["busy"])
            queued = pool.submit(post, base, body)
            _wait_for(lambda: status(base)["queued"] == 1)
            refused = post(base, body)
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["code"] == "queue_full"
            gate.set()
            assert running.result().status_code == queued.result().status_code == 200


def _wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_sigterm_finishes_the_answer_in_progress_then_exits(tiny_checkpoints: dict, videos: Path) -> None:
    port = _free_port()
    model = str(tiny_checkpoints[FAMILY])
    command = [sys.executable, "-m", "vidqa", "serve", "--model", model, "--device", "cpu", "--frames", "4"]
    command += ["--allow-dir", str(videos), "--port", str(port), "--no-cache", "--max-tokens", "800"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy()
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _up(base), timeout=90)
        body = {"model": model, "messages": messages("clip.mp4", "story"), "max_tokens": 800, "stream": True}
        lines: list[str] = []
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as response:
            stream = response.iter_lines()
            lines.append(next(stream))
            process.send_signal(signal.SIGTERM)
            lines.extend(stream)
        lines = [line for line in lines if line]
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        assert lines[-1] == "data: [DONE]" and events[-1]["choices"][0]["finish_reason"] == "length"
        # uvicorn re-raises the signal once shut down, so the exit status says how it ended (143 in a shell)
        assert process.wait(timeout=60) in (-signal.SIGTERM, 128 + signal.SIGTERM)
        assert process.stdout is not None and b"Traceback" not in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
