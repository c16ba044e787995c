"""Tests for the on-disk feature cache: round trips, keys, damage recovery, LRU bound, concurrent writers."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import vidqa.cache
from vidqa.cache import (
    META_FILE,
    TENSORS_FILE,
    CacheInfo,
    FeatureCache,
    cache_key,
    default_cache_dir,
    parse_size,
)
from vidqa.errors import CacheError, UsageError


def _entry_dir(cache: FeatureCache, key: str) -> Path:
    return cache.directory / key[:2] / key


def _payload(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """A small entry whose contents are a function of `seed` (same byte size for every seed)."""
    tensors = {"x": torch.arange(64, dtype=torch.float32) + seed}  # x: (64,)
    return tensors, {"seed": seed}


def _files_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


# ---- round trip -----------------------------------------------------------------------------------


def test_round_trip_keeps_dtypes_shapes_values_and_nested_meta(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "features": torch.randn(4, 6, 8, generator=gen),  # (T, M, D) float32
        "deepstack": torch.randn(3, 24, 8, generator=gen).to(torch.bfloat16),  # (levels, N, D)
        "grid_thw": torch.tensor([[2, 4, 6], [2, 4, 6]], dtype=torch.int64),
        "transposed": torch.randn(5, 7, generator=gen).t(),  # non-contiguous input
        "scalar": torch.tensor(3.5),
        "mask": torch.tensor([True, False, True]),
    }
    meta = {"frames": {"count": 4, "times": [0.0, 0.5, 1.0, 1.5]}, "model": "m", "flags": [True, None, 2]}
    key = cache_key(video="abc", frames=4)
    cache.put(key, tensors, meta)

    hit = cache.get(key)
    assert hit is not None
    got, got_meta = hit
    assert got_meta == meta
    assert set(got) == set(tensors)
    for name, expected in tensors.items():
        assert got[name].dtype == expected.dtype, name
        assert got[name].device.type == "cpu"
        assert got[name].is_contiguous()
        assert torch.equal(got[name], expected), name


def test_stored_copy_is_independent_of_caller_tensor(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    source = torch.zeros(3)
    cache.put("k1", {"a": source}, {})
    source.fill_(7.0)
    hit = cache.get("k1")
    assert hit is not None
    assert torch.equal(hit[0]["a"], torch.zeros(3))


def test_miss_returns_none(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("present", *_payload(1))
    assert cache.get("absent") is None
    assert FeatureCache(tmp_path / "never-created", max_bytes=0).get("absent") is None


def test_put_existing_key_keeps_the_first_entry(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("same", *_payload(1))
    cache.put("same", *_payload(2))
    hit = cache.get("same")
    assert hit is not None
    assert hit[1] == {"seed": 1}
    assert cache.info().entries == 1


@pytest.mark.parametrize("key", ["", "a", "../escape", "has space", ".hidden", "x" * 129])
def test_invalid_key_is_rejected(tmp_path: Path, key: str) -> None:
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match="cache key"):
        cache.get(key)
    with pytest.raises(ValueError, match="cache key"):
        cache.put(key, *_payload(0))


def test_put_rejects_non_tensors_and_non_json_meta(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        cache.put("k1", {"a": [1, 2]}, {})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="JSON"):
        cache.put("k1", {"a": torch.zeros(1)}, {"bad": object()})
    assert cache.info().entries == 0
    assert list(cache.directory.iterdir()) == []


# ---- keys and digests -----------------------------------------------------------------------------


def test_cache_key_is_order_independent_and_value_sensitive() -> None:
    base = cache_key(a=1, b="x")
    assert base == cache_key(b="x", a=1)
    assert len(base) == 64
    int(base, 16)  # hex
    assert base != cache_key(a=2, b="x")
    assert base != cache_key(a=1, b="y")
    assert base != cache_key(a=1, b="x", c=None)
    assert base != cache_key(c=1, b="x")
    assert cache_key(keep=0.25) != cache_key(keep=0.5)
    assert cache_key(v=True) != cache_key(v=1)
    assert cache_key(size=(2, 3)) == cache_key(size=[2, 3])
    with pytest.raises(TypeError, match="JSON"):
        cache_key(x=object())  # type: ignore[arg-type]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "vidqa" / "features"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # ignored, per the XDG spec
    assert default_cache_dir() == Path.home() / ".cache" / "vidqa" / "features"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "vidqa" / "features"


# ---- damaged entries ------------------------------------------------------------------------------


def _truncate(entry: Path) -> None:
    data = (entry / TENSORS_FILE).read_bytes()
    (entry / TENSORS_FILE).write_bytes(data[: len(data) // 2])


def _flip_byte(entry: Path) -> None:
    data = bytearray((entry / TENSORS_FILE).read_bytes())
    data[-1] ^= 0xFF  # same size, different content: only the checksum can tell
    (entry / TENSORS_FILE).write_bytes(bytes(data))


def _garbage_json(entry: Path) -> None:
    (entry / META_FILE).write_bytes(b"{not json\xff")


def _other_format(entry: Path) -> None:
    sidecar = json.loads((entry / META_FILE).read_text())
    sidecar["format"] = 999
    (entry / META_FILE).write_text(json.dumps(sidecar))


def _lie_about_shape(entry: Path) -> None:
    sidecar = json.loads((entry / META_FILE).read_text())
    sidecar["tensors"]["x"]["shape"] = [8, 8]
    (entry / META_FILE).write_text(json.dumps(sidecar))


def _drop_tensors(entry: Path) -> None:
    (entry / TENSORS_FILE).unlink()


def _drop_meta(entry: Path) -> None:
    (entry / META_FILE).unlink()


@pytest.mark.parametrize(
    "damage",
    [_truncate, _flip_byte, _garbage_json, _other_format, _lie_about_shape, _drop_tensors, _drop_meta],
)
def test_damaged_entry_is_a_miss_and_is_removed(tmp_path: Path, damage) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("victim", *_payload(5))
    cache.put("bystander", *_payload(6))
    damage(_entry_dir(cache, "victim"))

    assert cache.get("victim") is None
    assert not _entry_dir(cache, "victim").exists()
    assert cache.get("bystander") is not None
    cache.put("victim", *_payload(5))
    hit = cache.get("victim")
    assert hit is not None
    assert torch.equal(hit[0]["x"], _payload(5)[0]["x"])


# ---- bound and LRU --------------------------------------------------------------------------------


def _entry_size(tmp_path: Path) -> int:
    probe = FeatureCache(tmp_path / "probe")
    probe.put("size-probe", *_payload(0))
    return probe.info().size_bytes


def test_lru_eviction_respects_access_order(tmp_path: Path) -> None:
    size = _entry_size(tmp_path)
    cache = FeatureCache(tmp_path / "c", max_bytes=3 * size + size // 2)  # room for three
    for i, key in enumerate(["ka", "kb", "kc"]):
        cache.put(key, *_payload(i))
    assert cache.get("ka") is not None  # refresh: kb is now the least recently used
    cache.put("kd", *_payload(3))
    assert {k for k in ["ka", "kb", "kc", "kd"] if _entry_dir(cache, k).exists()} == {"ka", "kc", "kd"}
    assert cache.get("kc") is not None  # now ka is the oldest
    cache.put("ke", *_payload(4))
    assert {k for k in ["ka", "kc", "kd", "ke"] if _entry_dir(cache, k).exists()} == {"kc", "kd", "ke"}


def test_bound_holds_after_every_put(tmp_path: Path) -> None:
    size = _entry_size(tmp_path)
    bound = 5 * size + size // 2
    cache = FeatureCache(tmp_path / "c", max_bytes=bound)
    for i in range(12):
        cache.put(f"key{i:02d}", *_payload(i))
        info = cache.info()
        assert info.size_bytes <= bound
        assert info.size_bytes == _files_size(cache.directory)
        assert cache.get(f"key{i:02d}") is not None  # never evicts what it just wrote
    assert cache.info().entries == 5


def test_new_entry_survives_even_when_others_look_newer(tmp_path: Path) -> None:
    size = _entry_size(tmp_path)
    cache = FeatureCache(tmp_path / "c", max_bytes=size + size // 2)  # room for one
    cache.put("future", *_payload(1))
    later = time.time_ns() + 3600 * 10**9  # clock skew, e.g. written by another host
    os.utime(_entry_dir(cache, "future") / META_FILE, ns=(later, later))
    cache.put("fresh", *_payload(2))
    assert cache.get("fresh") is not None
    assert cache.get("future") is None


def test_entry_larger_than_bound_is_not_stored_and_evicts_nothing(tmp_path: Path) -> None:
    size = _entry_size(tmp_path)
    cache = FeatureCache(tmp_path / "c", max_bytes=2 * size)
    cache.put("small", *_payload(1))
    cache.put("huge", {"x": torch.zeros(10_000)}, {})
    assert cache.get("huge") is None
    assert cache.get("small") is not None
    assert cache.info().entries == 1


def test_max_bytes_zero_stores_nothing(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "off", max_bytes=0)
    cache.put("k1", *_payload(1))
    assert cache.get("k1") is None
    assert cache.info() == CacheInfo(tmp_path / "off", 0, 0, 0)
    assert not (tmp_path / "off").exists()


def test_negative_bound_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        FeatureCache(tmp_path, max_bytes=-1)


def test_info_and_clear(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c", max_bytes=12345)
    assert cache.info() == CacheInfo(tmp_path / "c", 0, 0, 12345)
    for i in range(3):
        cache.put(f"entry{i}", *_payload(i))
    info = cache.info()
    assert info.entries == 3
    assert info.size_bytes == _files_size(cache.directory) > 0
    assert cache.clear() == 3
    assert cache.info().entries == 0
    assert cache.info().size_bytes == 0
    assert cache.clear() == 0
    assert all(cache.get(f"entry{i}") is None for i in range(3))


def test_stale_temp_dirs_are_cleaned_on_put(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    shard = tmp_path / "ab"
    old, fresh = shard / ".tmp-abc-old", shard / ".tmp-abc-fresh"
    for d in (old, fresh):
        d.mkdir(parents=True)
        (d / TENSORS_FILE).write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert cache.info().entries == 0  # temp dirs are not entries
    cache.put("abcd", *_payload(1))
    assert not old.exists()
    assert fresh.exists()  # may belong to a live writer
    assert cache.info().entries == 1


# ---- errors ---------------------------------------------------------------------------------------


def test_unwritable_directory_is_cache_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    target = blocker / "features"  # works even as root, unlike chmod
    with pytest.raises(CacheError) as excinfo:
        FeatureCache(target)
    message = str(excinfo.value)
    assert str(target) in message
    assert "\n" not in message


def test_put_into_blocked_shard_is_cache_error(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    (cache.directory / "kx").write_text("a file where the shard directory should be")
    with pytest.raises(CacheError, match=re.escape(str(cache.directory))):
        cache.put("kx-entry", *_payload(1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),
        ("2G", 2 * 1024**3),
        ("2g", 2 * 1024**3),
        ("500MB", 500 * 1000**2),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("10k", 10 * 1024),
        (" 3 mb ", 3 * 1000**2),
        ("0.5KiB", 512),
        ("0.1KB", 100),
        ("1T", 1024**4),
        ("7B", 7),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "G", "-1G", "1.2.3", "5 XB", "nan", "inf", "1e9", "2 G B"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(UsageError, match="invalid size"):
        parse_size(text)


# ---- concurrency ----------------------------------------------------------------------------------
# Two processes (this one and a child running this file as a script) each put N shared names (the other
# process puts the same keys) and N names of their own into an unbounded cache and a tightly bounded one,
# reading random earlier names back in between, so publishing races publishing and eviction races
# reading. Contents are a pure function of the name, so any mix-up shows.

_SMALL_BOUND = 12_000  # holds a handful of the ~0.9 kB entries below, so the small cache evicts constantly


def _shared_payload(name: str) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    seed = int(cache_key(name=name)[:5], 16)
    x = torch.arange(128, dtype=torch.float32) + seed  # x: (128,)
    g = torch.full((4, 8), float(seed % 251), dtype=torch.bfloat16)  # g: (4, 8)
    return {"x": x, "g": g}, {"name": name, "seed": seed}


def _check_hit(name: str, hit: tuple[dict[str, torch.Tensor], dict[str, object]] | None) -> None:
    assert hit is not None, name
    tensors, meta = hit
    want_tensors, want_meta = _shared_payload(name)
    assert meta == want_meta, name
    assert set(tensors) == set(want_tensors), name
    assert all(torch.equal(tensors[k], want_tensors[k]) for k in want_tensors), name


def _race(root: Path, who: str, n: int) -> None:
    """One process's share of the race; waits for the `go` file so both start together."""
    big = FeatureCache(root / "big", max_bytes=1 << 30)
    small = FeatureCache(root / "small", max_bytes=_SMALL_BOUND)
    (root / f"ready-{who}").touch()
    while not (root / "go").exists():
        time.sleep(0.002)
    rng, names = random.Random(who), []
    for i in range(n):
        for name in (f"shared-{i}", f"{who}-{i}"):
            for cache in (big, small):
                cache.put(cache_key(name=name), *_shared_payload(name))
            names.append(name)
            _check_hit(name, big.get(cache_key(name=name)))  # the other process may be writing it right now
            probe = rng.choice(names)
            _check_hit(probe, big.get(cache_key(name=probe)))
            small_hit = small.get(cache_key(name=probe))  # may have been evicted: a miss is fine
            if small_hit is not None:
                _check_hit(probe, small_hit)


