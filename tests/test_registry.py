"""The method registry: built-ins through it, a new method added as one module, reachable everywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.toy_method import METHOD as STRIDE
from vidqa.cli import app
from vidqa.compress import METHOD_MODULES, build_compression, get_method, method_names, register_method
from vidqa.compress.registry import unregister_method
from vidqa.errors import UsageError


@pytest.fixture()
def stride() -> Iterator[None]:
    register_method(STRIDE)
    yield
    unregister_method("stride")


def test_built_ins_register_through_the_same_contract() -> None:
    assert method_names()[:5] == ["none", "vidcom2", "dycoke", "vcast", "fastvid"] == list(METHOD_MODULES)
    for name in METHOD_MODULES:
        method = get_method(name)
        assert method.name == name and method.summary and method.Params().model_dump() is not None
        assert build_compression(name, keep=1.0).is_identity  # keep 1: no compression, every method


def test_a_new_method_is_one_module(
    stride: None, engines: dict, tiny_checkpoints: dict[str, Path], sample_clip: Path
) -> None:
    engine = engines["qwen2_vl"]
    result = engine.ask(sample_clip, "what happens?", method="stride", keep=0.25, frames=4, max_new_tokens=2)
    assert result.method == "stride" and result.params == {"stride": 4} and result.keep == 0.25
    assert result.visual_kept * 4 == result.visual_total
    report = engine.inspect(sample_clip, method="stride", params={"stride": 2}, frames=4)
    m = report.tokens_per_frame
    assert report.scores == {"tokens": [float(len(range(0, m, 2)))] * 2}
    assert report.kept_indices[0] == list(range(0, m, 2))

    cli = CliRunner().invoke(
        app,
        ["ask", str(sample_clip), "q", "--model", str(tiny_checkpoints["qwen2_vl"]), "--device", "cpu",
         "--frames", "4", "--max-new-tokens", "2", "--method", "stride", "-p", "stride=4", "--json"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.stderr
    tokens = json.loads(cli.stdout)["visual_tokens"]
    assert tokens == {"total": 2 * m, "kept": 2 * len(range(0, m, 4))}
    listing = CliRunner().invoke(app, ["methods", "--json"])
    stride_entry = next(entry for entry in json.loads(listing.stdout) if entry["name"] == "stride")
    assert stride_entry["params"] == [
        {
            "name": "stride",
            "type": "int",
            "default": 2,
            "range": "[1, inf)",
            "help": "keep one token in every `stride`",
        }
    ]


def test_plug_ins_cannot_shadow_built_ins() -> None:
    class Fake(type(STRIDE)):  # type: ignore[misc]
        name = "vidcom2"

    with pytest.raises(ValueError, match="built-in"):
        register_method(Fake())
    with pytest.raises(UsageError, match="unknown method 'stride'"):
        get_method("stride")  # registered only inside the fixture
