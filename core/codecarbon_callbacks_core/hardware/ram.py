"""RAM power: a per-gigabyte model (method ``constant``), or a forced constant.

Model: ``RAM_W_PER_GB`` = 0.375 W per GB (3 W per 8 GB), the DDR3/DDR4 figure derived from
Micron's DDR system-power calculators ("TN-41-01 Calculating Memory System Power for DDR3",
Micron technical note, and its DDR4 calculator) and used by CodeCarbon 1.x/2.x
(``codecarbon/external/ram.py``: "3 watts of power for every 8GB of DDR3 or DDR4 memory"). We
keep it rather than CodeCarbon 3.x's per-DIMM guess because the number of DIMMs cannot be read
without root, while the per-GB figure rests on the vendor's calculator and scales with what is
measured. It is a constant per GB: memory power barely depends on traffic at the scale of an
epoch, so the method is reported as ``constant``.

- ``tracking_mode="machine"``: all installed RAM (``psutil.virtual_memory().total``), constant.
- ``tracking_mode="process"``: the resident memory of this process and its children (RSS, see
  :mod:`.process_tree`; shared pages counted in each process), sampled every second and
  integrated, so the power follows what the process holds.
- ``force_ram_power=W``: a constant W.
- RAPL DRAM domains, when ``rapl_include_dram`` finds them, replace this model (see ``rapl``).
"""

from __future__ import annotations

import logging

from codecarbon_callbacks_core.hardware import accuracy
from codecarbon_callbacks_core.hardware.base import (
    EdgeReading,
    MeasurementMethod,
    UncertaintyTerm,
    combine,
)
from codecarbon_callbacks_core.hardware.cpu_estimate import (
    ConstantPowerComponent,
    IntegratedPowerComponent,
)

logger = logging.getLogger(__name__)

#: RAM power per GB (10^9 bytes) of DDR3/DDR4, W
RAM_W_PER_GB = 0.375
#: how often process-mode RAM samples RSS, s
RAM_SAMPLE_INTERVAL_S = 1.0


def ram_power_w(total_bytes: float) -> float:
    """Power of ``total_bytes`` of RAM under the per-GB model, W."""
    return RAM_W_PER_GB * total_bytes / 1e9


def machine_ram_component() -> ConstantPowerComponent:
    """All installed RAM at ``RAM_W_PER_GB`` (constant)."""
    from codecarbon_callbacks_core.system import total_ram_bytes

    total_bytes = total_ram_bytes()
    return ConstantPowerComponent(
        kind="ram",
        name="ram",
        model=f"{total_bytes / 1e9:.1f} GB",
        power_w=ram_power_w(total_bytes),
        reason=f"{RAM_W_PER_GB} W/GB x installed RAM",
        bound_fraction=accuracy.RAM_MODEL_BOUND,
        bound_source=accuracy.RAM_MODEL_SOURCE,
    )


def forced_ram_component(power_w: float) -> ConstantPowerComponent:
    """RAM at a power the user forced (``force_ram_power``)."""
    if isinstance(power_w, bool) or not isinstance(power_w, (int, float)) or power_w < 0:
        raise ValueError(f"force_ram_power must be a number of watts >= 0, got {power_w!r}")
    return ConstantPowerComponent(
        kind="ram", name="ram", power_w=float(power_w), reason="force_ram_power"
    )


class ProcessRamComponent(IntegratedPowerComponent):
    """RAM held by a process tree (RSS) at ``RAM_W_PER_GB``, integrated over time.

    Example:
        >>> ram = ProcessRamComponent()
        >>> ram.start(0.0); ram.sample(1.0); ram.energy_j(1.0) > 0
        True
    """

    sample_interval_s = RAM_SAMPLE_INTERVAL_S

    def __init__(self, pid: int | None = None) -> None:
        super().__init__()
        from codecarbon_callbacks_core.hardware.process_tree import ProcessTree

        self.kind = "ram"
        self.name = "ram"
        self.model = "process RSS"
        self.method = MeasurementMethod.CONSTANT
        self._tree = ProcessTree(pid)
        self.rss_bytes = 0

    def _reset(self, now_s: float) -> None:
        self.rss_bytes = self._tree.rss_bytes()
        self._last_power_w = ram_power_w(self.rss_bytes)

    def _mean_power_w(self, now_s: float) -> float:
        # the mean of the RSS at both ends of the interval (trapezoid)
        previous_w = ram_power_w(self.rss_bytes)
        self.rss_bytes = self._tree.rss_bytes()
        return (previous_w + ram_power_w(self.rss_bytes)) / 2

    def method_term(self, start: EdgeReading, end: EdgeReading) -> UncertaintyTerm:
        energy_j = max(0.0, end.energy_j - start.energy_j)
        return UncertaintyTerm(
            "constant_bound",
            combine(
                [
                    accuracy.RAM_MODEL_BOUND * energy_j,
                    start.edge_half_width_j,
                    end.edge_half_width_j,
                ]
            ),
            accuracy.RAM_MODEL_SOURCE,
        )

    def half_width_j(self, start: EdgeReading, end: EdgeReading) -> float:
        energy_j = max(0.0, end.energy_j - start.energy_j)
        method = combine(
            [accuracy.RAM_MODEL_BOUND * energy_j, start.edge_half_width_j, end.edge_half_width_j]
        )
        return combine([method, self.sensor_accuracy_fraction * energy_j])

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(rss_bytes=self.rss_bytes, w_per_gb=RAM_W_PER_GB)
        return info
