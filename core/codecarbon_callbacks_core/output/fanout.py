"""The outputs of one tracker run: built from its configuration, each called guarded, each with its
own delta baseline.

:class:`OutputFanout` is what the tracker talks to; outputs never see the tracker.

- Built once per run from the resolved configuration (``OutputFanout.from_config``): the
  ``output_methods`` through :func:`.registry.create_outputs` (the HTTP webhook added when
  ``emissions_endpoint`` is set), then the user's ``output_handlers``.
- Every call is guarded: an output that raises is reported once (a warning naming the output and
  the method, then debug lines; the first time in the process also a ``CodeCarbonCallbacksWarning``)
  and never stops training or the other outputs.
- Deltas: for each output and each run, the fan-out keeps the totals that output was last handed
  (its baseline). ``out``/``live_out`` hand ``total`` and ``total - baseline``; the baseline of a
  resumed run starts at the totals it resumed from, so its first delta holds only what this
  process measured. An output that returns :data:`~.base.DEFER_DELTA` keeps its baseline, and its
  next delta holds the deferred one too.

Example:
    >>> fanout = OutputFanout([])  # doctest: +SKIP
    >>> fanout.begin_run("run-1", resumed_from=None)  # doctest: +SKIP
    >>> fanout.out(total)  # every output gets (total, its own delta)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output._util import describe_error, warn_once
from codecarbon_callbacks_core.output.base import DEFER_DELTA, BaseOutput
from codecarbon_callbacks_core.records import EmissionsData

if TYPE_CHECKING:
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.records import WindowRecord

logger = logging.getLogger(__name__)


class OutputFanout:
    """Calls every output of a run, guarded, with a delta baseline per output.

    Args:
        outputs: the outputs, in the order they are called.
    """

    def __init__(self, outputs: Sequence[BaseOutput]) -> None:
        self.outputs: list[BaseOutput] = list(outputs)
        self._run_id = ""
        self._seed = EmissionsData()
        self._baselines: dict[int, EmissionsData] = {}
        self._reported: set[tuple[str, str]] = set()

    @classmethod
    def from_config(cls, config: TrackerConfig) -> OutputFanout:
        """The outputs ``config`` asks for, then its ``output_handlers``.

        Raises:
            ConfigError: an output cannot be built from the configuration (names the parameter).
        """
        from codecarbon_callbacks_core.output.registry import create_outputs

        return cls([*create_outputs(config.output_methods, config), *config.output_handlers])

    def begin_run(self, run_id: str, resumed_from: EmissionsData | None = None) -> None:
        """A new run (or a resumed one, whose totals start at ``resumed_from``): baselines reset."""
        self._run_id = run_id
        self._seed = resumed_from if resumed_from is not None else EmissionsData(run_id=run_id)
        self._baselines.clear()

    def add(self, output: BaseOutput) -> None:
        """Add an output; its baseline starts where the run started (it gets the run so far)."""
        self.outputs.append(output)

    # -- calls -------------------------------------------------------------------------------------

    def out(self, total: EmissionsData) -> None:
        """flush() and stop(): every output's ``out(total, delta)``."""
        self._with_delta("out", total)

    def live_out(self, total: EmissionsData) -> None:
        """Every ``api_call_interval`` live updates: every output's ``live_out(total, delta)``."""
        self._with_delta("live_out", total)

    def window_out(self, record: WindowRecord) -> None:
        for output in self.outputs:
            self._call(output, "window_out", record)

    def task_out(self, data: list[EmissionsData], experiment_name: str) -> None:
        for output in self.outputs:
            self._call(output, "task_out", data, experiment_name)

    def exit(self) -> None:
        for output in self.outputs:
            self._call(output, "exit")

    def _with_delta(self, method: str, total: EmissionsData) -> None:
        for output in self.outputs:
            if not _implements(output, method):
                continue  # a method an output leaves to BaseOutput does not move its baseline
            key = id(output)
            baseline = self._baselines.get(key, self._seed)
            delta = total.compute_delta_emission(baseline)
            answer = self._call(output, method, total, delta)
            if answer is not DEFER_DELTA:
                self._baselines[key] = total

    def _call(self, output: BaseOutput, method: str, *args: Any) -> Any:
        fn = getattr(output, method, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # an output never stops training, nor the other outputs
            # logged once per run's outputs; issued as a warning once per process (not once
            # per tracker): the fan-out exists only where outputs are written (rank zero)
            warn_once(
                f"output-failed:{type(output).__name__}.{method}",
                "output %s.%s failed (training goes on): %s",
                type(output).__name__,
                method,
                describe_error(exc),
                log=logger,
                seen=self._reported,
                category=CodeCarbonCallbacksWarning,
            )
            return None


def _implements(output: BaseOutput, method: str) -> bool:
    """Whether ``output`` has its own ``method`` (not BaseOutput's no-op)."""
    own = getattr(type(output), method, None)
    return own is not None and own is not getattr(BaseOutput, method, None)


__all__ = ["OutputFanout"]
