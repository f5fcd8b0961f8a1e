"""Records the tracker produces: EmissionsData for a run, WindowRecord for an epoch, phase or task.

Units follow CodeCarbon's ``emissions.csv``: duration in s, emissions in kg CO2eq, emissions_rate in
kg/s, powers in W, energies in kWh, water in L, memory in GB. Our own columns put their unit in the
name (``carbon_intensity_g_per_kwh``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codecarbon_callbacks_core._tracker_records import OpenWindow

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

#: How far each figure can be off: the half-width of a 95 % interval, in the figure's unit
#: (kWh, kg CO2eq). Appended last (issue 16): a file with the earlier header is backed up and a
#: new one started. The terms behind them are in ``metadata["uncertainty"]``.
UNCERTAINTY_COLUMNS: tuple[str, ...] = (
    "cpu_energy_uncertainty_kwh",
    "gpu_energy_uncertainty_kwh",
    "ram_energy_uncertainty_kwh",
    "energy_consumed_uncertainty_kwh",
    "emissions_uncertainty_kg",
)

RUN_CSV_COLUMNS: tuple[str, ...] = CODECARBON_COLUMNS + EXTRA_COLUMNS + UNCERTAINTY_COLUMNS
WINDOW_CSV_COLUMNS: tuple[str, ...] = (
    CODECARBON_COLUMNS + WINDOW_COLUMNS + EXTRA_COLUMNS + UNCERTAINTY_COLUMNS
)

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
#: The fields combined over ranks in quadrature (independent 95 % half-widths).
RANK_QUADRATURE_FIELDS: tuple[str, ...] = UNCERTAINTY_COLUMNS
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
    # 95 % half-widths (UNCERTAINTY_COLUMNS); not additive: a delta keeps its total's
    cpu_energy_uncertainty_kwh: float = 0.0
    gpu_energy_uncertainty_kwh: float = 0.0
    ram_energy_uncertainty_kwh: float = 0.0
    energy_consumed_uncertainty_kwh: float = 0.0
    emissions_uncertainty_kg: float = 0.0

    @property
    def values(self) -> dict[str, Any]:
        """CodeCarbon's ``EmissionsData.values``: the fields as an ordered dict."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def toJSON(self) -> str:  # noqa: N802 - CodeCarbon's name
        """The record as indented JSON with sorted keys (CodeCarbon's ``toJSON``)."""
        return json.dumps(self.to_dict(), default=str, sort_keys=True, indent=4)

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

    def compute_delta_emission(self, previous_emission: EmissionsData) -> EmissionsData:
        """The difference ``self - previous_emission`` for the additive fields, as a new record
        (CodeCarbon's name; CodeCarbon changes ``self`` instead and returns None)."""
        delta = dataclasses.replace(self, metadata=dict(self.metadata))
        for name in ADDITIVE_FIELDS:
            setattr(delta, name, getattr(self, name) - getattr(previous_emission, name))
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


@dataclass
class TaskEmissionsData:
    """CodeCarbon's record of one task (``codecarbon.output.TaskEmissionsData``): the run's
    fields without ``experiment_id``, ``pue`` and ``wue``, after ``task_name``; the rows of the
    task file ``emissions_<experiment_name>_<run_id>.csv``. Units as :class:`EmissionsData`."""

    task_name: str
    timestamp: str
    project_name: str
    run_id: str
    duration: float
    emissions: float
    emissions_rate: float
    cpu_power: float
    gpu_power: float
    ram_power: float
    cpu_energy: float
    gpu_energy: float
    ram_energy: float
    energy_consumed: float
    water_consumed: float
    country_name: str
    country_iso_code: str
    region: str
    cloud_provider: str
    cloud_region: str
    os: str
    python_version: str
    codecarbon_version: str
    cpu_count: float
    cpu_model: str
    gpu_count: float
    gpu_model: str
    longitude: float
    latitude: float
    ram_total_size: float
    tracking_mode: str
    cpu_utilization_percent: float = 0.0
    gpu_utilization_percent: float = 0.0
    ram_utilization_percent: float = 0.0
    ram_used_gb: float = 0.0
    on_cloud: str = "N"

    @property
    def values(self) -> dict[str, Any]:
        """The fields as an ordered dict (CodeCarbon's ``values``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_record(cls, record: EmissionsData) -> TaskEmissionsData:
        """A task's record (a :class:`WindowRecord`: its ``name`` is the task's) in
        CodeCarbon's form."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "task_name"]
        task_name = getattr(record, "name", "") or ""
        return cls(task_name, *(getattr(record, name) for name in names))


