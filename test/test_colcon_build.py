"""`colcon build` installs the launch file, the config, the ament index marker and fusion_node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def install(colcon_install: Path) -> Path:
    return colcon_install / "sgdfuse_ros"


def test_installed_layout(install: Path) -> None:
    share = install / "share" / "sgdfuse_ros"
    assert (share / "launch" / "fusion.launch.py").is_file()
    assert (share / "config" / "sgdfuse.yaml").is_file()
    assert (share / "package.xml").is_file()
    assert (
        install / "share" / "ament_index" / "resource_index" / "packages" / "sgdfuse_ros"
    ).is_file()
    node = install / "lib" / "sgdfuse_ros" / "fusion_node"
    assert node.is_file() and os.access(node, os.X_OK)
    entry_points = next((install / "lib").glob("python3*/site-packages/sgdfuse_ros*-info"))
    assert (
        "fusion_node = sgdfuse_ros.ros.entry:fusion_node"
        in (entry_points / "entry_points.txt").read_text()
    )
    assert (share / "launch" / "fusion.launch.py").read_text() == (
        ROOT / "launch" / "fusion.launch.py"
    ).read_text()


def test_installed_package_finds_its_config_through_the_ament_index(install: Path) -> None:
    site = next((install / "lib").glob("python3*/site-packages"))
    env = dict(
        os.environ,
        AMENT_PREFIX_PATH=str(install),
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sgdfuse_ros.ros.launch_args import default_params_file; "
            "print(default_params_file())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=install,
    )
    assert result.returncode == 0, result.stderr
    assert (
        Path(result.stdout.strip()) == install / "share" / "sgdfuse_ros" / "config" / "sgdfuse.yaml"
    )
