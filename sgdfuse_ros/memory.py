"""Keep freed activation memory inside the process (glibc malloc settings for CPU inference).

A 640×480 frame allocates and frees hundreds of activation buffers of several megabytes. With
glibc's defaults, blocks above the mmap threshold come from fresh ``mmap`` pages and freed
memory at the top of the heap is handed back to the kernel, so every frame faults in and zeroes
the same memory again: about 220 000 page faults (~870 MB zeroed) per Stage I forward, which was
half of its time on the 2-core development machine. With both thresholds raised, malloc reuses
the freed blocks the way a caching allocator (or ONNX Runtime's arena) does; resident memory then
stays at its peak between frames instead of shrinking.
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
# Blocks up to 1 GiB come from the heap (a 1280×720 32-channel activation is 118 MB); glibc
# versions that cap the mmap threshold at 32 MiB get their cap.
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
TRIM_THRESHOLD = (1 << 31) - 1  # largest int: freed memory is never trimmed
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are in effect.

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
    if libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        LOG.warning("mallopt(M_TRIM_THRESHOLD) refused: CPU inference pays page faults per frame")
        return False
    _applied = True
    LOG.debug("glibc malloc keeps freed memory (mmap and trim thresholds raised)")
    return True
