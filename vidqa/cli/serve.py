"""`vidqa serve`: keep one model loaded and answer OpenAI-style chat requests about videos over HTTP.

The web stack (FastAPI, uvicorn, httpx) is the optional extra `vidqa[serve]`; without it the command says
how to install it. The model loads before the port opens, so a client that can connect gets answers.
Ctrl-C / SIGTERM: queued requests are refused (503), the answer in progress finishes, then the server exits;
a second Ctrl-C exits at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidqa.cli.common import app, fail, load_engine
from vidqa.cli.options import (
    AttnOpt,
    CacheDirOpt,
    CacheOptions,
    CacheSizeOpt,
    DebugOpt,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    FpsOpt,
    FramesOpt,
    FullHashOpt,
    KeepOpt,
    MaxFramesOpt,
    MethodOpt,
    ModelOpt,
    ModelOptions,
    NoCacheOpt,
    ParamOpt,
    PresetOpt,
    RemoteCodeOpt,
    RevisionOpt,
    compression_from_flags,
    sampling_from_flags,
)
from vidqa.cli.output import Reporter
from vidqa.errors import UsageError
from vidqa.models import DEFAULT_MODEL

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    model: ModelOpt = DEFAULT_MODEL,
    host: Annotated[
        str,
        typer.Option(metavar="HOST", help="Address to listen on (localhost only unless told otherwise)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
    allow_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-dir",
            metavar="DIR",
            help="A folder whose videos requests may name by path or file:// URL (repeatable).",
        ),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Let requests name http(s):// videos for the server to fetch."),
    ] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="VIDQA_API_KEY",
            metavar="KEY",
            help="Require 'Authorization: Bearer KEY' on /v1/ (or set VIDQA_API_KEY).",
            show_envvar=True,
        ),
    ] = None,
    method: MethodOpt = None,
    keep: KeepOpt = None,
    preset: PresetOpt = None,
    param: ParamOpt = None,
    frames: FramesOpt = None,
    fps: FpsOpt = None,
    max_frames: MaxFramesOpt = None,
    max_tokens: Annotated[
        int,
        typer.Option("--max-tokens", metavar="N", help="Default and largest answer a request may ask for."),
    ] = 512,
    queue: Annotated[
        int,
        typer.Option("--queue", metavar="N", help="Requests that may wait; more get 503 with Retry-After."),
    ] = 16,
    max_upload: Annotated[
        str, typer.Option("--max-upload", metavar="SIZE", help="Largest data: URL video (e.g. 100MB, 1G).")
    ] = "100MiB",
    max_download: Annotated[
        str, typer.Option("--max-download", metavar="SIZE", help="Largest http(s):// video (--allow-remote).")
    ] = "500MiB",
    download_timeout: Annotated[
        float, typer.Option("--download-timeout", metavar="S", help="Time limit of one http(s):// download.")
    ] = 60.0,
    sessions: Annotated[
        int,
        typer.Option("--sessions", metavar="N", help="Videos kept ready (features and prefix) in memory."),
    ] = 4,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    attn: AttnOpt = "auto",
    device_map: DeviceMapOpt = None,
    revision: RevisionOpt = None,
    trust_remote_code: RemoteCodeOpt = False,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache_size: CacheSizeOpt = None,
    full_hash: FullHashOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Serve MODEL over HTTP: OpenAI chat completions with a video, compression chosen per request.

    One answer is generated at a time; up to --queue requests wait. Videos are read only from --allow-dir
    folders, data: URLs, and (with --allow-remote) http(s):// URLs. See docs/serve.md.
    """
    reporter = Reporter()
    try:
        modules = _web_stack()
        from vidqa.cache import parse_size
        from vidqa.server.app import ServerConfig, create_app
        from vidqa.server.sources import SourcePolicy

        if queue < 1 or sessions < 1 or max_tokens < 1:
            raise UsageError("--queue, --sessions and --max-tokens must be at least 1")
        compression = compression_from_flags(preset=preset, method=method, keep=keep, params=param)
        sampling = sampling_from_flags(frames=frames, fps=fps, max_frames=max_frames)
        policy = SourcePolicy(
            allow_dirs=tuple(_existing_dirs(allow_dir or [])),
            allow_remote=allow_remote,
            max_upload=parse_size(max_upload),
            max_download=parse_size(max_download),
            download_timeout=download_timeout,
        )
        if host not in LOCAL_HOSTS and not api_key:
            reporter.warning(
                f"listening on {host} without --api-key: anyone who can reach it may use the model"
            )
        options = ModelOptions(
            model=model, device=device, dtype=dtype, attn=attn, device_map=device_map, revision=revision,
            trust_remote_code=trust_remote_code,
        )  # fmt: skip
        cache = CacheOptions(directory=cache_dir, disabled=no_cache, size=cache_size, full_hash=full_hash)
        engine = load_engine(reporter, options, cache=cache.open(), full_hash=full_hash)
        engine.validate(compression)
        engine.settings(sampling, _generation(max_tokens))  # checks the sampling against the model
        config = ServerConfig(
            model_names=tuple(dict.fromkeys([model, engine.model_name])),
            compression=compression,
            sampling=sampling,
            max_tokens=max_tokens,
            policy=policy,
            api_key=api_key,
            queue_size=queue,
            sessions=sessions,
        )
        web_app = create_app(engine, config)
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc, reporter, debug=debug)
    reporter.note("serve", f"{model} on http://{_url_host(host)}:{port}/v1 (Ctrl-C to stop)")
    _run(modules, web_app, host=host, port=port, debug=debug)


def _web_stack() -> Any:
    """uvicorn, or a usage error saying how to install the extra."""
    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise UsageError(
            f"vidqa serve needs the web extra ({exc.name} is missing): pip install 'vidqa[serve]'"
        ) from None
    return uvicorn


def _run(uvicorn: Any, web_app: Any, *, host: str, port: int, debug: bool) -> None:
    """Run until Ctrl-C / SIGTERM: refuse what waits, finish the answer in progress, exit."""

    class Server(uvicorn.Server):  # type: ignore[misc,name-defined]
        def handle_exit(self, sig: int, frame: Any) -> None:
            web_app.state.worker.stop_accepting()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        web_app,
        host=host,
        port=port,
        log_level="debug" if debug else "warning",
        timeout_graceful_shutdown=None,
    )
    Server(config).run()


def _existing_dirs(folders: list[Path]) -> list[Path]:
    for folder in folders:
        if not folder.expanduser().is_dir():
            raise UsageError(f"--allow-dir {folder}: not a directory")
    return [folder.expanduser() for folder in folders]


def _generation(max_tokens: int) -> Any:
    from vidqa.settings import GenerationSettings

    return GenerationSettings(max_new_tokens=max_tokens)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