#: The task file's columns (CodeCarbon's TaskEmissionsData fields, in order).
TASK_CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TaskEmissionsData))


def totals_from_state(state: dict[str, float], run_id: str = "") -> EmissionsData:
    """The totals a ``state_dict()`` holds (``STATE_KEYS``), as a record; missing keys are 0."""
    record = EmissionsData(run_id=run_id)
    for key, name in STATE_KEYS.items():
        setattr(record, name, float(state.get(key) or 0.0))
    record.energy_consumed = record.cpu_energy + record.gpu_energy + record.ram_energy
    return record


#: the figures of a record (:class:`Figures`): energies, powers, emissions, water, duration and
#: the uncertainties, by their record names
FIGURE_FIELDS = (
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "duration",
    "emissions",
    "emissions_rate",
    "water_consumed",
    "cpu_energy_uncertainty_kwh",
    "gpu_energy_uncertainty_kwh",
    "ram_energy_uncertainty_kwh",
    "energy_consumed_uncertainty_kwh",
    "emissions_uncertainty_kg",
)


class Figures:
    """A window's or a run's figures without the rest of its record: what a framework logs at
    an edge, for a quarter of a record's cost (issue 13). Each attribute is the record's own
    (:class:`~codecarbon_callbacks_core.records.EmissionsData`), in its units: energies kWh,
    powers W, emissions kg CO2eq, ``emissions_rate`` kg/s, water L, ``duration`` s; the
    uncertainties are 95 % half-widths. A window's figures also carry its ``window_id``,
    ``kind``, ``name``, ``epoch`` and ``phase`` (empty for a run's). :func:`fill_record` fills
    a record from the same figures, so the two never differ."""

    __slots__ = (*FIGURE_FIELDS, "window_id", "kind", "name", "epoch", "phase")

    cpu_power: float
    gpu_power: float
    ram_power: float
    cpu_energy: float
    gpu_energy: float
    ram_energy: float
    energy_consumed: float
    duration: float
    emissions: float
    emissions_rate: float
    water_consumed: float
    cpu_energy_uncertainty_kwh: float
    gpu_energy_uncertainty_kwh: float
    ram_energy_uncertainty_kwh: float
    energy_consumed_uncertainty_kwh: float
    emissions_uncertainty_kg: float
    window_id: str
    kind: str
    name: str
    epoch: int | None
    phase: str

    def __init__(self, window: OpenWindow | None = None) -> None:
        if window is None:
            self.window_id = self.kind = self.name = self.phase = ""
            self.epoch = None
        else:
            self.window_id, self.kind, self.name = window.window_id, window.kind, window.name
            self.epoch, self.phase = window.epoch, window.phase

    def fill(self, record: EmissionsData) -> None:
        """Set these figures on ``record`` (the fields of :data:`FIGURE_FIELDS`)."""
        for name in FIGURE_FIELDS:
            setattr(record, name, getattr(self, name))

    @classmethod
    def of(cls, record: EmissionsData) -> Figures:
        """The figures of a record built already (a window's identity too, where it has one)."""
        figures = cls()
        for name in FIGURE_FIELDS:
            setattr(figures, name, getattr(record, name))
        for name in ("window_id", "kind", "name", "epoch", "phase"):
            if hasattr(record, name):
                setattr(figures, name, getattr(record, name))
        return figures
