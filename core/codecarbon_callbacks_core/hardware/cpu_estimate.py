"""CPU power without an energy counter: a TDP x load model, or a constant.

The model (method ``tdp_estimate``) is the linear utilisation model of Fan, Weber and Barroso
("Power provisioning for a warehouse-sized computer", ISCA 2007), as Cloud Carbon Footprint uses
it with SPECpower-derived figures::

    power_w = tdp_w * (IDLE_FRACTION + (1 - IDLE_FRACTION) * load)

``tdp_w`` is the package TDP from the bundled table (``core/data/cpu_tdp.csv``) times the number
of sockets, standing for the power at full load; ``IDLE_FRACTION`` = 0.2 is the idle share of
full-load power (Cloud Carbon Footprint's AWS averages: 0.74 W min / 3.5 W max per vCPU = 0.21).
CodeCarbon instead reports a flat 50 % of TDP, or TDP x load with ``force_mode_cpu_load``; a flat
figure hides every change of load, and TDP x load alone reports 0 W for an idle but powered CPU.

``load`` is measured from CPU time, not sampled percentages: the busy CPU-seconds between two
samples divided by (elapsed seconds x logical CPUs), so the integral is exact whatever the sample
interval. ``tracking_mode="machine"``: all CPUs' busy time (/proc/stat or psutil: user, nice,
system, irq, softirq; steal excluded). ``tracking_mode="process"``: the busy time of this process
and its children (see :mod:`.process_tree`); the process then carries the dynamic power it causes
plus a share of the idle power in proportion to its share of the machine's busy time:
``tdp_w * ((1 - f) * load_process + f * load_process / load_machine)``.

When the model is not in the table, the CPU is counted at a documented constant (method
``constant``): ``UNKNOWN_CPU_W_PER_THREAD`` = 2 W per logical CPU, i.e. half (CodeCarbon's
convention for unknown load) of a 4 W TDP share per thread (the median of the TDP / threads of
Xeon Gold 6248 3.75 W, Xeon Platinum 8480+ 3.1 W, EPYC 7763 2.2 W, Ryzen 9 7950X 5.3 W,
Core i7-8700K 7.9 W), with a warning. ``force_cpu_power=W`` gives a constant W (method
``constant``).
"""

from __future__ import annotations

import logging
import threading

from codecarbon_callbacks_core.hardware import _forksafe, accuracy
from codecarbon_callbacks_core.hardware.base import (
    Component,
    EdgeReading,
    MeasurementMethod,
    UncertaintyTerm,
    combine,
)
from codecarbon_callbacks_core.system import cpu_times, logical_cpu_count

logger = logging.getLogger(__name__)

#: idle power as a fraction of full-load (TDP) power
IDLE_FRACTION = 0.2
#: TDP share per logical CPU assumed for an unknown model, W
UNKNOWN_CPU_TDP_W_PER_THREAD = 4.0
#: constant power per logical CPU for an unknown model (50 % of the TDP share), W
UNKNOWN_CPU_W_PER_THREAD = UNKNOWN_CPU_TDP_W_PER_THREAD / 2
#: how often the CPU estimate samples CPU time, s
CPU_SAMPLE_INTERVAL_S = 0.5


