"""Inference off the executor thread: a one-slot mailbox that keeps only the newest pair.

Fusion takes longer than a camera period on small hardware. Queueing every pair would make
latency grow without bound; instead the executor thread drops the pair into a single slot
and returns at once, the worker fuses whatever is in the slot when it is free, and a pair that
is replaced before the worker reaches it is counted as dropped. Nothing here imports rclpy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sgdfuse_ros.ros.shutdown import join_unless_shutdown

Item = TypeVar("Item")
Result = TypeVar("Result")


def run_on_fresh_thread(
    fn: Callable[[], Result], name: str, should_stop: Callable[[], bool] | None = None
) -> Result:
    """Run ``fn`` on a thread that ends with it and return its result (or raise its error).

    With ``should_stop``, the wait ends with ShutdownRequested as soon as it returns True (a
    signal while the models load): torch cannot be interrupted, so the thread is left to
    finish on its own and its result is dropped; the process exits without waiting for it.

    Torch's OpenMP pool belongs to the thread that first runs a parallel operation and lives as
    long as that thread. Loading and warming up the models on the executor thread left a second
    pool beside the inference thread's; with more OpenMP threads than cores libgomp stops
    spinning and every parallel region waits on a futex (with the node's other start-up fix, 658
    instead of 560 ms per 640×480 frame on 2 cores). A thread that ends takes its pool with it.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = error

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    if should_stop is None:
        thread.join()
    else:
        join_unless_shutdown(thread, should_stop)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class LatestOnlyWorker(Generic[Item]):
    """A thread that processes the newest submitted item; older unprocessed ones are dropped."""

    def __init__(
        self,
        process: Callable[[Item], None],
        name: str = "sgdfuse-inference",
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._process = process
        self._on_error = on_error
        self._condition = threading.Condition()
        self._pending: Item | None = None
        self._has_pending = False
        self._busy = False
        self._stopping = False
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> bool:
        """Offer an item; returns True when it replaced an unprocessed one (which is dropped)."""
        with self._condition:
            if self._stopping:
                return False
            replaced = self._has_pending
            if replaced:
                self.dropped += 1
            self._pending = item
            self._has_pending = True
            self._condition.notify()
            return replaced

    @property
    def busy(self) -> bool:
        with self._condition:
            return self._busy or self._has_pending

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running (used before tearing things down)."""
        with self._condition:
            return self._condition.wait_for(
                lambda: not self._busy and not self._has_pending, timeout=timeout
            )

    def stop(self, timeout: float = 30.0) -> bool:
        """Discard the pending item, let a running one finish, end the thread; True if it ended."""
        with self._condition:
            self._stopping = True
            if self._has_pending:
                self.dropped += 1
            self._pending = None
            self._has_pending = False
            self._condition.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._has_pending or self._stopping)
                if self._stopping:
                    return
                item = self._pending
                self._pending = None
                self._has_pending = False
                self._busy = True
            try:
                self._process(item)  # type: ignore[arg-type]
                self.processed += 1
            except BaseException as error:  # noqa: BLE001 - a failing frame must not end the thread
                if self._on_error is not None:
                    self._on_error(error)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
