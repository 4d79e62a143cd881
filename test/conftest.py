"""Shared test fixtures: small deterministic models and the location of the real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SGDFUSE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def data_dir() -> Path:
    """The shared real data folder; tests that need it skip where it is absent."""
    if not (DATA / "val" / "msrs100" / "ir").is_dir():
        pytest.skip(f"real data not found at {DATA} (set SGDFUSE_DATA)")
    return DATA


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout built by `colcon build` into a temporary workspace (built once per run);
    the install base holding setup.bash."""
    from launch_helpers import colcon_build, colcon_executable

    if colcon_executable() is None:
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    return colcon_build(tmp_path_factory.mktemp("colcon_ws"))


@pytest.fixture(scope="session")
def launch_install(colcon_install: Path) -> Path:
    """The colcon install base where `ros2 launch` can run; skips with the reason elsewhere."""
    from launch_helpers import launch_system_missing

    reason = launch_system_missing()
    if reason:
        pytest.skip(reason)
    return colcon_install