def test_losing_a_publish_race_is_silent_and_keeps_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, rival = FeatureCache(tmp_path), FeatureCache(tmp_path)
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp_then_rival_publishes(*args: object, **kwargs: object) -> str:
        tmp = real_mkdtemp(*args, **kwargs)  # type: ignore[call-overload]
        monkeypatch.setattr(tempfile, "mkdtemp", real_mkdtemp)
        rival.put("contested", *_payload(2))  # wins while our copy is still being written
        return tmp

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_then_rival_publishes)
    cache.put("contested", *_payload(1))
    hit = cache.get("contested")
    assert hit is not None
    assert hit[1] == {"seed": 2}
    assert sorted(p.name for p in (tmp_path / "co").iterdir()) == ["contested"]  # our temp dir is gone


def test_entry_vanishing_during_read_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, other = FeatureCache(tmp_path), FeatureCache(tmp_path)
    cache.put("going", *_payload(1))
    real_read_sidecar = vidqa.cache._read_sidecar

    def read_then_evicted(path: Path, key: str) -> dict[str, object]:
        sidecar = real_read_sidecar(path, key)
        assert other.clear() == 1  # another process evicts between our two reads
        return sidecar

    monkeypatch.setattr(vidqa.cache, "_read_sidecar", read_then_evicted)
    assert cache.get("going") is None


