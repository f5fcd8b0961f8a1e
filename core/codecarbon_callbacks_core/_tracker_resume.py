"""A tracker's resume state: ``state_dict()`` and ``load_state_dict()``.

:class:`ResumeMixin` holds them for :class:`~codecarbon_callbacks_core.tracker.
BaseEmissionsTracker`, which owns the state they read (declared below for the type checker).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core._tracker_records import parse_tracker_state, tracker_state
from codecarbon_callbacks_core.records import EmissionsData


class ResumeMixin:
    """A run's identity and cumulative figures, saved and restored (checkpoints)."""

    run_id: str
    final_emissions_data: EmissionsData | None
    _resumed: EmissionsData | None
    _restored_run_id: str | None
    _lock: threading.RLock

    if TYPE_CHECKING:

        @property
        def is_running(self) -> bool: ...

        def totals(self, *, at_last_edge: bool = False) -> EmissionsData: ...

    def state_dict(self) -> dict[str, Any]:
        """The run's identity and cumulative figures, as plain JSON-able numbers and ids."""
        if self.is_running:
            total = self.totals()
        elif self.final_emissions_data is not None:
            total = self.final_emissions_data
        else:
            total = (
                self._resumed if self._resumed is not None else EmissionsData(run_id=self.run_id)
            )
        return tracker_state(self.run_id, total)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a run saved by state_dict(): same run_id, its totals added to ours.

        Call it before start(), or right after start() before any window closes.

        Raises:
            ValueError: ``state`` is not a tracker state_dict.
        """
        run_id, resumed = parse_tracker_state(state)
        with self._lock:
            self.run_id = run_id
            self._resumed = resumed
            self._restored_run_id = run_id
