"""Model loading: cache first, a quick hub probe before any download, resumed downloads, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx2
import pytest
import torch
from huggingface_hub import errors as hub

import vidqa.models.loading as loading
from vidqa.errors import ModelLoadError


def _hub_cache(hf_home: Path, checkpoint: Path, repo: str, *, keep: set[str]) -> Path:
    """A hub cache snapshot of `checkpoint` holding only the files in `keep` (an interrupted download)."""
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    for path in checkpoint.iterdir():
        if path.name in keep:
            shutil.copy(path, snapshot / path.name)
    return snapshot


def test_a_cached_model_loads_without_the_network(
    tiny_checkpoints: dict[str, Path], hermetic_hf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tiny_checkpoints["qwen2_vl"]
    _hub_cache(hermetic_hf_env, checkpoint, "org/whole", keep={p.name for p in checkpoint.iterdir()})
    monkeypatch.setattr(loading, "hub_reachable", lambda **_: pytest.fail("the hub was asked"))
    adapter = loading.load_adapter("org/whole", device=torch.device("cpu"), dtype=torch.float32, attn="sdpa")
    assert adapter.identity == f"hub:org/whole@{'0' * 40}"  # the snapshot commit, not "main"


def test_an_interrupted_download_resumes_online(
    tiny_checkpoints: dict[str, Path], hermetic_hf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Config cached, weights not: the local attempt fails, the hub answers, the load goes online."""
    checkpoint = tiny_checkpoints["qwen2_vl"]
    _hub_cache(hermetic_hf_env, checkpoint, "org/partial", keep={"config.json"})
    calls: list[dict[str, Any]] = []
    real_load = loading._load

    def recording_load(source: str, options: dict[str, Any], **kwargs: Any) -> Any:
        calls.append(dict(options))
        if not options.get("local_files_only"):  # "online": the download completes into the cache
            return real_load(str(checkpoint), {**options, "revision": None}, **kwargs)
        return real_load(source, options, **kwargs)

    monkeypatch.setattr(loading, "_load", recording_load)
    monkeypatch.setattr(loading, "hub_reachable", lambda **_: True)
    adapter = loading.load_adapter(
        "org/partial", device=torch.device("cpu"), dtype=torch.float32, attn="sdpa"
    )
    assert [call.get("local_files_only", False) for call in calls] == [True, False]
    assert adapter.model is not None


def test_an_unreachable_hub_is_one_error_without_retries(
    tiny_checkpoints: dict[str, Path], hermetic_hf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hub_cache(hermetic_hf_env, tiny_checkpoints["qwen2_vl"], "org/missing-weights", keep={"config.json"})
    probes: list[float] = []

    def probe(timeout: float = loading.HUB_PROBE_TIMEOUT) -> bool:
        probes.append(timeout)
        return False

    monkeypatch.setattr(loading, "hub_reachable", probe)
    with pytest.raises(
        ModelLoadError, match=r"not \(fully\) in the local cache and the hub cannot be reached"
    ):
        loading.load_adapter(
            "org/missing-weights", device=torch.device("cpu"), dtype=torch.float32, attn="sdpa"
        )
    assert (
        probes == [loading.HUB_PROBE_TIMEOUT] and loading.HUB_PROBE_TIMEOUT <= 5
    )  # one short probe, no download


def test_hub_probe_is_one_short_request(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    seen: list[dict[str, Any]] = []

    class Session:
        def head(self, url: str, **kwargs: Any) -> None:
            seen.append({"url": url, **kwargs})
            raise httpx2.ConnectError("no route")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_session", lambda: Session())
    assert loading.hub_reachable() is False
    assert seen == [{"url": constants.ENDPOINT, "timeout": loading.HUB_PROBE_TIMEOUT}]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert loading.hub_reachable() is False and len(seen) == 1  # offline mode: not even a probe


def _http_error(kind: type[Exception]) -> Exception:
    request = httpx2.Request("GET", "https://huggingface.co/org/m/resolve/main/config.json")
    return kind("hub said no", response=httpx2.Response(401, request=request))


@pytest.mark.parametrize(
    ("cause", "message"),
    [
        (_http_error(hub.GatedRepoError), "is gated: accept its licence"),
        (_http_error(hub.RevisionNotFoundError), "no such revision"),
        (_http_error(hub.RepositoryNotFoundError), "not found on the hub"),
        (hub.LocalEntryNotFoundError("gone"), "cannot be reached"),
        (ValueError("weird"), "cannot load model 'm' (org/m): weird"),
    ],
)
def test_hub_errors_are_recognised_by_type(cause: Exception, message: str) -> None:
    try:
        try:
            raise cause
        except Exception as inner:
            raise OSError("transformers' wording, which changes between releases") from inner
    except OSError as wrapped:
        error = loading._load_error("m", "org/m", wrapped if not isinstance(cause, ValueError) else cause)
    assert message in str(error)


def test_weights_go_straight_to_the_target_device(
    tiny_checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    from transformers import AutoModelForImageTextToText

    real = AutoModelForImageTextToText.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        kwargs.pop("device_map", None)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)

    class SecondGpu:
        type = "cuda"

        def __str__(self) -> str:
            return "cuda:1"

    loading.load_adapter(
        str(tiny_checkpoints["qwen2_vl"]),
        device=SecondGpu(),  # type: ignore[arg-type]
        dtype=torch.float32,
        attn="sdpa",
    )
    assert seen["device_map"] == {"": "cuda:1"}  # loaded onto the GPU, no host-RAM copy


def test_flash_attention_falls_back_where_a_family_cannot_run_it(tiny_checkpoints: dict[str, Path]) -> None:
    from transformers import AutoConfig

    gemma = AutoConfig.from_pretrained(tiny_checkpoints["gemma4"])
    qwen = AutoConfig.from_pretrained(tiny_checkpoints["qwen3_5"])
    assert loading._attention_for(gemma, "flash_attention_2", chosen_by_auto=True) == "sdpa"
    assert loading._attention_for(qwen, "flash_attention_2", chosen_by_auto=True) == "flash_attention_2"
    assert loading._attention_for(gemma, "sdpa", chosen_by_auto=False) == "sdpa"
    with pytest.raises(ModelLoadError, match="gemma4 models do not support flash_attention_2"):
        loading._attention_for(gemma, "flash_attention_2", chosen_by_auto=False)
