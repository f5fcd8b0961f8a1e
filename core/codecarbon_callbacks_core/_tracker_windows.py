"""The tracker's windows and CodeCarbon's tasks: open, close and switch windows over the meter.

A window is the difference of two meter snapshots; opening or closing one never restarts anything.
:class:`WindowsMixin` holds this API for :class:`~codecarbon_callbacks_core.tracker.
BaseEmissionsTracker`, which owns the state it works on (declared below for the type checker).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core._tracker_records import OpenWindow
from codecarbon_callbacks_core.records import PHASES, WINDOW_KINDS, EmissionsData, WindowRecord

if TYPE_CHECKING:
    from codecarbon_callbacks_core.meter import Meter, Snapshot


def check_kind_phase(kind: str, phase: str) -> None:
    """Raise ValueError unless ``kind`` is one of WINDOW_KINDS and ``phase`` one of PHASES."""
    if kind not in WINDOW_KINDS:
        raise ValueError(f"kind must be one of {', '.join(WINDOW_KINDS)}, got {kind!r}")
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")


class WindowsMixin:
    """Windows and tasks over the tracker's meter; the tracker supplies the state below."""

    _lock: threading.RLock
    _meter: Meter | None
    _windows: dict[str, OpenWindow]
    _tasks: dict[str, EmissionsData]
    _active_task: str | None
    _log: logging.LoggerAdapter  # type: ignore[type-arg]

    if TYPE_CHECKING:

        @property
        def is_running(self) -> bool: ...

        def start(self) -> None: ...

        def _window_record(
            self, window: OpenWindow, end: Snapshot, *, status: str
        ) -> WindowRecord: ...

        def _publish_window(
            self, record: WindowRecord, collective: bool = True
        ) -> WindowRecord: ...

    def _new_window_id(self) -> str:
        # uuid.uuid4()'s text, without the UUID object (half the cost, at every window edge)
        b = bytearray(os.urandom(16))
        b[6] = (b[6] & 0x0F) | 0x40  # version 4
        b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def open_window(
        self,
        kind: str,
        name: str = "",
        *,
        epoch: int | None = None,
        phase: str = "other",
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Open a window (an epoch, phase, task...) now; returns its id for close_window()."""
        check_kind_phase(kind, phase)
        with self._lock:
            meter = self._meter
            if meter is None or not meter.running:
                raise RuntimeError("open_window() needs a started tracker: call start() first")
            window = OpenWindow(
                self._new_window_id(),
                kind,
                name,
                epoch,
                phase,
                meter.snapshot(),
                dict(metadata or {}),
            )
            self._windows[window.window_id] = window
            return window.window_id

    def close_window(
        self,
        window_id: str,
        *,
        status: str = "completed",
        metadata: Mapping[str, Any] | None = None,
    ) -> WindowRecord:
        """Close a window now: its record goes to every output's window_out and is returned."""
        return self._close(window_id, status, metadata, collective=True)

    def _close(
        self,
        window_id: str,
        status: str,
        metadata: Mapping[str, Any] | None,
        *,
        collective: bool,
        at: Snapshot | None = None,
    ) -> WindowRecord:
        with self._lock:
            window = self._windows.pop(window_id, None)
            if window is None:
                raise KeyError(f"no open window with id {window_id!r}")
            assert self._meter is not None
            end = at if at is not None else self._meter.snapshot()
            if metadata:
                window.metadata.update(metadata)
            record = self._window_record(window, end, status=status)
            return self._publish_window(record, collective)

    def switch_window(
        self,
        window_id: str,
        kind: str,
        name: str = "",
        *,
        epoch: int | None = None,
        phase: str = "other",
        status: str = "completed",
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[WindowRecord, str]:
        """Close ``window_id`` and open the next window at the same instant (one meter read).

        Windows switched this way tile time exactly: their energies sum to the span's energy.
        Returns the closed window's record and the new window's id.
        """
        check_kind_phase(kind, phase)
        with self._lock:
            window = self._windows.pop(window_id, None)
            if window is None:
                raise KeyError(f"no open window with id {window_id!r}")
            assert self._meter is not None
            edge = self._meter.snapshot()
            record = self._window_record(window, edge, status=status)
            new = OpenWindow(
                self._new_window_id(), kind, name, epoch, phase, edge, dict(metadata or {})
            )
            self._windows[new.window_id] = new
        return self._publish_window(record), new.window_id

    @property
    def open_windows(self) -> list[str]:
        return list(self._windows)

    def start_task(self, task_name: str | None = None) -> None:
        """CodeCarbon's tasks: a named window. Measuring goes on around it."""
        if not self.is_running:
            self.start()
        name = task_name or str(uuid.uuid4())
        if self._active_task is not None:
            self._log.warning("task %r is still running; stopping it first", self._active_task)
            self.stop_task()
        self._active_task = self.open_window("task", name)

    def stop_task(self, task_name: str | None = None) -> EmissionsData | None:
        """Stop the current task; returns its record (a WindowRecord, an EmissionsData), or
        None with a warning in the log when no task is running (as CodeCarbon)."""
        if self._active_task is None:
            self._log.warning("stop_task(): no active task to stop")
            return None
        window_id, self._active_task = self._active_task, None
        record = self.close_window(window_id)
        self._tasks[record.name] = record
        return record
