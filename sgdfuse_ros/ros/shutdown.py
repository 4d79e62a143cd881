"""SIGINT / SIGTERM as a request to stop, never as an exception in the middle of the work.

A terminal's Ctrl-C goes to the whole process group, and ``ros2 launch`` forwards its own
SIGINT (then SIGTERM after 5 s, SIGKILL after 10 s), so the node gets a signal two or three
times. Python's default turns each into ``KeyboardInterrupt`` wherever the main thread is (inside
torch while the models load, inside ``destroy_subscription`` during clean-up), and rclpy's own
handler invalidates the context while the inference thread is still publishing. Here the first
signal only records the request; later ones are counted; the node's main loop sees the request,
stops taking frames, finishes or abandons the frame in flight, frees the models and exits 0.
Nothing here imports rclpy, so the handlers can be installed before the slow imports.

``ros2 launch`` itself dies on SIGTERM (upstream launch only handles SIGINT cleanly) and on
SIGKILL without stopping its processes: a node it started would go on running, orphaned, holding
the GPU and publishing. The launch file therefore sets ``SGDFUSE_STOP_WITH_PARENT=1`` and the node
treats the end of its parent process as a request to stop (``watch_parent``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_WITH_PARENT_ENV = "SGDFUSE_STOP_WITH_PARENT"


class ShutdownRequested(BaseException):  # noqa: N818 - a request, like KeyboardInterrupt
    """Raised out of a blocking wait (model loading) once shutdown was requested.

    A BaseException so the ``except Exception`` around transitions does not mistake it for a
    load failure (rclpy's lifecycle code catches Exception only).
    """


class ShutdownRequest:
    """Records the first SIGINT / SIGTERM; the handler does nothing else (no locks, no I/O)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.signal_count = 0
        self.requested_at: float | None = None

    def install(self) -> ShutdownRequest:
        for signum in SHUTDOWN_SIGNALS:
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signal_count += 1
        if self.signal_name is None:
            self.requested_at = time.monotonic()
            self.signal_name = signal.Signals(signum).name

    def ignore_further_signals(self) -> None:
        """For the interpreter's own teardown: Python resets handlers written in Python to the
        default (terminate) while it finalizes, so a late Ctrl-C would kill the process after
        a clean shutdown; an ignored signal stays ignored. SIGKILL still works."""
        for signum in SHUTDOWN_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def request(self, reason: str) -> None:
        """Ask for shutdown from code (rclpy context shut down from outside, tests)."""
        if self.signal_name is None:
            self.requested_at = time.monotonic()
            self.signal_name = reason

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def raise_if_requested(self) -> None:
        if self.requested:
            raise ShutdownRequested(self.signal_name)


def watch_parent(request: ShutdownRequest, poll: float = 0.5) -> threading.Thread | None:
    """Request shutdown once this process's parent has ended, if ``SGDFUSE_STOP_WITH_PARENT`` is
    1 (set by the launch file; a node started by hand or by nohup keeps running on its own).

    A daemon thread compares ``os.getppid()`` with its value at start: an orphan is re-parented
    (to init or a subreaper). Returns the thread, or None when not asked to watch.
    """
    if os.environ.get(STOP_WITH_PARENT_ENV) != "1":
        return None
    parent = os.getppid()

    def watch() -> None:
        while not request.requested:
            if os.getppid() != parent:
                request.request(f"parent exit (launcher pid {parent} ended)")
                return
            time.sleep(poll)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


# One per process: fusion_node installs it before importing rclpy and torch.
SHUTDOWN = ShutdownRequest()


def join_unless_shutdown(
    thread: threading.Thread, should_stop: Callable[[], bool], poll: float = 0.05
) -> None:
    """Wait for ``thread``; raise ShutdownRequested (leaving it running) once ``should_stop()``."""
    while thread.is_alive():
        if should_stop():
            raise ShutdownRequested("shutdown requested while waiting for " + thread.name)
        thread.join(poll)