def test_two_processes_writing_concurrently_leave_only_valid_entries(tmp_path: Path) -> None:
    n = 30
    env = {**os.environ, "PYTHONPATH": str(Path(vidqa.cache.__file__).resolve().parents[1])}
    child = subprocess.Popen(
        [sys.executable, __file__, str(tmp_path), "child", str(n)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready-child").exists():
            assert child.poll() is None, child.communicate()[1].decode()
            assert time.monotonic() < deadline, "child did not start"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        _race(tmp_path, "parent", n)
    finally:
        _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()

    names = [f"shared-{i}" for i in range(n)] + [f"{w}-{i}" for w in ("parent", "child") for i in range(n)]
    big = FeatureCache(tmp_path / "big", max_bytes=1 << 30)
    assert big.info().entries == len(names)
    for name in names:
        _check_hit(name, big.get(cache_key(name=name)))

    small = FeatureCache(tmp_path / "small", max_bytes=_SMALL_BOUND)
    info = small.info()
    assert 0 < info.size_bytes <= _SMALL_BOUND
    present = {name: hit for name in names if (hit := small.get(cache_key(name=name))) is not None}
    assert len(present) == info.entries  # every surviving entry loads and validates
    for name, hit in present.items():
        _check_hit(name, hit)
    leftovers = [p for root in (big.directory, small.directory) for p in root.glob("*/.*")]
    assert leftovers == []  # no temp or trash dirs left behind


if __name__ == "__main__":  # the child side of the concurrency test
    _race(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
