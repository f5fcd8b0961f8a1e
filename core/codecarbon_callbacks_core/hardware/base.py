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

Uncertainty (every window's energy says how far it can be off). The meter calls
``edge_uncertainty_j(now_s)`` right after each ``energy_j(now_s)`` read and keeps the value in its
snapshot with the energy, as an :class:`EdgeReading`. For a window between two snapshots it calls
``uncertainty_terms(start, end)``, which returns the component's :class:`UncertaintyTerm` list:

- the method's term, one of ``counter_edges`` (where each edge falls inside a counter's step),
  ``power_sampling`` (integrating sampled power), ``tdp_model`` (the TDP x load model's error) or
  ``constant_bound`` (a wide bound for a constant power);
- ``sensor_accuracy``: the sensor's stated accuracy, a fraction of the window's energy.

Each term is the half-width of a 95 % interval in joules, with its source in words (a document
or a measurement). The terms are independent and combine in quadrature (:func:`combine`); so do
components into a total. A backend sets ``sensor_accuracy_fraction`` and
``sensor_accuracy_source`` and, where its edges carry a placement error, overrides
``edge_uncertainty_j``; it overrides ``uncertainty_terms`` only for another method term.
"""

from __future__ import annotations

import enum
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

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


#: term names, in the order reports list them
METHOD_TERMS = ("counter_edges", "power_sampling", "tdp_model", "constant_bound")
SENSOR_TERM = "sensor_accuracy"


@dataclass(frozen=True)
class UncertaintyTerm:
    """One independent contribution to a window's energy uncertainty.

    Attributes:
        name: one of :data:`METHOD_TERMS` or :data:`SENSOR_TERM`.
        half_width_j: the half-width of a 95 % interval, J (>= 0).
        source: where the figure comes from (a document, a paper, a measurement), in words.
    """

    name: str
    half_width_j: float
    source: str


@dataclass(frozen=True)
class EdgeReading:
    """One component's reading at one window edge, as the meter's snapshot holds it.

    Attributes:
        monotonic_s: when the reading was taken, s (the meter's clock).
        energy_j: the component's energy since start, J.
        edge_half_width_j: the 95 % half-width of this reading's own placement error, J (what
            ``edge_uncertainty_j`` returned; 0 where a reading is exact up to the sensor).
        power_w: the component's power estimate at the reading, W.
    """

    monotonic_s: float
    energy_j: float
    edge_half_width_j: float = 0.0
    power_w: float = 0.0


def combine(half_widths_j: Iterable[float]) -> float:
    """Independent 95 % half-widths in quadrature: sqrt(sum of squares), in their unit.

    >>> combine([3.0, 4.0])
    5.0
    """
    # hypot: one C call (it runs several times at every window edge), and no overflow
    return math.hypot(*half_widths_j)


def window_half_width_j(component: Component, start: EdgeReading, end: EdgeReading) -> float:
    """``component``'s uncertainty over the window ``start``..``end`` (95 % half-width, J): its
    terms in quadrature, through its ``half_width_j`` where that stands for them. A backend that
    raises gets its whole window energy (the ``constant_bound`` of :func:`~codecarbon_callbacks_
    core.meter.window_uncertainty`)."""
    try:
        if type(component)._exact_half_width:
            return component.half_width_j(start, end)
        return combine(t.half_width_j for t in component.uncertainty_terms(start, end))
    except Exception:  # a backend's bug must not cost the figures
        return combine([max(0.0, end.energy_j - start.energy_j)])


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
    #: the sensor's stated accuracy, as a fraction of energy (95 % half-width); 0: none applies
    sensor_accuracy_fraction: float = 0.0
    #: where ``sensor_accuracy_fraction`` comes from (document, paper), in words
    sensor_accuracy_source: str = ""
    #: whether ``half_width_j`` stands for the terms (set per class, see __init_subclass__)
    _exact_half_width: bool = True

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

    def edge_uncertainty_j(self, now_s: float) -> float:
        """The 95 % half-width of the placement error of the ``energy_j(now_s)`` just returned,
        J. Called by the meter right after that read, on the same thread. Default: 0 (a
        counter read at once, like RAPL's, or a model integrated exactly)."""
        return 0.0

    def method_term(self, start: EdgeReading, end: EdgeReading) -> UncertaintyTerm:
        """The method's term for the window ``start``..``end``. Default: both edges' placement
        errors in quadrature (``counter_edges``). Power-integrating and model-based backends
        override it."""
        return UncertaintyTerm(
            "counter_edges",
            combine([start.edge_half_width_j, end.edge_half_width_j]),
            "edge placement within the counter's update step (docs/measurement.md)",
        )

    def half_width_j(self, start: EdgeReading, end: EdgeReading) -> float:
        """The window's uncertainty (95 % half-width, J): :meth:`uncertainty_terms` in quadrature,
        without building the sensor's term (this runs for every window a framework logs).
        A subclass may compute it from the readings alone; it must equal ``combine`` of the
        terms bit for bit, and is used only where it is defined at or below the subclass's
        ``method_term`` (see :func:`window_half_width_j`)."""
        energy_j = max(0.0, end.energy_j - start.energy_j)
        return combine(
            [self.method_term(start, end).half_width_j, self.sensor_accuracy_fraction * energy_j]
        )

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__

        def level(name: str) -> int:
            return next(i for i, klass in enumerate(mro) if name in vars(klass))

        # half_width_j stands for the terms where nothing below its definition changes them: the
        # base's works through method_term, an override of its own must not be outlived by a
        # method_term defined below it; an uncertainty_terms of a subclass's own: the terms
        if "_exact_half_width" in vars(cls):  # the class says so itself
            return
        own = level("half_width_j")
        cls._exact_half_width = mro[level("uncertainty_terms")] is Component and (
            mro[own] is Component or own <= level("method_term")
        )

    def uncertainty_terms(self, start: EdgeReading, end: EdgeReading) -> list[UncertaintyTerm]:
        """The independent terms of the window ``start``..``end``: the method's term, then the
        sensor's stated accuracy on the window's energy. Each a 95 % half-width in J; their
        quadrature (:func:`combine`) is the component's uncertainty. Never raises."""
        energy_j = max(0.0, end.energy_j - start.energy_j)
        return [
            self.method_term(start, end),
            UncertaintyTerm(
                SENSOR_TERM,
                self.sensor_accuracy_fraction * energy_j,
                self.sensor_accuracy_source or "no stated accuracy applies",
            ),
        ]

    def describe(self) -> dict[str, object]:
        """What a report says about this component."""
        return {
            "kind": self.kind,
            "name": self.name,
            "model": self.model,
            "method": self.method._value_,  # .value: an enum descriptor, ~1 us at every edge
            "failure": self.failure,
        }
