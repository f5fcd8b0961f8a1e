"""The tracker's life-cycle helpers: its own log level, stop()'s deadline and helper thread, the
one-run-per-machine lock (CodeCarbon's ``allow_multiple_runs=False``)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning

#: stop() statuses at which every rank stops together: the record_combiner may use collectives
COLLECTIVE_STOP_STATUSES = ("completed", "budget_stop")


class TrackerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """This tracker's diagnostics at its own ``log_level``; the logger's level is left alone."""

    def __init__(self, target: logging.Logger, level: int) -> None:
        super().__init__(target, {})
        self.level = level

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level >= self.level and self.logger.isEnabledFor(level)


def left(deadline: float) -> float:
    """Seconds left until ``deadline`` (monotonic), never negative."""
    return max(0.0, deadline - time.monotonic())


def run_bounded(
    work: Callable[[], None],
    deadline: float,
    *,
    thread_name: str,
    run_id: str,
    log: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
    category: type[CodeCarbonCallbacksWarning] | None,
    inline: bool = False,
) -> None:
    """Run ``work`` on a daemon thread named ``thread_name``; wait for it until ``deadline``
    (monotonic seconds). A thread still busy then is reported once (``category``: the warning's,
    None to log only) and left behind. ``inline``: run it here instead (nothing to bound: no
    output, so no helper thread to start and join in fit's last hook)."""

    def guarded() -> None:
        try:
            work()
        except Exception as e:  # the fan-out guards each output; this guards the rest
            log.warning("writing the run's final records failed: %s", e)

    if inline:
        guarded()
        return
    thread = threading.Thread(target=guarded, name=thread_name, daemon=True)
    try:
        thread.start()
    except RuntimeError:  # interpreter shutdown: no new thread, write here
        guarded()
        return
    thread.join(left(deadline))
    if thread.is_alive():
        warn_once(
            "stop-bound-reached",
            "stop() reached its time bound: run %s's final records are still being written "
            "by thread %s, left behind as a daemon (an output stuck in a network or disk "
            "call?)",
            run_id,
            thread.name,
            log=log,
            category=category,
        )


def single_run_lock_path() -> str:
    """The machine-wide lock file of ``allow_multiple_runs=False`` trackers."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), ".codecarbon_callbacks.lock")


def acquire_single_run_lock() -> tuple[bool, int | None]:
    """Take the machine-wide lock: (acquired, the descriptor to release, or None where there is
    no cross-process lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no cross-process lock on Windows
        return True, None
    fd = os.open(single_run_lock_path(), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False, None
    return True, fd


def release_single_run_lock(fd: int | None) -> None:
    """Release a lock taken by :func:`acquire_single_run_lock` (None: nothing to release)."""
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
