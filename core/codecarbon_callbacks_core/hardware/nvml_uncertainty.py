"""How far an NVML GPU's edge and window energies can be off: the terms of its uncertainty.

An :class:`~codecarbon_callbacks_core.hardware.nvml.NvmlGpu` edge is ``counter at a step +
power integral since that step`` (see :mod:`.nvml_phase`). Its placement error, as a 95 %
half-width in J (:func:`edge_half_width_j`), is the quadrature of:

- the extrapolation since the step: ``w x EXTRAPOLATION_FRACTION x power x age`` (``age``: the
  time since the predicted step; ``w``: instant power's weight in the extrapolation, below 1 at
  a steady load where the counter's mean power carries it, see :mod:`.nvml_phase`);
- the step's own noise: ``STEP_FRACTION x power`` (the counter against the instant-power
  integral, and where the step lies);
- a varying load: ``w x VARYING_SHARE x (power range - STEADY_RIPPLE x highest power)`` over
  the last ``VARYING_LOOKBACK_S`` (instant power updates every ~102 ms: a change of load since
  its last update is not seen at the edge, so a load that has been changing is the estimator's
  weak case);
- near a step, which side of it the read saw: ``NEAR_STEP_SHARE x the step's energy`` while the
  read falls within the phase uncertainty of a step (the estimator then weighs the two);
- without a phase: the read is stale by a uniform [0, period): ``0.95 x power x period / 2``;
- a floor of ``FLOOR_J``.

Power-only GPUs (``nvml_power``) integrate power sampled every ``sample_interval_s``: each edge
can miss up to one sample's worth of a changing power, and ``nvmlDeviceGetPowerUsage`` (a
trailing 1-s average) the lag it corrects.

The constants were set on the replayed H200 traces (``tests/core/hardware/test_uncertainty.py``
checks the coverage and the ratio to the observed error); the derivation is in
``docs/measurement.md``, section "Uncertainty".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from codecarbon_callbacks_core.hardware.base import MeasurementMethod, UncertaintyTerm, combine
from codecarbon_callbacks_core.hardware.nvml_phase import (
    INSTANT_POWER_LAG_S,
    NOMINAL_COUNTER_PERIOD_S,
)

if TYPE_CHECKING:
    from codecarbon_callbacks_core.hardware.base import EdgeReading
    from codecarbon_callbacks_core.hardware.nvml import NvmlGpu

#: fitted on the replayed H200 traces (docs/measurement.md, "Uncertainty"); the coverage and the
#: ratio to the observed error are checked by tests/core/hardware/test_uncertainty.py
EXTRAPOLATION_FRACTION = 0.02
STEP_FRACTION = 0.0035
VARYING_SHARE = 0.08
VARYING_LOOKBACK_S = 0.5
#: instant power's ripple at a steady load (the H200 at full load: ~12 % of its level)
STEADY_RIPPLE = 0.15
NEAR_STEP_SHARE = 0.03
#: the smallest edge half-width, J
FLOOR_J = 0.1
#: NVML's stated power accuracy: "On Fermi and Kepler GPUs the reading is accurate to within
#: +/- 5% of current power draw" (NVML API reference, nvmlDeviceGetPowerUsage). NVIDIA states no
#: figure for later GPUs; this is the only one it gives, and it is used for all.
NVML_SENSOR_ACCURACY = 0.05
NVML_SENSOR_SOURCE = (
    "NVML API reference, nvmlDeviceGetPowerUsage: +/-5% of current power draw "
    "(stated for Fermi and Kepler; no figure is stated for later GPUs)"
)


def _power_range_w(gpu: NvmlGpu, since_s: float) -> tuple[float, float]:
    """(lowest, highest) mean power between the sampler's readings since ``since_s``, W,
    including the latest reading (lock held)."""
    lo = hi = gpu._power_w
    previous: tuple[float, float] | None = None
    for when, integral in reversed(gpu._integral_history):
        if previous is not None:
            span = previous[0] - when
            if span > 0:
                power = (previous[1] - integral) / span
                lo, hi = min(lo, power), max(hi, power)
        if when < since_s:
            break
        previous = (when, integral)
    return lo, hi


def edge_half_width_j(gpu: NvmlGpu, now_s: float) -> float:
    """The 95 % half-width of the placement error of ``gpu``'s energy at ``now_s``, J.

    Called right after ``gpu.energy_j(now_s)``; never raises (a failure gives the no-phase
    bound).
    """
    with gpu._lock:
        if not gpu.has_energy_counter or gpu._counter_failed_at is not None:
            return _power_sampling_edge_j(gpu, now_s)
        power_w = max(0.0, gpu._power_w)
        phase = gpu._phase
        period = phase.period_s or NOMINAL_COUNTER_PERIOD_S
        if not phase.locked:
            lo, hi = _power_range_w(gpu, now_s - period - INSTANT_POWER_LAG_S)
            return math.hypot(0.95 * hi * period / 2, FLOOR_J)
        age = now_s - phase.step_time(phase.step_index(now_s))
        lo, hi = _power_range_w(gpu, now_s - age - VARYING_LOOKBACK_S)
        scatter = phase.uncertainty_at(now_s)
        placed_s, instant_weight = gpu._placed_at
        if placed_s != now_s:
            instant_weight = 1.0
        near = min(age, period - age) < 3 * scatter + 0.002
        # the terms of instant power's error count in proportion to its weight in the
        # extrapolation: at a steady load the counter's mean power carries it (nvml_phase)
        terms = (
            instant_weight * EXTRAPOLATION_FRACTION * power_w * age,
            STEP_FRACTION * power_w,
            instant_weight * VARYING_SHARE * max(0.0, hi - lo - STEADY_RIPPLE * hi),
            NEAR_STEP_SHARE * power_w * period if near else 0.0,
            FLOOR_J,
        )
        return combine(terms)


def _power_sampling_edge_j(gpu: NvmlGpu, now_s: float) -> float:
    """The 95 % half-width of a power-integrated edge, J: the power's range over the last two
    sample intervals times one interval (a change between samples), plus, for the 1-s average
    of ``nvmlDeviceGetPowerUsage``, the range times the lag it corrects (lock held)."""
    interval = gpu.sample_interval_s or 0.025
    lag = 0.5 if gpu.power_source == "usage" else INSTANT_POWER_LAG_S
    lo, hi = _power_range_w(gpu, now_s - 2 * interval - lag)
    return math.hypot((hi - lo) * (interval + lag), 0.02 * hi * interval, FLOOR_J)


def method_term(gpu: NvmlGpu, start: EdgeReading, end: EdgeReading) -> UncertaintyTerm:
    """The window's method term: its two edges in quadrature, named for how it was measured."""
    half_width = combine([start.edge_half_width_j, end.edge_half_width_j])
    if gpu.method is MeasurementMethod.NVML_ENERGY and gpu._counter_failed_at is None:
        return UncertaintyTerm(
            "counter_edges",
            half_width,
            "edges placed within the NVML counter's 100-ms step (docs/measurement.md, "
            "Uncertainty; set on the replayed H200 traces)",
        )
    return UncertaintyTerm(
        "power_sampling",
        half_width,
        f"NVML power ({gpu.power_source}) integrated every {gpu.sample_interval_s} s "
        "(docs/measurement.md, Uncertainty)",
    )
