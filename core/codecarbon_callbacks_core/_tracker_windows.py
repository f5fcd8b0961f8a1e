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
from typing import TYPE_CHECKING, Any, cast

from codecarbon_callbacks_core._tracker_records import (
    ClosedWindow,
    Figures,
    OpenWindow,
    RamUsage,
    gpu_utilization_percent,
    iso,
    window_figures,
)
from codecarbon_callbacks_core.records import PHASES, WINDOW_KINDS, EmissionsData, WindowRecord

#: windows closed later are built at the latest when this many wait, where outputs write them
LATER_BATCH = 64
#: ... or when the oldest of them closed this long ago (s; the sampler thread checks it)
LATER_AGE_S = 1.0
#: how many collected windows' figures window_figures() still gives
RECENT_FIGURES = 1024

if TYPE_CHECKING:
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.hardware.base import Component
    from codecarbon_callbacks_core.intensity.lookup import IntensityResult
    from codecarbon_callbacks_core.meter import Meter, Snapshot
    from codecarbon_callbacks_core.output.fanout import OutputFanout


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
    _later: list[ClosedWindow]
    _run_start: Snapshot | None
    _built: list[WindowRecord]
    #: the windows closed later with ``collect``, by id, until collect_windows() returns them
    _collectable: dict[str, ClosedWindow]
    #: the figures of the last windows collected (RECENT_FIGURES), by id
    _recent_figures: dict[str, Figures]
    _stopping: bool
    _record_combiner: Any
    components: list[Component]
    config: TrackerConfig
    _window_count: int
    _gpu_components: list[Component]
    _ram_usage: RamUsage
    _writes_outputs: bool
    _outputs: OutputFanout
    intensity: IntensityResult | None
    metadata: dict[str, Any]
    _tasks: dict[str, EmissionsData]
    _active_task: str | None
    _log: logging.LoggerAdapter  # type: ignore[type-arg]

    if TYPE_CHECKING:

        @property
        def is_running(self) -> bool: ...

        def start(self) -> None: ...

        def _fill(
            self,
            record: EmissionsData,
            start: Snapshot,
            end: Snapshot,
            *,
            resumed: EmissionsData | None = None,
            extra_metadata: Mapping[str, Any] | None = None,
            figures_only: bool = False,
            closed: ClosedWindow | None = None,
        ) -> Figures: ...

        def _combine(self, record: EmissionsData, collective: bool = True) -> EmissionsData: ...

        def _current_intensity(self) -> IntensityResult: ...

        @property
        def _windows_consumed(self) -> bool: ...

    def _window_record(
        self, window: OpenWindow, end: Snapshot, *, status: str, closed: ClosedWindow | None = None
    ) -> WindowRecord:
        """The record of ``window`` ended at ``end`` (closed earlier: as of ``closed``)."""
        if closed is None:
            self._window_count += 1
        record = WindowRecord(
            status=status,
            window_id=window.window_id,
            kind=window.kind,
            name=window.name,
            epoch=window.epoch,
            phase=window.phase,
            start_timestamp=iso(window.start.wall_time),
            end_timestamp=iso(end.wall_time),
        )
        self._fill(record, window.start, end, extra_metadata=window.metadata, closed=closed)
        return record

    def _publish_window(self, record: WindowRecord, collective: bool = True) -> WindowRecord:
        if self._later:  # windows closed before this one go out first
            self._build_later(collective)
        # a combiner keeps the record's type: windows combine into windows
        combined = cast(WindowRecord, self._combine(record, collective))
        if self._writes_outputs:
            self._outputs.window_out(combined)
        return combined

    def _new_window_id(self) -> str:
        # uuid.uuid4()'s text, without the UUID object (half the cost, at every window edge).
        # From os.urandom, never the random module: users seed it (seed_everything), and runs
        # seeded alike would give their windows the same ids.
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
        at_start: bool = False,
    ) -> str:
        """Open a window (an epoch, phase, task...) now; returns its id for close_window().

        ``at_start``: open it at the run's first edge (start()'s own meter read) instead, so that
        the windows switched from it tile the whole run and sum to its record exactly.
        """
        check_kind_phase(kind, phase)
        with self._lock:
            meter = self._meter
            if meter is None or not meter.running:
                raise RuntimeError("open_window() needs a started tracker: call start() first")
            start = self._run_start if at_start else None
            window = OpenWindow(
                self._new_window_id(),
                kind,
                name,
                epoch,
                phase,
                start if start is not None else meter.snapshot(),
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
        with self._lock:  # written under the lock: the sampler may build windows too
            window, edge, new_id = self._switch_edge(window_id, kind, name, epoch, phase, metadata)
            record = self._window_record(window, edge, status=status)
            return self._publish_window(record), new_id

    def _switch_edge(
        self,
        window_id: str,
        kind: str,
        name: str,
        epoch: int | None,
        phase: str,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[OpenWindow, Snapshot, str]:
        """(Lock held.) Take one edge: ``window_id`` closes and the next window opens there.
        Returns the closed window, the edge and the new window's id."""
        window = self._windows.pop(window_id, None)
        if window is None:
            raise KeyError(f"no open window with id {window_id!r}")
        assert self._meter is not None
        edge = self._meter.snapshot()
        new = OpenWindow(
            self._new_window_id(), kind, name, epoch, phase, edge, dict(metadata or {})
        )
        self._windows[new.window_id] = new
        return window, edge, new.window_id

    def switch_window_later(
        self,
        window_id: str,
        kind: str,
        name: str = "",
        *,
        epoch: int | None = None,
        phase: str = "other",
        status: str = "completed",
        metadata: Mapping[str, Any] | None = None,
        collect: bool = False,
    ) -> str:
        """:meth:`switch_window`, with the closed window's record built later: at the next
        :meth:`collect_windows`, or before any record this tracker writes after it (a window
        closed now, a flush, stop()), so that the outputs still get windows in the order they
        closed; where outputs write windows, at the latest once 64 wait or the oldest closed a
        second ago. Only the edge is taken now (one meter read): a framework's hooks call this
        between steps, where every microsecond counts, and build a few records at once.
        ``collect``: keep the record until :meth:`collect_windows` returns it (else the tracker
        keeps nothing once it is written); until then :meth:`window_figures` gives its figures.

        The record is the one :meth:`switch_window` would have returned: the figures of its
        edges, the carbon intensity, the tracker's metadata, the GPUs' utilisation and RAM usage
        (read at most once a second anyway) as they were at the close; the components'
        descriptions as they are when it is built (after stop(), where no output writes
        windows: their records are built when collected). Returns the new window's id.
        """
        check_kind_phase(kind, phase)
        with self._lock:
            window, edge, new_id = self._switch_edge(window_id, kind, name, epoch, phase, metadata)
            self._window_count += 1
            gpus = self._gpu_components
            closed = ClosedWindow(
                window,
                edge,
                status,
                self._window_count,
                # what switch_window() would use now (a location still being looked up: the
                # provisional intensity), so that its figures and its record agree
                self._current_intensity(),
                dict(self.metadata),
                gpu_utilization_percent(gpus) if gpus else None,
                self._ram_usage.read(edge.monotonic_s),
                collect,
            )
            later = self._later
            later.append(closed)
            if collect:
                self._collectable[window.window_id] = closed
            if len(later) >= LATER_BATCH and self._windows_consumed:
                self._build_quietly()
        return new_id

    def _build_due(self) -> None:
        """(The sampler thread, every half second.) Build and write the windows closed later
        where an output writes windows and the oldest closed a second ago or more: rows reach
        the outputs within about a second of their close, however far apart the edges are.
        Never where a record combiner may start a collective (one that does not say it is not
        distributed): every rank must combine at the same point, on its training thread."""
        later = self._later
        if not later or self._stopping or not self._windows_consumed:
            return
        combiner = self._record_combiner
        if combiner is not None and getattr(combiner, "distributed", True):
            return
        meter = self._meter
        if meter is None or meter.clock() - later[0].end.monotonic_s < LATER_AGE_S:
            return
        with self._lock:
            if not self._stopping:
                self._build_quietly()

    def _build_quietly(self) -> None:
        """(Lock held.) :meth:`_build_later`, where a failure is logged and never raised: this
        runs inside a window switch or on the sampler thread."""
        try:
            self._build_later()
        except Exception as e:  # an output or a combiner that raised: the rest wait in _later
            self._log.warning("could not build the windows' records: %s", e)

    def window_figures(self, window_id: str) -> Figures:
        """The figures of ``window_id``, closed by :meth:`switch_window_later` with ``collect``,
        as its record has or will have them, without building the record (a quarter of its
        cost): what a framework logs at an edge. Windows already returned by
        :meth:`collect_windows`: the last 1,024 of them.

        Raises:
            KeyError: no such window (or collected long ago).
        """
        with self._lock:
            closed = self._collectable.get(window_id)
            if closed is None:
                return self._recent_figures[window_id]
            figures = closed.figures
            if figures is None:
                figures = self._figures_between(
                    closed.window.start, closed.end, closed.intensity, window=closed.window
                )
                closed.figures = figures
            return figures

    def _figures_between(
        self,
        start: Snapshot,
        end: Snapshot,
        intensity: IntensityResult,
        *,
        base: EmissionsData | None = None,
        window: OpenWindow | None = None,
    ) -> Figures:
        """:func:`window_figures` over this tracker's components and configuration."""
        return window_figures(
            self.components,
            start,
            end,
            pue=self.config.pue,
            wue=self.config.wue,
            intensity=intensity,
            base=base,
            window=window,
        )

    def collect_windows(self) -> list[WindowRecord]:
        """The records of the windows closed by :meth:`switch_window_later` with ``collect``
        since the last call, in the order they closed: built now if they were not yet (every
        window closed later is, and given to the outputs and the record combiner as
        :meth:`switch_window` does)."""
        with self._lock:
            self._build_later()
            built, self._built = self._built, []
            self._collectable.clear()
            # window_figures() still answers for them (whoever collected: the last 1,024)
            recent = self._recent_figures
            for record in built[-RECENT_FIGURES:]:
                recent[record.window_id] = Figures.of(record)
            for window_id in list(recent)[: max(0, len(recent) - RECENT_FIGURES)]:
                del recent[window_id]
        return built

    @property
    def windows_to_collect(self) -> int:
        """How many records :meth:`collect_windows` would return now."""
        return len(self._collectable)

    def _build_later(self, collective: bool = True, *, publish: bool = True) -> list[WindowRecord]:
        """Build the records of the windows closed later, oldest first (lock held); each is
        combined, and given to the outputs unless ``publish`` is False (stop() writes them
        itself). Those closed with ``collect`` are kept for :meth:`collect_windows`.

        A window whose record cannot be built (a backend's bug) is logged and skipped: the
        others are built all the same. An interrupt (KeyboardInterrupt...) puts back, in order,
        the windows not given to the outputs yet (the one being written among them), and
        propagates."""
        later, self._later = self._later, []
        records = []
        for i, closed in enumerate(later):
            written = False
            try:
                try:
                    record = self._window_record(
                        closed.window, closed.end, status=closed.status, closed=closed
                    )
                except Exception as e:
                    self._log.warning(
                        "the record of window %r could not be built: %s", closed.window.name, e
                    )
                    continue
                if publish:
                    record = self._publish_window(record, collective)
                else:
                    record = cast(WindowRecord, self._combine(record, collective))
                written = True
            except BaseException:
                self._later[:0] = later[i + 1 :] if written else later[i:]
                raise
            records.append(record)
            if closed.collect:
                self._built.append(record)
        return records

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