class ConstantPowerComponent(Component):
    """A component drawing a constant power: forced by the user, or a documented figure.

    Example:
        >>> ram = ConstantPowerComponent(kind="ram", name="ram", power_w=12.0)
        >>> ram.start(0.0); ram.energy_j(10.0)
        120.0
    """

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        power_w: float,
        model: str = "",
        method: MeasurementMethod = MeasurementMethod.CONSTANT,
        reason: str = "",
        bound_fraction: float = 0.0,
        bound_source: str = accuracy.FORCED_SOURCE,
    ) -> None:
        if not power_w >= 0.0:
            raise ValueError(f"power_w must be a number of watts >= 0, got {power_w!r}")
        self.kind = kind
        self.name = name
        self.model = model
        self.method = method
        self.reason = reason
        #: the constant's 95 % half-width as a fraction of its energy (0 for a forced power)
        self.bound_fraction = bound_fraction
        self.bound_source = bound_source
        self._power_w = float(power_w)
        self._start_s: float | None = None

    def method_term(self, start: EdgeReading, end: EdgeReading) -> UncertaintyTerm:
        energy_j = max(0.0, end.energy_j - start.energy_j)
        return UncertaintyTerm("constant_bound", self.bound_fraction * energy_j, self.bound_source)

    def half_width_j(self, start: EdgeReading, end: EdgeReading) -> float:
        energy_j = max(0.0, end.energy_j - start.energy_j)
        return combine([self.bound_fraction * energy_j, self.sensor_accuracy_fraction * energy_j])

    def start(self, now_s: float) -> None:
        self._start_s = now_s

    def energy_j(self, now_s: float) -> float:
        if self._start_s is None:
            return 0.0
        return self._power_w * max(0.0, now_s - self._start_s)

    def power_w(self) -> float:
        return self._power_w

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(power_w=self._power_w, reason=self.reason)
        return info


class IntegratedPowerComponent(Component):
    """Base for components whose energy is the integral of a sampled average power.

    Subclasses implement ``_busy_power_w(now_s)``: the mean power since the previous call.
    ``energy_j(now)`` adds the latest power times the time since the last sample.
    """

    sample_interval_s: float | None = CPU_SAMPLE_INTERVAL_S

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _forksafe.track(self)
        self._energy_j = 0.0
        self._last_s: float | None = None
        self._last_power_w = 0.0

    def _reset(self, now_s: float) -> None:
        """Take the first reading (subclasses: prime their counters)."""

    def _mean_power_w(self, now_s: float) -> float:
        raise NotImplementedError

    def start(self, now_s: float) -> None:
        with self._lock:
            self._reset(now_s)
            self._energy_j = 0.0
            self._last_s = now_s

    def sample(self, now_s: float) -> None:
        with self._lock:
            if self._last_s is None or now_s <= self._last_s:
                return
            try:
                power_w = self._mean_power_w(now_s)
            except Exception as error:  # noqa: BLE001 - never raise into training
                self._fail(f"{type(error).__name__}: {error}")
                power_w = self._last_power_w
            self._energy_j += power_w * (now_s - self._last_s)
            self._last_s = now_s
            self._last_power_w = power_w

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
            logger.warning("%s: estimate degraded, keeping the last power: %s", self.name, why)

    def energy_j(self, now_s: float) -> float:
        with self._lock:
            if self._last_s is None:
                return 0.0
            return self._energy_j + self._last_power_w * max(0.0, now_s - self._last_s)

    def power_w(self) -> float:
        return self._last_power_w

    def edge_uncertainty_j(self, now_s: float) -> float:
        """Since the last sample the latest mean power is extrapolated: the power may have been
        anywhere in the model's range meanwhile, J (subclasses set ``_power_range_w``)."""
        with self._lock:
            if self._last_s is None:
                return 0.0
            return self._power_range_w() * max(0.0, now_s - self._last_s)

    def _power_range_w(self) -> float:
        """How far the power can move between two samples, W."""
        return self._last_power_w


