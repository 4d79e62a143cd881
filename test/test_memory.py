"""glibc malloc settings for CPU inference: freed activations are reused, not faulted in anew."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

# One "frame" allocates, fills and frees activation-sized tensors as a 640×480 forward does
# (4-32 channels: 5-39 MB); prints whether the settings applied and the minor page faults per
# frame after a warm-up.
FRAMES = """
import json, resource, sys
import torch
from sgdfuse_ros.memory import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "tuned" else False
pixels = 480 * 640
def frame():
    a = torch.empty(8 * pixels).fill_(1.0)
    b = torch.empty(32 * pixels).fill_(1.0)
    del a
    c = torch.empty(16 * pixels).fill_(1.0)
    d = torch.empty(8 * pixels).fill_(1.0)
    del b, c
    e = torch.empty(4 * pixels).fill_(1.0)
    del d, e
for _ in range(5):
    frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(16):
    frame()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"applied": applied, "faults_per_frame": (after - before) / 16}))
"""


def run_frames(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run(
        [sys.executable, "-c", FRAMES, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_buffers_are_reused_without_page_faults() -> None:
    default = run_frames("default")
    tuned = run_frames("tuned")
    assert tuned["applied"] is True
    # A frame touches ~17 500 pages. With glibc's defaults at least the 39 MB tensor (above the
    # largest default mmap threshold) is usually faulted in anew, ~9 600 pages per frame.
    assert tuned["faults_per_frame"] < 175
    assert default["faults_per_frame"] > max(tuned["faults_per_frame"], 500)


def test_user_malloc_settings_are_left_alone() -> None:
    result = run_frames("tuned", MALLOC_TRIM_THRESHOLD_="131072")
    assert result["applied"] is False
    assert result["faults_per_frame"] > 500
