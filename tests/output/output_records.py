"""Shared helpers for the output tests: records built by hand, so no tracker is needed."""

from __future__ import annotations

import socket
import uuid
from typing import Any

from codecarbon_callbacks.core.records import EmissionsData, WindowRecord


def make_total(**overrides: Any) -> EmissionsData:
    """A plausible run total: 2 CPU-packages + 1 GPU box, energies in kWh."""
    run_id = overrides.pop("run_id", str(uuid.uuid4()))
    values: dict[str, Any] = dict(
        timestamp="2026-11-28T20:00:10+00:00",
        project_name="proj",
        run_id=run_id,
        experiment_id="5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
        duration=10.0,
        emissions=0.0002,
        emissions_rate=0.00002,
        cpu_power=40.0,
        gpu_power=250.0,
        ram_power=5.0,
        cpu_energy=0.0001,
        gpu_energy=0.0007,
        ram_energy=0.00001,
        energy_consumed=0.00081,
        country_name="France",
        country_iso_code="FRA",
        os="Linux-6.1-x86_64",
        python_version="3.11.7",
        codecarbon_version="3.3.2",
        cpu_count=16,
        cpu_model="AMD EPYC 7513 32-Core Processor",
        gpu_count=1,
        gpu_model="1 x NVIDIA H200",
        ram_total_size=128.0,
        cpu_utilization_percent=55.0,
        gpu_utilization_percent=90.0,
        status="completed",
        cpu_method="rapl",
        gpu_method="nvml_energy",
        ram_method="constant",
        carbon_intensity_g_per_kwh=56.0,
        carbon_intensity_source="table:country",
        tracker_version="0.1.0",
        metadata={
            "components": [
                {"kind": "cpu", "name": "package-0", "model": "AMD EPYC 7513", "method": "rapl",
                 "energy_kwh": 0.0001, "failure": None},
                {"kind": "gpu", "name": "gpu-0", "model": "NVIDIA H200", "method": "nvml_energy",
                 "energy_kwh": 0.0007, "failure": None},
                {"kind": "ram", "name": "ram", "model": "", "method": "constant",
                 "energy_kwh": 0.00001, "failure": None},
            ],
            "run_start_timestamp": "2026-11-28T20:00:00+00:00",
            "window_count": 0,
        },
    )
    values.update(overrides)
    return EmissionsData(**values)


def make_window(**overrides: Any) -> WindowRecord:
    total = make_total()
    values = total.to_dict()
    values.update(window_id=str(uuid.uuid4()), kind="epoch", name="epoch 0", epoch=0,
                  phase="train", start_timestamp="2026-11-28T20:00:00+00:00",
                  end_timestamp="2026-11-28T20:00:05+00:00")
    values.update(overrides)
    return WindowRecord(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


