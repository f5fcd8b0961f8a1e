"""The figures a callback logs, built from window records: names and values, no state.

Each function takes the records (or the run's totals) it reads and returns a flat
``{name: value}`` dict in the units its name says (kWh, kg CO2eq, s, W). The session calls them
when an epoch, an evaluation pass or a step/time window ends; the adapters log what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData, WindowRecord

#: keys of the per-epoch figures logged to the framework
EPOCH_METRIC_KEYS = (
    "epoch_energy_kwh",
    "epoch_cpu_energy_kwh",
    "epoch_gpu_energy_kwh",
    "epoch_ram_energy_kwh",
    "epoch_emissions_kg",
    "epoch_duration_s",
    "epoch_power_w",
    "total_energy_kwh",
    "total_emissions_kg",
    "total_duration_s",
)

#: the prefix of an evaluation pass's figures, per phase
PHASE_PREFIXES = {"validation": "val", "test": "test", "predict": "predict"}


def sum_records(records: Sequence[WindowRecord], prefix: str) -> dict[str, float]:
    """The records' energies (kWh, total and per component), emissions (kg) and duration (s),
    summed, each name starting with ``prefix``."""
    return {
        f"{prefix}energy_kwh": sum(r.energy_consumed for r in records),
        f"{prefix}cpu_energy_kwh": sum(r.cpu_energy for r in records),
        f"{prefix}gpu_energy_kwh": sum(r.gpu_energy for r in records),
        f"{prefix}ram_energy_kwh": sum(r.ram_energy for r in records),
        f"{prefix}emissions_kg": sum(r.emissions for r in records),
        f"{prefix}duration_s": sum(r.duration for r in records),
    }


def epoch_metrics(records: Sequence[WindowRecord], epoch: int) -> dict[str, float]:
    """One training epoch's figures from the records closed during it.

    ``epoch_*`` sum its train windows (``epoch_power_w`` is their mean power, 0 for no time);
    ``val_energy_kwh``, ``val_emissions_kg`` and ``val_duration_s`` sum its validation passes,
    when it had any.
    """
    train = [r for r in records if r.kind == "epoch" and r.epoch == epoch and r.phase == "train"]
    val = [r for r in records if r.kind == "phase" and r.epoch == epoch and r.phase == "validation"]
    metrics = sum_records(train, "epoch_")
    metrics["epoch_power_w"] = (
        metrics["epoch_energy_kwh"] * 3.6e6 / metrics["epoch_duration_s"]
        if metrics["epoch_duration_s"] > 0
        else 0.0
    )
    if val:
        val_figures = sum_records(val, "val_")
        metrics.update(
            {k: val_figures[k] for k in ("val_energy_kwh", "val_emissions_kg", "val_duration_s")}
        )
    return metrics


def phase_metrics(record: WindowRecord, phase: str) -> dict[str, float]:
    """An evaluation pass's figures: ``val_*`` / ``test_*`` / ``predict_*`` energy (kWh),
    emissions (kg) and duration (s)."""
    prefix = PHASE_PREFIXES.get(phase, phase)
    return {
        f"{prefix}_energy_kwh": record.energy_consumed,
        f"{prefix}_emissions_kg": record.emissions,
        f"{prefix}_duration_s": record.duration,
    }


def window_metrics(record: WindowRecord) -> dict[str, float]:
    """A step or time window's figures: ``window_energy_kwh``, ``window_emissions_kg``,
    ``window_duration_s``."""
    return {
        "window_energy_kwh": record.energy_consumed,
        "window_emissions_kg": record.emissions,
        "window_duration_s": record.duration,
    }


def totals_metrics(total: EmissionsData | None) -> dict[str, float]:
    """The run's cumulative ``total_energy_kwh``, ``total_emissions_kg`` and
    ``total_duration_s``; empty without totals."""
    if total is None:
        return {}
    return {
        "total_energy_kwh": total.energy_consumed,
        "total_emissions_kg": total.emissions,
        "total_duration_s": total.duration,
    }


__all__ = [
    "EPOCH_METRIC_KEYS",
    "PHASE_PREFIXES",
    "epoch_metrics",
    "phase_metrics",
    "sum_records",
    "totals_metrics",
    "window_metrics",
]