class CpuLoadComponent(IntegratedPowerComponent):
    """CPU power from TDP x load (method ``tdp_estimate``); see the module docstring.

    Args:
        tdp_w: full-load power of all the CPU packages, W (TDP x sockets).
        model: the CPU model name.
        tracking_mode: "machine" or "process".
        pid: the process to follow in process mode (default: this one).
        idle_fraction: idle power as a fraction of ``tdp_w``.
        cpu_count: logical CPUs (default: ``os.cpu_count()``).

    Example:
        >>> cpu = CpuLoadComponent(tdp_w=150.0, model="Intel Xeon Gold 6248")
        >>> cpu.start(0.0); cpu.sample(0.5); cpu.energy_j(0.5) >= 150.0 * 0.2 * 0.5
        True
    """

    def __init__(
        self,
        *,
        tdp_w: float,
        model: str = "",
        tracking_mode: str = "machine",
        pid: int | None = None,
        idle_fraction: float = IDLE_FRACTION,
        cpu_count: int | None = None,
    ) -> None:
        super().__init__()
        if not tdp_w > 0:
            raise ValueError(f"tdp_w must be a positive number of watts, got {tdp_w!r}")
        if tracking_mode not in ("machine", "process"):
            raise ValueError(f"tracking_mode must be 'machine' or 'process', got {tracking_mode!r}")
        if not 0.0 <= idle_fraction <= 1.0:
            raise ValueError(f"idle_fraction must be within [0, 1], got {idle_fraction!r}")
        self.kind = "cpu"
        self.name = "cpu:tdp"
        self.model = model
        self.method = MeasurementMethod.TDP_ESTIMATE
        self.tdp_w = float(tdp_w)
        self.tracking_mode = tracking_mode
        self.idle_fraction = idle_fraction
        self.cpu_count = cpu_count or logical_cpu_count()
        self._tree = None
        if tracking_mode == "process":
            from codecarbon_callbacks_core.hardware.process_tree import ProcessTree

            self._tree = ProcessTree(pid)
        self._machine_busy_s = 0.0
        self._process_busy_s = 0.0
        self._last_load = 0.0

    def _machine_busy(self) -> float:
        times = cpu_times()
        return times.user + times.nice + times.system + times.irq + times.softirq

    def _reset(self, now_s: float) -> None:
        self._machine_busy_s = self._machine_busy()
        # until the first sample, assume idle (machine) or nothing (process)
        self._last_power_w = self.tdp_w * self.idle_fraction if self._tree is None else 0.0
        if self._tree is not None:
            self._process_busy_s = self._tree.cpu_seconds()

    def _mean_power_w(self, now_s: float) -> float:
        assert self._last_s is not None
        elapsed_s = now_s - self._last_s
        capacity_s = elapsed_s * self.cpu_count
        busy = self._machine_busy()
        machine_load = min(1.0, max(0.0, (busy - self._machine_busy_s) / capacity_s))
        self._machine_busy_s = busy
        if self._tree is None:
            self._last_load = machine_load
            return self.tdp_w * (self.idle_fraction + (1 - self.idle_fraction) * machine_load)
        process_busy = self._tree.cpu_seconds()
        process_load = min(1.0, max(0.0, (process_busy - self._process_busy_s) / capacity_s))
        self._process_busy_s = process_busy
        self._last_load = process_load
        idle_share = min(1.0, process_load / machine_load) if machine_load > 0 else 0.0
        return self.tdp_w * (
            (1 - self.idle_fraction) * process_load + self.idle_fraction * idle_share
        )

    def utilization_percent(self) -> float | None:
        return 100.0 * self._last_load

    def _power_range_w(self) -> float:
        return self.tdp_w * (1.0 - self.idle_fraction)

    def method_term(self, start: EdgeReading, end: EdgeReading) -> UncertaintyTerm:
        energy_j = max(0.0, end.energy_j - start.energy_j)
        return UncertaintyTerm(
            "tdp_model",
            combine(
                [
                    accuracy.TDP_MODEL_ACCURACY * energy_j,
                    start.edge_half_width_j,
                    end.edge_half_width_j,
                ]
            ),
            accuracy.TDP_MODEL_SOURCE,
        )

    def half_width_j(self, start: EdgeReading, end: EdgeReading) -> float:
        energy_j = max(0.0, end.energy_j - start.energy_j)
        method = combine(
            [
                accuracy.TDP_MODEL_ACCURACY * energy_j,
                start.edge_half_width_j,
                end.edge_half_width_j,
            ]
        )
        return combine([method, self.sensor_accuracy_fraction * energy_j])

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            tdp_w=self.tdp_w, tracking_mode=self.tracking_mode, idle_fraction=self.idle_fraction
        )
        return info


def unknown_cpu_power_w(cpu_count: int | None = None) -> float:
    """The constant power assumed for a CPU model not in the table, W."""
    return UNKNOWN_CPU_W_PER_THREAD * (cpu_count or logical_cpu_count())
