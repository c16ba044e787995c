"""Where a request's video comes from, checked before anything reads it.

- a plain path or `file://` URL: only inside an `--allow-dir` (none by default). The path is resolved with
  every symlink and `..` followed *before* the check, so neither can lead outside; relative paths are taken
  from the first allowed directory. Whether a path outside exists is never revealed (same answer).
- `data:video/...;base64,...`: decoded up to `max_upload` bytes.
- `http(s)://`: only with `--allow-remote`, downloaded with a size cap and a time limit.

Uploaded and downloaded videos are kept in a private temporary folder, named by their content digest (the
same clip sent twice is one file, and its features and prefix are reused), bounded in size, removed when
the server stops. Error messages name what the client sent, never a path of the server's machine.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from vidqa.server.protocol import ApiError, bad_request

_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,", re.ASCII)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class VideoSource:
    """A video ready to read: the local file, and how the client named it (used in every message)."""

    path: Path
    label: str


@dataclass(frozen=True)
class SourcePolicy:
    allow_dirs: tuple[Path, ...] = ()
    allow_remote: bool = False
    max_upload: int = 100 * 2**20
    max_download: int = 500 * 2**20
    download_timeout: float = 60.0


class VideoSources:
    """Resolves video references under a `SourcePolicy`; owns the temporary folder of received videos."""

    def __init__(self, policy: SourcePolicy, *, store_bytes: int | None = None) -> None:
        self.policy = policy
        self.roots = tuple(Path(d).expanduser().resolve(strict=True) for d in policy.allow_dirs)
        self.folder = Path(tempfile.mkdtemp(prefix="vidqa-serve-"))
        self.store_bytes = store_bytes or max(4 * policy.max_upload, 2**30)
        self._lock = threading.Lock()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    async def resolve(self, url: str) -> VideoSource:
        label = url if len(url) <= 120 else url[:60] + "…"  # a data URL is not repeated in full
        if url.startswith("data:"):
            return self._from_data(url, label)
        scheme = urlparse(url).scheme.lower()
        if scheme in ("http", "https"):
            return await self._download(url, label)
        if scheme == "file":
            return self._local(_file_url_path(url), label)
        if scheme and len(scheme) > 1:  # "c:" would be a drive letter, not a scheme
            raise bad_request(
                f"unsupported video URL scheme {scheme!r}: use a path, file://, data: or http(s)://"
            )
        return self._local(url, label)

    # -- local files --------------------------------------------------------------------------------------
    def _local(self, path_text: str, label: str) -> VideoSource:
        if not self.roots:
            raise bad_request(
                "local files are not served: start the server with --allow-dir DIR", code="local_files_off"
            )
        path = Path(path_text).expanduser()
        if not path.is_absolute():
            path = self.roots[0] / path
        try:
            resolved = path.resolve(strict=False)
        except (OSError, RuntimeError):  # a symlink loop
            resolved = None
        if resolved is None or not any(resolved.is_relative_to(root) for root in self.roots):
            raise bad_request(
                f"{label}: not inside a directory this server may read", code="path_not_allowed"
            )
        if not resolved.is_file():
            raise bad_request(f"{label}: no such video file", code="video_not_found")
        return VideoSource(resolved, label)

    # -- uploads and downloads ----------------------------------------------------------------------------
    def _from_data(self, url: str, label: str) -> VideoSource:
        match = _DATA_URL.match(url)
        if match is None:
            raise bad_request("a data URL must be data:video/<type>;base64,<data>")
        media = (match.group("type") or "").lower()
        if not (media.startswith("video/") or media == "application/octet-stream"):
            raise bad_request(f"a data URL must hold a video (got {media or 'no media type'})")
        payload = url[match.end() :]
        if len(payload) * 3 // 4 > self.policy.max_upload:
            raise _too_large("the uploaded video", self.policy.max_upload)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("the data URL is not valid base64") from None
        return VideoSource(self._store(data, _suffix(media)), "the uploaded video")

    async def _download(self, url: str, label: str) -> VideoSource:
        if not self.policy.allow_remote:
            raise bad_request(
                "remote videos are not fetched: start the server with --allow-remote", code="remote_off"
            )
        import httpx

        cap, data = self.policy.max_download, bytearray()
        try:
            async with (
                httpx.AsyncClient(
                    follow_redirects=True, max_redirects=5, timeout=self.policy.download_timeout
                ) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise bad_request(f"{label}: download failed (HTTP {response.status_code})")
                async for piece in response.aiter_bytes(_CHUNK):
                    data += piece
                    if len(data) > cap:
                        raise _too_large(label, cap)
        except httpx.TimeoutException:
            raise bad_request(
                f"{label}: download timed out after {self.policy.download_timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise bad_request(f"{label}: download failed ({type(exc).__name__})") from None
        suffix = Path(urlparse(url).path).suffix.lower()
        return VideoSource(
            self._store(bytes(data), suffix if re.fullmatch(r"\.\w{1,5}", suffix) else ".mp4"), label
        )

    def _store(self, data: bytes, suffix: str) -> Path:
        """Keep received bytes under their digest; drop the oldest files beyond the folder's bound."""
        path = self.folder / f"{hashlib.sha256(data).hexdigest()}{suffix}"
        with self._lock:
            if not path.exists():
                tmp = path.with_name(path.name + ".part")
                tmp.write_bytes(data)
                os.replace(tmp, path)
            os.utime(path)
            files = sorted(self.folder.glob("*"), key=lambda f: f.stat().st_mtime)
            total = sum(f.stat().st_size for f in files)
            for old in files:
                if total <= self.store_bytes or old == path:
                    continue
                total -= old.stat().st_size
                with contextlib.suppress(OSError):
                    old.unlink()
        return path


def _file_url_path(url: str) -> str:
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise bad_request("file:// URLs must name a local path (file:///path)")
    return unquote(parsed.path)


def _suffix(media: str) -> str:
    subtype = media.split("/", 1)[-1]
    return {"quicktime": ".mov", "x-matroska": ".mkv", "x-msvideo": ".avi"}.get(
        subtype, f".{subtype}" if subtype.isalnum() else ".mp4"
    )


def _too_large(what: str, cap: int) -> ApiError:
    return ApiError(
        413, f"{what} is larger than this server accepts ({cap / 2**20:.0f} MiB)", code="video_too_large"
    )
