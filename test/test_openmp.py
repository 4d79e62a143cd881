"""torch's idle OpenMP threads must give their cores back between operations (shared robot CPUs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# A parallel torch op, then a 2 ms pause, 100 times: the pattern of a node waiting on its next
# operation or frame. Prints the CPU time the process used per second of wall time; spinning
# worker threads burn a core through the pauses.
PAUSES = """
import json, resource, sys, time
from sgdfuse_ros.openmp import yield_idle_threads
if sys.argv[1] == "import-torch-first":
    import torch
applied = yield_idle_threads() if sys.argv[1] != "untouched" else False
import os, torch
torch.set_num_threads(2)
x = torch.rand(2_000_000)
def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
for _ in range(5):
    x.mul(2.0)
cpu0, wall0 = cpu_seconds(), time.perf_counter()
for _ in range(100):
    x.mul(2.0)
    time.sleep(0.002)
cpu_per_wall = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
print(json.dumps({"applied": applied, "cpu_per_wall": cpu_per_wall,
                  "spincount": os.environ.get("GOMP_SPINCOUNT")}))
"""


def run_pauses(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run(
        [sys.executable, "-c", PAUSES, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores for two OpenMP threads")
def test_idle_worker_threads_stop_spinning():
    default = run_pauses("untouched")
    tuned = run_pauses("tuned")
    assert tuned["applied"] and tuned["spincount"] == "1000"
    # measured on the 2-core development VM: 1.2 cores by default, 0.3 with the setting
    assert tuned["cpu_per_wall"] < 0.5 * default["cpu_per_wall"], (default, tuned)


def test_the_users_choice_wins_and_a_loaded_torch_is_left_alone():
    passive = run_pauses("tuned", OMP_WAIT_POLICY="PASSIVE")
    assert not passive["applied"] and passive["spincount"] is None
    spin = run_pauses("tuned", GOMP_SPINCOUNT="50000")
    assert not spin["applied"] and spin["spincount"] == "50000"
    late = run_pauses("import-torch-first")
    assert not late["applied"] and late["spincount"] is None
