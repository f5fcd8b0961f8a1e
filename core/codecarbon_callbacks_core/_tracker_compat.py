"""CodeCarbon's public tracker surface beyond the lifecycle: ``get_detected_hardware()`` and the
parameters as attributes (``tracker.force_carbon_intensity_g_co2e_kwh``, ``tracker.pue``...).

:class:`CompatMixin` holds them for :class:`~codecarbon_callbacks_core.tracker.
BaseEmissionsTracker`, which owns the state they read (declared below for the type checker).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.config import SECRET_PARAMETERS, TrackerConfig

if TYPE_CHECKING:
    from types import FrameType

    from codecarbon_callbacks_core.hardware.base import Component
    from codecarbon_callbacks_core.output.fanout import OutputFanout
    from codecarbon_callbacks_core.records import EmissionsData

logger = logging.getLogger(__name__)

#: the configuration fields readable as tracker attributes: every parameter but the secrets
#: (an API key or token is never an attribute: it would reach ``vars(tracker)`` dumps)
CONFIG_ATTRIBUTES = frozenset(
    f.name for f in dataclasses.fields(TrackerConfig) if f.name not in SECRET_PARAMETERS
)


def _physical_cpu_count() -> int | None:
    """Physical CPU packages (sockets), as CodeCarbon 3.3.2's ``count_physical_cpus`` (from
    ``lscpu``'s "Socket(s)"); here from /proc/cpuinfo's physical ids. None when unknown."""
    try:
        from codecarbon_callbacks_core.hardware.cpu_model import read_cpu_info

        return int(read_cpu_info()[1]) or None
    except Exception:  # noqa: BLE001 - a fact we may lack
        return None


def live_due(measurements: int, api_call_interval: int) -> bool:
    """Whether the ``measurements``-th measurement of a run (start() is the first, each sampler
    tick, flush() and stop() are one more) sends the live outputs an update: every
    ``api_call_interval`` measurements, never with CodeCarbon's ``-1``."""
    return api_call_interval > 0 and measurements % api_call_interval == 0


class CompatMixin:
    """CodeCarbon's ``get_detected_hardware()``, ``service_shutdown()``, parameter attributes
    and flush() outputs."""

    config: TrackerConfig
    components: list[Component]
    _live_ticks: int
    _tasks: dict[str, EmissionsData]
    _outputs: OutputFanout

    def _detect(self) -> list[Component]:  # the tracker's
        raise NotImplementedError

    def stop(self) -> float | None:  # the tracker's
        raise NotImplementedError

    def service_shutdown(self, signum: int, frame: FrameType | None) -> None:
        """A signal handler that stops the tracker (CodeCarbon's), for a long-lived service:
        ``signal.signal(signal.SIGTERM, tracker.service_shutdown)``. The outputs' ``exit()``
        runs within stop(); the run row is written with status ``completed``.

        Args:
            signum: the signal's number, from :func:`signal.signal`.
            frame: the current stack frame, from :func:`signal.signal` (unused).
        """
        logger.warning("service_shutdown: caught signal %d, stopping the tracker", signum)
        self.stop()

    def _flush_outputs(self, total: EmissionsData) -> None:
        """flush()'s calls, as CodeCarbon's: flush() is a measurement towards
        ``api_call_interval`` (``live_out`` when it completes one), then ``out``, then
        ``task_out`` with the tasks so far (the task file is rewritten)."""
        self._live_ticks += 1
        if live_due(self._live_ticks, self.config.api_call_interval):
            self._outputs.live_out(total)
        self._outputs.out(total)
        if self._tasks:
            self._outputs.task_out(list(self._tasks.values()), self.config.experiment_name)

    def get_detected_hardware(self) -> dict[str, Any]:
        """The hardware this tracker measures (CodeCarbon's ``get_detected_hardware()``).

        Returns:
            A dict: ``ram_total_size`` (GB), ``cpu_count`` (logical CPUs),
            ``cpu_physical_count`` (physical CPU packages, i.e. sockets, as CodeCarbon; None
            when unknown), ``cpu_model``, ``gpu_count``,
            ``gpu_model`` (``"<n> x <model>"``, empty without GPUs) and ``gpu_ids`` (as
            configured, None for all visible GPUs). Before start() the hardware is detected for
            this call (its notes are reported as at start()).

        Raises:
            ConfigError: ``gpu_ids`` names a GPU that is not visible.
        """
        from codecarbon_callbacks_core._tracker_records import static_info

        components = self.components or self._detect()
        static = static_info(components)
        return {
            "ram_total_size": static["ram_total_size"],
            "cpu_count": static["cpu_count"],
            "cpu_physical_count": _physical_cpu_count(),
            "cpu_model": static["cpu_model"],
            "gpu_count": static["gpu_count"],
            "gpu_model": static["gpu_model"],
            "gpu_ids": self.config.gpu_ids,
        }

    def __getattr__(self, name: str) -> Any:
        # only called for names not found otherwise: the parameters, read from the config
        if name in CONFIG_ATTRIBUTES and "config" in self.__dict__:
            return getattr(self.__dict__["config"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


__all__ = ["CONFIG_ATTRIBUTES", "CompatMixin", "live_due"]
