"""A fit's step and time windows: they overlap the tiling windows and are not part of their sum.

With ``window_every_n_steps`` a ``kind="step"`` window closes every that many optimizer steps and
the next one opens; with ``window_every_seconds`` a ``kind="time"`` window closes at the first
step after that many seconds. :class:`OverlappingWindows` keeps them for one run, given the run's
tracker; it never raises for a bad step count and knows no session.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codecarbon_callbacks_core._shared import warn_once

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import WindowRecord
    from codecarbon_callbacks_core.tracker import BaseEmissionsTracker


@dataclass
class OpenWindow:
    """A window the tracker opened and has not closed yet."""

    window_id: str
    kind: str
    phase: str
    name: str
    epoch: int | None


def open_window(
    tracker: BaseEmissionsTracker,
    kind: str,
    phase: str,
    name: str,
    epoch: int | None,
    *,
    at_start: bool = False,
) -> OpenWindow:
    """Open a window on ``tracker`` (a snapshot of its meter; ``at_start``: its run's first
    edge) and describe it."""
    if at_start:
        window_id = tracker.open_window(kind, name, epoch=epoch, phase=phase, at_start=True)
    else:
        window_id = tracker.open_window(kind, name, epoch=epoch, phase=phase)
    return OpenWindow(window_id, kind, phase, name, epoch)


class OverlappingWindows:
    """One fit's step and time windows, opened when the run begins.

    Args:
        tracker: the run's tracker.
        every_n_steps: close a step window every that many optimizer steps (None: none).
        every_seconds: close a time window at the first step after that many seconds (None:
            none). Ignored in a distributed run, with a warning: each rank's clock would close
            them at different steps, and the combining collectives pair windows up by order.
        distributed: whether records are combined over ranks.
        first_step: the global step the run starts from (a resumed run's), for the first name.
        log, seen: where the warning is logged, and the once-registry it is kept in.
    """

    def __init__(
        self,
        tracker: BaseEmissionsTracker,
        *,
        every_n_steps: int | None,
        every_seconds: float | None,
        distributed: bool,
        first_step: int,
        log: logging.Logger,
        seen: set[tuple[str, str]],
    ) -> None:
        self.tracker = tracker
        self.every_n_steps = every_n_steps
        self.every_seconds = every_seconds
        self.step_window: OpenWindow | None = None
        self.time_window: OpenWindow | None = None
        self.time_window_start_s = time.monotonic()
        if every_n_steps:
            self.step_window = open_window(
                tracker, "step", "other", f"steps from {first_step}", None
            )
        if every_seconds and distributed:
            warn_once(
                "time-windows-ddp",
                "window_every_seconds is ignored in a distributed run (ranks would close "
                "time windows at different steps); use window_every_n_steps instead",
                log=log,
                level=logging.WARNING,
                seen=seen,
            )
        elif every_seconds:
            self.time_window = open_window(tracker, "time", "other", "time window 0", None)

    def on_step(self, step: int, epoch: int | None, records: list[WindowRecord]) -> int:
        """An optimizer step ended (global count ``step``): close and reopen what is due.

        Each closed window's record is appended to ``records`` as soon as it is closed.
        Returns how many were closed. Raises what the tracker raises.
        """
        closed = 0
        if self.every_n_steps and self.step_window is not None and step % self.every_n_steps == 0:
            records.append(self.tracker.close_window(self.step_window.window_id))
            closed += 1
            self.step_window = open_window(
                self.tracker, "step", "other", f"steps from {step}", epoch
            )
        if self.every_seconds and self.time_window is not None:
            if time.monotonic() - self.time_window_start_s >= self.every_seconds:
                records.append(self.tracker.close_window(self.time_window.window_id))
                closed += 1
                self.time_window = open_window(
                    self.tracker, "time", "other", f"time window from step {step}", epoch
                )
                # from after the open (a slow close must not shorten the next window)
                self.time_window_start_s = time.monotonic()
        return closed

    def take_open(self) -> list[OpenWindow]:
        """The windows still open (the run ends), forgotten here."""
        windows = [w for w in (self.step_window, self.time_window) if w is not None]
        self.step_window = self.time_window = None
        return windows


__all__ = ["OpenWindow", "OverlappingWindows", "open_window"]
