"""A component with a known, constant power: exact expected energies for tracker tests."""

from __future__ import annotations

import threading

from codecarbon_callbacks_core.hardware.base import Component, MeasurementMethod


class ConstantPowerComponent(Component):
    """Draws ``power_w`` from start(); ``sample()`` counts its calls (sampler checks)."""

    def __init__(
        self,
        kind: str,
        name: str,
        power_w: float,
        *,
        sample_interval_s: float | None = 0.05,
        method: MeasurementMethod = MeasurementMethod.CONSTANT,
        model: str = "test",
    ) -> None:
        self.kind = kind
        self.name = name
        self.model = model
        self.method = method
        self.sample_interval_s = sample_interval_s
        self._power_w = power_w
        self._t0: float | None = None
        self.samples = 0
        self._lock = threading.Lock()

    def start(self, now_s: float) -> None:
        self._t0 = now_s

    def sample(self, now_s: float) -> None:
        with self._lock:
            self.samples += 1

    def energy_j(self, now_s: float) -> float:
        assert self._t0 is not None, "energy_j before start"
        return self._power_w * max(0.0, now_s - self._t0)

    def power_w(self) -> float:
        return self._power_w


def components(cpu_w: float = 50.0, gpu_w: float = 300.0, ram_w: float = 5.0) -> list[Component]:
    return [
        ConstantPowerComponent("cpu", "cpu:package-0", cpu_w, model="Test CPU"),
        ConstantPowerComponent("gpu", "gpu:0", gpu_w, model="Test GPU"),
        ConstantPowerComponent("ram", "ram", ram_w, sample_interval_s=None),
    ]
