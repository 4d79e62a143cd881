"""TensorRT plan cache logic on the CPU: keys, hits, no forced rebuilds, rebuild on a bad plan.

The deserialiser and builder are injected (as TensorRT's would be), so these run without a
GPU; test_tensorrt_runner.py repeats the important cases with real engines on a GPU.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from sgdfuse_ros.deploy.engine_cache import EngineCache, EngineKey, EngineMissingError, ProfileEntry

GOOD = b"PLAN:"


def key(**changes) -> EngineKey:
    base = EngineKey(
        graph="unet",
        onnx_sha256="a" * 64,
        tensorrt_version="10.3.0",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability=(9, 0),
        precision="fp16",
        profile=(ProfileEntry.fixed("noise", (1, 5, 480, 640)),),
    )
    return dataclasses.replace(base, **changes)


class FakeTensorRT:
    """Deserialises only plans it built for the same key; counts builds."""

    def __init__(self) -> None:
        self.builds: list[EngineKey] = []

    def build(self, k: EngineKey) -> bytes:
        self.builds.append(k)
        return GOOD + k.digest.encode()

    def deserialize(self, data: bytes):
        return ("engine", data) if data.startswith(GOOD) else None


@pytest.fixture
def trt():
    return FakeTensorRT()


@pytest.fixture
def cache(tmp_path, trt):
    return EngineCache(tmp_path, trt.deserialize, trt.build)


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "b" * 64},
        {"tensorrt_version": "10.4.0"},
        {"gpu_name": "NVIDIA GeForce RTX 4090"},
        {"compute_capability": (8, 9)},
        {"precision": "fp32"},
        {"profile": (ProfileEntry.fixed("noise", (3, 5, 480, 640)),)},
        {"profile": (ProfileEntry("noise", (1, 5, 64, 64), (1, 5, 480, 640), (1, 5, 1088, 1920)),)},
    ],
)
def test_every_key_field_changes_the_plan_file(change):
    assert key(**change).filename != key().filename
    assert key(**change).digest != key().digest


def test_key_is_stable_and_readable():
    assert key().digest == key().digest
    assert key().filename.startswith("unet-fp16-") and key().filename.endswith(".plan")


def test_missing_plan_is_built_once_then_hit(cache, trt):
    first = cache.load(key())
    assert first.status == "built" and len(trt.builds) == 1
    assert first.path.is_file() and first.path.with_suffix(".json").is_file()
    second = cache.load(key())
    assert second.status == "hit" and len(trt.builds) == 1  # no rebuild by default
    assert second.engine == first.engine


def test_force_rebuilds_even_when_cached(cache, trt):
    cache.load(key())
    assert cache.load(key(), force=True).status == "rebuilt"
    assert len(trt.builds) == 2


def test_missing_plan_without_build_permission_names_the_export_command(cache, trt):
    with pytest.raises(EngineMissingError, match="sgdfuse export --engines"):
        cache.load(key(), allow_build=False)
    assert trt.builds == []


@pytest.mark.parametrize("damage", [b"", b"\x00garbage from another TensorRT", b"PLA"])
def test_corrupt_or_foreign_plan_is_rebuilt_with_a_clear_log(cache, trt, caplog, damage):
    path = cache.load(key()).path
    path.write_bytes(damage)
    with pytest.raises(EngineMissingError, match="will not deserialize"):
        cache.load(key(), allow_build=False)  # a robot that must never build says why
    with caplog.at_level(logging.WARNING, logger="sgdfuse_ros"):
        loaded = cache.load(key())
    assert loaded.status == "rebuilt" and len(trt.builds) == 2
    assert "will not deserialize" in caplog.text and "rebuilding" in caplog.text
    assert trt.deserialize(path.read_bytes()) is not None  # the good plan replaced it


def test_deserialiser_that_raises_counts_as_unusable(tmp_path, trt):
    def raising(data: bytes):
        if not data.startswith(GOOD):
            raise RuntimeError("Serialization assertion failed: magic tag mismatch")
        return data

    cache = EngineCache(tmp_path, raising, trt.build)
    cache.plan_path(key()).parent.mkdir(parents=True, exist_ok=True)
    cache.plan_path(key()).write_bytes(b"old")
    assert cache.load(key()).status == "rebuilt"


def test_plan_that_cannot_be_loaded_after_building_is_an_error(tmp_path):
    cache = EngineCache(tmp_path, lambda data: None, lambda k: b"anything")
    with pytest.raises(RuntimeError, match="cannot load back"):
        cache.load(key())


def test_failed_build_leaves_no_plan(cache, tmp_path):
    def failing(k: EngineKey) -> bytes:
        raise RuntimeError("TensorRT could not parse unet.onnx")

    cache.build = failing
    with pytest.raises(RuntimeError, match="could not parse"):
        cache.load(key())
    assert not any(p.suffix == ".plan" for p in tmp_path.iterdir())
