"""Records the tracker produces: EmissionsData for a run, WindowRecord for an epoch, phase or task.

Units follow CodeCarbon's ``emissions.csv``: duration in s, emissions in kg CO2eq, emissions_rate in
kg/s, powers in W, energies in kWh, water in L, memory in GB. Our own columns put their unit in the
name (``carbon_intensity_g_per_kwh``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

#: The columns CodeCarbon 3.3 writes to emissions.csv, in its order.
CODECARBON_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)

#: Our own columns, after CodeCarbon's. Fixed: everything variable goes into ``metadata`` (JSON).
EXTRA_COLUMNS: tuple[str, ...] = (
    "status",
    "cpu_method",
    "gpu_method",
    "ram_method",
    "carbon_intensity_g_per_kwh",
    "carbon_intensity_source",
    "tracker_version",
    "metadata",
)

#: The window columns of emissions_windows.csv, between CodeCarbon's and ours.
WINDOW_COLUMNS: tuple[str, ...] = (
    "window_id",
    "kind",
    "name",
    "epoch",
    "phase",
    "start_timestamp",
    "end_timestamp",
    "samples",
    "tokens",
    "optimizer_steps",
    "energy_per_sample_kwh",
    "energy_per_token_kwh",
    "energy_per_step_kwh",
)

RUN_CSV_COLUMNS: tuple[str, ...] = CODECARBON_COLUMNS + EXTRA_COLUMNS
WINDOW_CSV_COLUMNS: tuple[str, ...] = CODECARBON_COLUMNS + WINDOW_COLUMNS + EXTRA_COLUMNS

#: The fields that add up over time: a run's totals are their sum over its windows, a delta is
#: their difference between two totals, a resumed run starts from saved values of them.
ADDITIVE_FIELDS: tuple[str, ...] = (
    "duration",
    "emissions",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
)
#: The fields summed over the ranks of a distributed run (each rank measures its own share; the
#: duration is the run's, not a sum).
RANK_SUMMED_FIELDS: tuple[str, ...] = (
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "emissions",
    "water_consumed",
    "cpu_power",
    "gpu_power",
    "ram_power",
)
#: A tracker's ``state_dict()`` keys (unit in the name) and the record fields they hold.
STATE_KEYS: dict[str, str] = {
    "cpu_energy_kwh": "cpu_energy",
    "gpu_energy_kwh": "gpu_energy",
    "ram_energy_kwh": "ram_energy",
    "emissions_kg": "emissions",
    "duration_s": "duration",
    "water_l": "water_consumed",
}

WINDOW_KINDS = ("run", "task", "epoch", "phase", "step", "time", "flush")
PHASES = ("train", "validation", "test", "predict", "other")
STATUSES = ("running", "completed", "incomplete", "failed", "interrupted", "budget_stop")


@dataclass
class EmissionsData:
    """One run's figures (or a delta of them), with CodeCarbon's field names and units."""

    timestamp: str = ""
    project_name: str = ""
    run_id: str = ""
    experiment_id: str = ""
    duration: float = 0.0
    emissions: float = 0.0
    emissions_rate: float = 0.0
    cpu_power: float = 0.0
    gpu_power: float = 0.0
    ram_power: float = 0.0
    cpu_energy: float = 0.0
    gpu_energy: float = 0.0
    ram_energy: float = 0.0
    energy_consumed: float = 0.0
    water_consumed: float = 0.0
    country_name: str = ""
    country_iso_code: str = ""
    region: str = ""
    cloud_provider: str = ""
    cloud_region: str = ""
    os: str = ""
    python_version: str = ""
    codecarbon_version: str = ""
    cpu_count: int = 0
    cpu_model: str = ""
    gpu_count: int = 0
    gpu_model: str = ""
    longitude: float | None = None
    latitude: float | None = None
    ram_total_size: float = 0.0
    tracking_mode: str = "machine"
    cpu_utilization_percent: float = 0.0
    gpu_utilization_percent: float = 0.0
    ram_utilization_percent: float = 0.0
    ram_used_gb: float = 0.0
    on_cloud: str = "N"
    pue: float = 1.0
    wue: float = 0.0
    # ours
    status: str = "completed"
    cpu_method: str = ""
    gpu_method: str = ""
    ram_method: str = ""
    carbon_intensity_g_per_kwh: float = 0.0
    carbon_intensity_source: str = ""
    tracker_version: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, Any]:
        """CodeCarbon's ``EmissionsData.values``: the fields as an ordered dict."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_row(self, columns: tuple[str, ...]) -> dict[str, Any]:
        """The record as a CSV row over ``columns`` (metadata as JSON, None as empty)."""
        out: dict[str, Any] = {}
        for name in columns:
            value = getattr(self, name, "")
            if name == "metadata":
                value = json.dumps(value, sort_keys=True, default=str) if value else "{}"
            elif value is None:
                value = ""
            out[name] = value
        return out

    def compute_delta_emission(self, previous: EmissionsData) -> EmissionsData:
        """The difference ``self - previous`` for the additive fields (CodeCarbon's name)."""
        delta = dataclasses.replace(self, metadata=dict(self.metadata))
        for name in ADDITIVE_FIELDS:
            setattr(delta, name, getattr(self, name) - getattr(previous, name))
        delta.emissions_rate = delta.emissions / delta.duration if delta.duration > 0 else 0.0
        return delta


@dataclass
class WindowRecord(EmissionsData):
    """A window of a run (an epoch, a phase, a task, a flush): the run's fields plus where it lies.

    ``timestamp`` is when the window closed; ``start_timestamp`` / ``end_timestamp`` are ISO 8601
    UTC times of its edges.
    """

    window_id: str = ""
    kind: str = "task"
    name: str = ""
    epoch: int | None = None
    phase: str = "other"
    start_timestamp: str = ""
    end_timestamp: str = ""
    #: training work in the window (train windows of a framework's fit; None: not known) and
    #: its energy per unit, kWh per sample, per input token, per optimizer step
    samples: int | None = None
    tokens: int | None = None
    optimizer_steps: int | None = None
    energy_per_sample_kwh: float | None = None
    energy_per_token_kwh: float | None = None
    energy_per_step_kwh: float | None = None


def totals_from_state(state: dict[str, float], run_id: str = "") -> EmissionsData:
    """The totals a ``state_dict()`` holds (``STATE_KEYS``), as a record; missing keys are 0."""
    record = EmissionsData(run_id=run_id)
    for key, name in STATE_KEYS.items():
        setattr(record, name, float(state.get(key) or 0.0))
    record.energy_consumed = record.cpu_energy + record.gpu_energy + record.ram_energy
    return record
