"""The protocol every hardware backend implements, and the errors they raise.

A component is one thing whose energy we account for: a CPU package, a GPU, the RAM. The meter
asks each component for its cumulative energy in joules since ``start()`` (``energy_j``) at window
edges, and calls ``sample()`` from the one sampler thread every ``sample_interval_s`` seconds so
that power-only components can integrate and counters never miss a wraparound.

Rules for implementations:
- never raise from ``sample``/``energy_j``/``power_w`` after ``start`` succeeded: on a hardware
  error keep the last good value, record the reason in ``failure`` and log one warning;
- ``energy_j`` is monotonic non-decreasing;
- ``energy_j`` and ``sample`` may be called from different threads: guard shared state.
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod

logger = logging.getLogger(__name__)


class MeasurementMethod(str, enum.Enum):
    """How a component's energy is known, from best to worst."""

    RAPL = "rapl"  #: hardware energy counter (Intel/AMD RAPL via powercap)
    NVML_ENERGY = "nvml_energy"  #: NVML total energy counter, edges placed with instant power
    NVML_POWER = "nvml_power"  #: NVML power readings integrated over time
    AMDSMI_ENERGY = "amdsmi_energy"  #: amdsmi energy accumulator, edges placed as for NVML
    AMDSMI_POWER = "amdsmi_power"  #: amdsmi socket power integrated over time
    TDP_ESTIMATE = "tdp_estimate"  #: TDP x load model
    CONSTANT = "constant"  #: a constant power (forced, or a documented per-unit figure)

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


#: methods whose energy read is a slow hardware counter call: read concurrently at an edge
SLOW_COUNTER_METHODS = frozenset({MeasurementMethod.NVML_ENERGY, MeasurementMethod.AMDSMI_ENERGY})


class DetectionHint(str):
    """A detection note that only suggests a better setting (a RAPL zone left unused): it is
    logged, never issued as a warning. Every other note is about a component that is estimated,
    counted at a constant, or not measured, which the user must know."""


class Component(ABC):
    """One measured component. Subclasses set the attributes below in ``__init__``."""

    #: "cpu", "gpu" or "ram"
    kind: str = ""
    #: unique, stable name, e.g. "cpu:package-0", "gpu:0", "ram"
    name: str = ""
    #: hardware model, e.g. "Intel(R) Xeon(R) Gold 6248", "NVIDIA H200"
    model: str = ""
    method: MeasurementMethod = MeasurementMethod.CONSTANT
    #: how often the sampler must call ``sample()``; None: never needed
    sample_interval_s: float | None = None
    #: why the component stopped measuring properly, or None
    failure: str | None = None

    def start(self, now_s: float) -> None:
        """Set the origin: ``energy_j`` counts from here. ``now_s`` is a monotonic time."""

    def sample(self, now_s: float) -> None:
        """Periodic work on the sampler thread (integrate power, watch counters)."""

    @abstractmethod
    def energy_j(self, now_s: float) -> float:
        """Joules used since ``start()`` up to ``now_s`` (monotonic time)."""

    def power_w(self) -> float:
        """The latest power estimate in watts (for live display and mean power)."""
        return 0.0

    def utilization_percent(self) -> float | None:
        """Latest utilisation 0-100, where the backend knows it."""
        return None

    def close(self) -> None:
        """Release handles; called once by the meter when the tracker stops."""

    def describe(self) -> dict[str, object]:
        """What a report says about this component."""
        return {
            "kind": self.kind,
            "name": self.name,
            "model": self.model,
            "method": str(self.method.value),
            "failure": self.failure,
        }
