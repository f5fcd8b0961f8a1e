"""A session's run: its state, and the log of its window records.

:class:`SessionRun` holds what an :class:`~codecarbon_callbacks.session.EmissionsSession` knows of
the run it is in; :class:`RecordLog` the run's window records in the order they closed, where the
windows switched later (``switch_window_later``) are built only when read: an epoch's figures come
from the tracker's ``window_figures()`` without any record (issue 13).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks.forecast import Progress
from codecarbon_callbacks.metrics import WorkCounter
from codecarbon_callbacks.step_windows import OpenWindow, OverlappingWindows

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData
    from codecarbon_callbacks_core.tracker import BaseEmissionsTracker
    from codecarbon_callbacks_core.tracker import RecordCombiner as RecordCombinerFn

    from codecarbon_callbacks.distributed import RankPlan, SessionCombiner, SignalHandler

logger = logging.getLogger(__name__)


@dataclass
class SessionRun:
    """The state of one run of an :class:`~codecarbon_callbacks.session.EmissionsSession`
    (a fit, a validation, a test or a prediction), from its begin_run() to its end_run()."""

    stage: str
    tracker: BaseEmissionsTracker
    started_here: bool
    framework_info: dict[str, Any]
    unit: str = "epoch"
    planned: float | None = None
    current: OpenWindow | None = None
    #: the fit's step and time windows, if any
    overlapping: OverlappingWindows | None = None
    epoch: int | None = None
    in_epoch: bool = False
    points: list[Progress] = field(default_factory=list)
    forecast_warned: bool = False
    status: str = "running"
    #: the distributed plan (None: a single process)
    plan: RankPlan | None = None
    #: the session's record_combiner installed on the tracker (distributed.SessionCombiner)
    combiner: SessionCombiner | None = None
    #: the tracker's record_combiner and writes_outputs before the run (a given tracker's)
    previous_combiner: RecordCombinerFn | None = None
    previous_writes: bool = True
    #: (combined totals, this rank's totals) at the last collective point: resume state
    last_sync: tuple[EmissionsData, EmissionsData] | None = None
    #: the SIGTERM handler the session installed for this run (distributed runs), if any
    sigterm_handler: SignalHandler | None = None
    #: the tiling windows closed since the current epoch began, in the order they closed: each
    #: a record, or (switched later, not collected yet) the window, whose figures the tracker
    #: gives (window_figures())
    closed: list[Any] = field(default_factory=list)
    #: training work the adapter counts (update_counts), split over train windows and epochs
    work: WorkCounter = field(default_factory=WorkCounter)
    #: whether tiling windows switch with switch_window_later (records built in batches)
    later: bool = False
    #: ((epoch, windows closed), the epoch's figures from its windows)
    epoch_cache: tuple[tuple[int, int], dict[str, float]] | None = None


class RecordLog:
    """A run's window records, in the order they closed.

    Args:
        collecting: the tracker whose windows switched later (``collect=True``) this log
            collects, or None. It is kept after the run: where no output writes windows, their
            records are built when first read (:meth:`records`), not at the run's end.

    Attributes:
        tail: the run's last records, captured when its tracker stopped: listed after every
            window closed before them (once, those built at stop() too).
    """

    def __init__(self, collecting: BaseEmissionsTracker | None = None) -> None:
        self._list: list[Any] = []
        self.collecting = collecting
        self.tail: list[Any] = []

    def detached(self) -> RecordLog:
        """A copy with the records read so far and no tracker (for pickling)."""
        copy = RecordLog()
        copy._list = list(self._list)
        return copy

    def records(self, run: SessionRun | None) -> list[Any]:
        """The records so far (the list itself: append a window closed now), the windows
        switched later built now; ``run``'s epoch windows known by their records from then on."""
        tracker = self.collecting
        records: list[Any] = []
        if tracker is not None and tracker.windows_to_collect:
            try:
                records = tracker.collect_windows()
            except Exception as e:  # never raise into training
                logger.warning("could not build the windows' records: %s", e)
            if run is not None and records:
                by_id = {r.window_id: r for r in records}
                run.closed = [by_id.get(c.window_id, c) for c in run.closed]
        if self.tail:
            ids = {r.window_id for r in records}
            records += [r for r in self.tail if getattr(r, "window_id", None) not in ids]
            self.tail = []
        self._list.extend(records)
        return self._list

    @staticmethod
    def figures(tracker: BaseEmissionsTracker, closed: Any) -> Any:
        """A closed window's figures: its record, or (switched later, not collected yet) the
        tracker's ``window_figures()`` (raises KeyError once collected)."""
        if not isinstance(closed, OpenWindow):
            return closed
        return tracker.window_figures(closed.window_id)


__all__ = ["RecordLog", "SessionRun"]
