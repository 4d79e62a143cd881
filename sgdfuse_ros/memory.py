"""Keep freed activation memory inside the process (glibc malloc settings for CPU inference).

A 640×480 frame allocates and frees hundreds of activation buffers of several megabytes. With
glibc's defaults, blocks above the mmap threshold come from fresh ``mmap`` pages and freed
memory at the top of the heap is handed back to the kernel, so every frame faults in and zeroes
the same memory again: about 220 000 page faults (~870 MB zeroed) per Stage I forward, which was
half of its time on the 2-core development machine. With both thresholds raised, malloc reuses
the freed blocks the way a caching allocator (or ONNX Runtime's arena) does; resident memory then
stays at its peak between frames instead of shrinking.

The thresholds govern glibc's main arena; other threads normally get arenas of their own, whose
64 MB heaps cannot hold many activations and fall back to ``mmap`` (on a worker thread, where
the node fuses, 55 000 faults per forward remained with the thresholds alone). So every thread
is pointed at the main arena too, sharing its lock. Threads that allocated before this call
keep their arenas: the node calls it before rclpy starts the DDS threads.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

LOG = logging.getLogger("sgdfuse_ros")

# mallopt parameters from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Blocks up to 1 GiB come from the heap (a 1280×720 32-channel activation is 118 MB); glibc
# versions that cap the mmap threshold at 32 MiB get their cap.
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
TRIM_THRESHOLD = (1 << 31) - 1  # largest int: freed memory is never trimmed
USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_ARENA_MAX",
    "GLIBC_TUNABLES",
)

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds and keep every thread on the main arena, once per
    process; True when the settings are in effect.

    Leaves malloc alone (False) off glibc, or when the environment already sets malloc tunables:
    the user's choice wins.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        LOG.debug("not glibc: malloc thresholds left as they are")
        return False
    user = [name for name in USER_SETTINGS if name in os.environ]
    if user:
        LOG.info("malloc thresholds left to the environment (%s)", ", ".join(user))
        return False
    libc = ctypes.CDLL(None)
    if not any(libc.mallopt(M_MMAP_THRESHOLD, value) == 1 for value in MMAP_THRESHOLDS):
        LOG.warning("mallopt(M_MMAP_THRESHOLD) refused: CPU inference pays page faults per frame")
        return False
    for name, param, value in (
        ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ("M_ARENA_MAX", M_ARENA_MAX, 1),
    ):
        if libc.mallopt(param, value) != 1:
            LOG.warning("mallopt(%s) refused: CPU inference pays page faults per frame", name)
            return False
    _applied = True
    LOG.debug("glibc malloc keeps freed memory (mmap and trim thresholds raised)")
    return True
