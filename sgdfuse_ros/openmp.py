"""Let torch's idle OpenMP threads sleep soon, so fusion survives a CPU shared with other nodes.

After each parallel region, GNU OpenMP (the runtime bundled with torch's Linux wheels) keeps its
worker threads spinning for up to 300 000 iterations before they sleep. On a robot the other
nodes need those cores: a spinning worker takes time slices from them, and when one of our own
threads is descheduled the others spin until it comes back, because oneDNN and ATen split work
statically. On the 2-core development machine (``sgdfuse bench --background-load N``, 640×480,
K = 1) a frame took 565 ms idle, 1626 ms beside one busy process and 2196 ms (p90 3.95 s)
beside two; with ``GOMP_SPINCOUNT=1000`` 921 and 1053 ms, and the same idle.
(``OMP_WAIT_POLICY=PASSIVE``, no spinning at all, cost ~10 % on the idle machine.)

libgomp reads the setting once, when torch loads it, so this must run before the first
``import torch``; the entry points (CLI, node) call it first thing. A ``GOMP_SPINCOUNT`` or
``OMP_WAIT_POLICY`` in the environment is the user's choice and wins.
"""

from __future__ import annotations

import logging
import os
import sys

LOG = logging.getLogger("sgdfuse_ros")

SPIN_COUNT = "1000"
USER_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")

_applied: bool | None = None


def yield_idle_threads() -> bool:
    """Set libgomp's spin count for torch, once per process; True when it is in effect.

    False when torch was already imported (too late: the runtime has read its settings) or the
    environment already chooses a wait policy.
    """
    global _applied
    if _applied is not None:
        return _applied
    user = [name for name in USER_SETTINGS if name in os.environ]
    if user:
        LOG.info("OpenMP wait policy left to the environment (%s)", ", ".join(user))
        _applied = False
    elif "torch" in sys.modules:
        LOG.debug("torch is already loaded: its OpenMP threads keep their default spin count")
        _applied = False
    else:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
        _applied = True
    return _applied
