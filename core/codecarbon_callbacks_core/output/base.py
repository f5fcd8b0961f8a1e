"""BaseOutput and OutputMethod: how records leave the tracker.

An output receives:
- ``out(total, delta)`` on flush() and stop(): the run's totals so far and what changed since the
  last call;
- ``live_out(total, delta)`` every ``api_call_interval`` measurements while running;
- ``window_out(record)`` when a window (epoch, phase, task, flush) closes;
- ``task_out(data, experiment_name)`` when a task stops (CodeCarbon's hook);
- ``exit()`` once when the tracker stops.

Every method is a no-op by default, so a subclass implements only what it needs. The tracker calls
them inside a guard: an output that raises is logged and never stops training.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData, WindowRecord


class OutputMethod(str, enum.Enum):
    """The built-in outputs, by the names CodeCarbon uses in ``output_methods``."""

    CSV = "csv"
    API = "api"
    LOGGER = "logger"
    PROMETHEUS = "prometheus"
    LOGFIRE = "logfire"
    BOAMPS = "boamps"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


class BaseOutput:
    """Receives records from a tracker. Subclass it and pass instances in ``output_handlers``.

    Example:
        >>> class PrintOutput(BaseOutput):
        ...     def out(self, total, delta):
        ...         print(f"{total.energy_consumed:.6f} kWh")
    """

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        """The run's totals on flush/stop, and the change since the last call."""

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        """Live totals and deltas while the run goes on."""

    def window_out(self, record: WindowRecord) -> None:
        """A window (epoch, phase, task, flush) has closed."""

    def task_out(self, data: list[EmissionsData], experiment_name: str) -> None:
        """CodeCarbon's per-task hook: the tasks recorded so far."""

    def exit(self) -> None:
        """The tracker stops: flush and release resources (bounded time)."""
