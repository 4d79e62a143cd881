"""On-disk cache of TensorRT plans, keyed by everything that makes a plan valid.

A serialized plan only runs on the TensorRT version and GPU model it was built for, for the
precision and input shapes of its optimization profile, and for the exact ONNX graph. All of
them go into the key, so a plan is never reused for something else. A plan that will not
deserialize anyway (a copied cache, a driver update, a truncated file) is rebuilt once with a
clear warning. Nothing is rebuilt unless it is missing, unusable or ``force`` is asked for.

No tensorrt import here: the deserialiser and the builder are injected, which keeps the cache
logic testable on machines without a GPU.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LOG = logging.getLogger("sgdfuse_ros")

Shape = tuple[int, ...]


class EngineMissingError(RuntimeError):
    """No usable cached plan, and building at run time was not allowed."""


@dataclass(frozen=True)
class ProfileEntry:
    """Optimization-profile shapes of one network input."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    @classmethod
    def fixed(cls, name: str, shape: Shape) -> ProfileEntry:
        return cls(name, tuple(shape), tuple(shape), tuple(shape))


@dataclass(frozen=True)
class EngineKey:
    """Identity of one plan: graph + ONNX hash + TensorRT + GPU + precision + shape profile."""

    graph: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    profile: tuple[ProfileEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.graph}-{self.precision}-{self.digest[:20]}.plan"


@dataclass
class LoadedEngine:
    engine: Any
    path: Path
    status: str  # "hit" | "built" | "rebuilt"


class EngineCache:
    """Plans under ``directory``; ``deserialize(bytes) → engine | None`` and
    ``build(key) → bytes`` come from the caller (TensorRT in production)."""

    def __init__(
        self,
        directory: str | Path,
        deserialize: Callable[[bytes], Any],
        build: Callable[[EngineKey], bytes],
    ) -> None:
        self.directory = Path(directory)
        self.deserialize = deserialize
        self.build = build

    def plan_path(self, key: EngineKey) -> Path:
        return self.directory / key.filename

    def _try_deserialize(self, data: bytes, path: Path) -> Any:
        try:
            return self.deserialize(data)
        except Exception as exc:  # TensorRT raises or returns None depending on the failure
            LOG.debug("deserialising %s raised %s: %s", path, type(exc).__name__, exc)
            return None

    @contextmanager
    def _build_lock(self, key: EngineKey) -> Iterator[None]:
        """One builder per plan across processes (two nodes starting together)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / (key.filename + ".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _build_and_store(self, key: EngineKey, path: Path) -> Any:
        plan = self.build(key)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(plan)
        tmp.replace(path)  # atomic: readers see the old plan or the whole new one
        path.with_suffix(".json").write_text(json.dumps(key.to_dict(), indent=2) + "\n")
        engine = self._try_deserialize(plan, path)
        if engine is None:
            raise RuntimeError(
                f"TensorRT built a plan for {key.graph} that it cannot load back ({path})"
            )
        return engine

    def load(self, key: EngineKey, allow_build: bool = True, force: bool = False) -> LoadedEngine:
        """The engine for ``key``: the cached plan, or a fresh build when it is missing or will
        not deserialize (with ``allow_build``), or always with ``force``."""
        path = self.plan_path(key)
        if not force and path.is_file():
            engine = self._try_deserialize(path.read_bytes(), path)
            if engine is not None:
                return LoadedEngine(engine, path, "hit")
        if not force and not allow_build:
            what = "will not deserialize (other GPU or TensorRT version, or damaged)"
            raise EngineMissingError(
                f"TensorRT plan for {key.graph} ({key.precision}, profile "
                f"{[(p.name, p.opt) for p in key.profile]}) "
                + (f"at {path} {what}" if path.is_file() else f"not found in {self.directory}")
                + "; build it offline with `sgdfuse export --engines --height H --width W` "
                "or allow building at run time"
            )
        with self._build_lock(key):
            if not force and path.is_file():
                # Another process may have finished this plan while we waited for the lock.
                engine = self._try_deserialize(path.read_bytes(), path)
                if engine is not None:
                    return LoadedEngine(engine, path, "hit")
                LOG.warning(
                    "cached TensorRT plan %s will not deserialize (built for another GPU or "
                    "TensorRT version, or the file is damaged): rebuilding it for %s on %s with "
                    "TensorRT %s",
                    path,
                    key.graph,
                    key.gpu_name,
                    key.tensorrt_version,
                )
                status = "rebuilt"
            else:
                LOG.warning(
                    "building TensorRT %s plan for %s (%s); this takes a while, once per GPU, "
                    "TensorRT version and frame size",
                    key.precision,
                    key.graph,
                    key.gpu_name,
                )
                status = "rebuilt" if force else "built"
            return LoadedEngine(self._build_and_store(key, path), path, status)
