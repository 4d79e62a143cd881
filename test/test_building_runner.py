"""TorchWhileBuilding: frames are fused by torch while the target prepares, then by the target.

The target here is a real TorchRunner whose ``prepare`` waits for the test (standing in for a
TensorRT build, which needs a GPU); what is checked is the wrapper's behaviour a node relies on:
no frame waits for the build, one build per frame size, a failed build logged once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from sgdfuse_ros.deploy.building_runner import TorchWhileBuilding
from sgdfuse_ros.deploy.torch_runner import TorchRunner
from sgdfuse_ros.model_io import untrained_model


class SlowTarget(TorchRunner):
    """A runner that is ready only after a ``prepare`` the test releases (or makes fail)."""

    def __init__(self, model: object, fail: bool = False) -> None:
        super().__init__(model, "cpu")
        self.release = threading.Event()
        self.fail = fail
        self.prepared: list[tuple[int, int, tuple[int, ...]]] = []
        self.runs = 0

    def prepare(self, height: int, width: int, steps: Sequence[int]) -> None:
        self.release.wait(30)
        if self.fail:
            raise RuntimeError("builder ran out of workspace")
        self.prepared.append((height, width, tuple(steps)))

    def ready(self, height: int, width: int, steps: int) -> bool:
        return (height, width, (steps,)) in self.prepared

    def run(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.runs += 1
        return super().run(*args, **kwargs)


def frame(h: int = 32, w: int = 48) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    return (
        rng.random((1, 1, h, w), dtype=np.float32),
        rng.random((1, 3, h, w), dtype=np.float32),
        np.zeros((1, 1, h, w), np.float32),
        np.zeros((1, 1, h, w), np.float32),
    )


@pytest.fixture
def model():  # noqa: ANN201
    return untrained_model()[0]


def test_torch_fuses_until_the_target_is_ready_then_the_target_does(model) -> None:
    target = SlowTarget(model)
    runner = TorchWhileBuilding(target, lambda: TorchRunner(model, "cpu"))
    first = runner.run(*frame(), 1)  # returns without waiting for the build
    second = runner.run(*frame(), 1)
    assert target.runs == 0 and len(runner.building()) == 1  # one build, not one per frame
    target.release.set()
    runner.wait_until_ready(timeout=30)
    third = runner.run(*frame(), 1)
    assert target.runs == 1
    np.testing.assert_array_equal(first[0], third[0])  # same weights, same image
    np.testing.assert_array_equal(first[0], second[0])
    runner.close()


def test_a_failed_build_is_logged_once_and_frames_stay_on_torch(model, caplog) -> None:
    target = SlowTarget(model, fail=True)
    target.release.set()
    runner = TorchWhileBuilding(target, lambda: TorchRunner(model, "cpu"))
    runner.run(*frame(), 1)
    with pytest.raises(RuntimeError):
        runner.wait_until_ready(timeout=30)
    with caplog.at_level(logging.ERROR, logger="sgdfuse_ros"):
        for _ in range(3):
            runner.run(*frame(), 1)
    assert target.runs == 0
    assert caplog.text.count("builder ran out of workspace") == 1
    runner.close()
