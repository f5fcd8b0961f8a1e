"""BaseOutput and OutputMethod: how records leave the tracker.

An output receives:
- ``out(total, delta)`` on flush() and stop(): the run's totals so far and what changed since the
  last call;
- ``live_out(total, delta)`` every ``api_call_interval`` measurements while running;
- ``window_out(record)`` when a window (epoch, phase, task, flush) closes;
- ``task_out(data, experiment_name)`` when a task stops (CodeCarbon's hook);
- ``exit()`` once when the tracker stops.

Every method is a no-op by default, so a subclass implements only what it needs. The tracker calls
them inside a guard (:mod:`.fanout`): an output that raises is logged and never stops training.

Deltas are per output: ``delta`` is what changed since the totals *this* output was last handed
(by ``out`` or ``live_out``), and a resumed run's first delta holds only what the resumed process
measured. An output that cannot use a delta yet (the CodeCarbon API wants whole seconds) returns
:data:`DEFER_DELTA` from ``out``/``live_out``: its baseline then stays, and its next delta holds
this one too.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData, WindowRecord


class _DeferDelta:
    """The type of :data:`DEFER_DELTA` (one instance)."""

    _instance: _DeferDelta | None = None

    def __new__(cls) -> _DeferDelta:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFER_DELTA"


#: Returned by ``out``/``live_out``: "this delta was not used; hand it to me again with the next".
DEFER_DELTA = _DeferDelta()


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

    def out(self, total: EmissionsData, delta: EmissionsData) -> _DeferDelta | None:
        """The run's totals on flush/stop, and the change since this output's last totals."""
        return None

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> _DeferDelta | None:
        """Live totals and deltas while the run goes on (return DEFER_DELTA to defer the delta)."""
        return None

    def window_out(self, record: WindowRecord) -> None:
        """A window (epoch, phase, task, flush) has closed."""

    def task_out(self, data: list[EmissionsData], experiment_name: str) -> None:
        """CodeCarbon's per-task hook: the tasks recorded so far."""

    def exit(self) -> None:
        """The tracker stops: flush and release resources (bounded time)."""
