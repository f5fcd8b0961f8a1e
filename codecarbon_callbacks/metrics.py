"""The figures a callback logs, built from window records: names and values, no state.

Each function takes the records (or the run's totals) it reads and returns a flat
``{name: value}`` dict in the units its name says (kWh, kg CO2eq, s, W). The session calls them
when an epoch, an evaluation pass or a step/time window ends; the adapters log what they return.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData, Figures, WindowRecord

logger = logging.getLogger(__name__)

#: keys of the per-epoch figures logged to the framework
EPOCH_METRIC_KEYS = (
    "epoch_energy_kwh",
    "epoch_energy_uncertainty_kwh",
    "epoch_cpu_energy_kwh",
    "epoch_cpu_energy_uncertainty_kwh",
    "epoch_gpu_energy_kwh",
    "epoch_gpu_energy_uncertainty_kwh",
    "epoch_ram_energy_kwh",
    "epoch_ram_energy_uncertainty_kwh",
    "epoch_emissions_kg",
    "epoch_emissions_uncertainty_kg",
    "epoch_duration_s",
    "epoch_power_w",
    "total_energy_kwh",
    "total_energy_uncertainty_kwh",
    "total_emissions_kg",
    "total_duration_s",
)

#: the validation figures an epoch's metrics hold when it had a validation pass
VAL_METRIC_KEYS = (
    "val_energy_kwh",
    "val_energy_uncertainty_kwh",
    "val_emissions_kg",
    "val_duration_s",
)

#: the phases of the windows an epoch's figures sum (:func:`epoch_metrics`)
COUNTED_PHASES = frozenset({"train", "validation"})

#: the prefix of an evaluation pass's figures, per phase
PHASE_PREFIXES = {"validation": "val", "test": "test", "predict": "predict"}


def sum_records(records: Sequence[WindowRecord], prefix: str) -> dict[str, float]:
    """The records' energies (kWh, total and per component), emissions (kg) and duration (s),
    summed, each name starting with ``prefix``; next to each energy and the emissions, its
    uncertainty (95 % half-width), summed over the windows: a bound, since the sensor's share
    of it is common to them."""
    return {
        f"{prefix}energy_kwh": sum(r.energy_consumed for r in records),
        f"{prefix}energy_uncertainty_kwh": sum(r.energy_consumed_uncertainty_kwh for r in records),
        f"{prefix}cpu_energy_kwh": sum(r.cpu_energy for r in records),
        f"{prefix}cpu_energy_uncertainty_kwh": sum(r.cpu_energy_uncertainty_kwh for r in records),
        f"{prefix}gpu_energy_kwh": sum(r.gpu_energy for r in records),
        f"{prefix}gpu_energy_uncertainty_kwh": sum(r.gpu_energy_uncertainty_kwh for r in records),
        f"{prefix}ram_energy_kwh": sum(r.ram_energy for r in records),
        f"{prefix}ram_energy_uncertainty_kwh": sum(r.ram_energy_uncertainty_kwh for r in records),
        f"{prefix}emissions_kg": sum(r.emissions for r in records),
        f"{prefix}emissions_uncertainty_kg": sum(r.emissions_uncertainty_kg for r in records),
        f"{prefix}duration_s": sum(r.duration for r in records),
    }


def epoch_metrics(records: Sequence[WindowRecord], epoch: int) -> dict[str, float]:
    """One training epoch's figures from the records closed during it.

    ``epoch_*`` sum its train windows (``epoch_power_w`` is their mean power, 0 for no time);
    :data:`VAL_METRIC_KEYS` sum its validation passes, when it had any.
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
        metrics.update({k: val_figures[k] for k in VAL_METRIC_KEYS})
    return metrics


def phase_metrics(record: WindowRecord, phase: str) -> dict[str, float]:
    """An evaluation pass's figures: ``val_*`` / ``test_*`` / ``predict_*`` energy (kWh) and
    its uncertainty (95 % half-width, kWh), emissions (kg) and duration (s)."""
    prefix = PHASE_PREFIXES.get(phase, phase)
    return {
        f"{prefix}_energy_kwh": record.energy_consumed,
        f"{prefix}_energy_uncertainty_kwh": record.energy_consumed_uncertainty_kwh,
        f"{prefix}_emissions_kg": record.emissions,
        f"{prefix}_duration_s": record.duration,
    }


def window_metrics(record: WindowRecord) -> dict[str, float]:
    """A step or time window's figures: ``window_energy_kwh``, ``window_emissions_kg``,
    ``window_duration_s``."""
    return {
        "window_energy_kwh": record.energy_consumed,
        "window_energy_uncertainty_kwh": record.energy_consumed_uncertainty_kwh,
        "window_emissions_kg": record.emissions,
        "window_duration_s": record.duration,
    }


def totals_metrics(total: EmissionsData | Figures | None) -> dict[str, float]:
    """The run's cumulative ``total_energy_kwh``, ``total_emissions_kg`` and
    ``total_duration_s``; empty without totals."""
    if total is None:
        return {}
    return {
        "total_energy_kwh": total.energy_consumed,
        "total_energy_uncertainty_kwh": total.energy_consumed_uncertainty_kwh,
        "total_emissions_kg": total.emissions,
        "total_duration_s": total.duration,
    }


#: the counts of training work, each with the name of its energy per unit (kWh per count)
WORK_UNITS: dict[str, str] = {
    "samples": "energy_per_sample_kwh",
    "tokens": "energy_per_token_kwh",
    "optimizer_steps": "energy_per_step_kwh",
}


@dataclass
class WorkCounts:
    """Cumulative training work since a run began; None where the framework cannot know it.

    Attributes:
        samples: training samples seen (over all ranks), from batch sizes and steps.
        tokens: input tokens seen (over all ranks), the Hugging Face Trainer's
            ``num_input_tokens_seen``.
        optimizer_steps: optimizer steps taken.
    """

    samples: int | None = None
    tokens: int | None = None
    optimizer_steps: int | None = None

    def copy(self) -> WorkCounts:
        return WorkCounts(self.samples, self.tokens, self.optimizer_steps)

    def since(self, start: WorkCounts) -> dict[str, int | None]:
        """The work done from ``start`` to now, per count; None where either end is unknown."""
        out: dict[str, int | None] = {}
        for name in WORK_UNITS:
            now, then = getattr(self, name), getattr(start, name)
            out[name] = now - (then or 0) if now is not None else None
        return out


def per_unit(energy_kwh: float, work: dict[str, int | None]) -> dict[str, float | None]:
    """Energy per sample, per token and per optimizer step (kWh per count) for ``work``
    (:meth:`WorkCounts.since`); None where a count is unknown or zero."""
    return {WORK_UNITS[name]: energy_kwh / count if count else None for name, count in work.items()}


class WorkCounter:
    """A run's training work, counted by an adapter, split over its train windows and epochs.

    The adapter reports cumulative counts, either pushed (:meth:`update`) or pulled from a
    ``source`` it sets: a callable returning the same counts, called only at window and epoch
    edges (so that an adapter counting every batch keeps a plain integer and never calls in
    here per batch). The session says when a train window and an epoch begin; :meth:`stamp`
    writes a closing train window's counts and energy per unit into its record before the
    outputs write it (the session's record combiner calls it).
    """

    def __init__(self) -> None:
        self.counts = WorkCounts()
        self._window: tuple[str, WorkCounts] | None = None
        self._epoch_start = WorkCounts()
        #: the work of train windows closed and not stamped yet, by window id
        self._closed: dict[str, dict[str, int | None]] = {}
        #: cumulative counts read at each edge (None: only what update() pushed)
        self.source: Callable[[], Mapping[str, int | None]] | None = None

    def _pull(self) -> None:
        source = self.source
        if source is None:
            return
        try:
            counts = source()
        except Exception as e:  # counting is best effort: the energy figures stay
            logger.debug("the work counts could not be read: %s", e)
            return
        self.update(**counts)

    def update(self, **counts: int | None) -> None:
        """Cumulative counts since the run began (``samples``, ``tokens``,
        ``optimizer_steps``); None leaves a count as it is."""
        for name, value in counts.items():
            if name not in WORK_UNITS:
                raise ValueError(f"counts: unknown count {name!r} (one of {', '.join(WORK_UNITS)})")
            if value is not None:
                setattr(self.counts, name, int(value))

    def window_opened(self, window_id: str, *, pull: bool = True) -> None:
        """A train window opened: its work is counted from now (``pull``: read the counts;
        False where they were just read at this edge)."""
        if pull:
            self._pull()
        self._window = (window_id, self.counts.copy())

    def epoch_began(self) -> None:
        self._pull()
        self._epoch_start = self.counts.copy()

    def window_closed(self, window_id: str, *, pull: bool = True) -> bool:
        """The train window ``window_id`` closes now: its work is fixed, for a record built
        later (``switch_window_later``). Returns whether the counts were read."""
        if self._window is None or self._window[0] != window_id:
            return False
        if pull:
            self._pull()
        self._closed[window_id] = self.counts.since(self._window[1])
        return pull

    def stamp(self, record: EmissionsData) -> None:
        """Fill a train window's counts and energies per unit (others untouched): those fixed
        when it closed, else (a record built at its close) the work so far."""
        window_id = getattr(record, "window_id", None)
        work = self._closed.pop(window_id, None) if window_id else None
        if work is None:
            if self._window is None or window_id != self._window[0]:
                return
            self._pull()
            work = self.counts.since(self._window[1])
        for name, value in {**work, **per_unit(record.energy_consumed, work)}.items():
            setattr(record, name, value)

    def epoch_figures(self, energy_kwh: float) -> dict[str, float]:
        """The epoch's ``epoch_samples``, ``epoch_tokens``, ``epoch_optimizer_steps`` and
        ``epoch_energy_per_{sample,token,step}_kwh`` for its train energy; unknown ones left out."""
        self._pull()
        work = self.counts.since(self._epoch_start)
        figures = {**work, **per_unit(energy_kwh, work)}
        return {f"epoch_{k}": float(v) for k, v in figures.items() if v is not None}


__all__ = [
    "COUNTED_PHASES",
    "EPOCH_METRIC_KEYS",
    "WORK_UNITS",
    "WorkCounter",
    "WorkCounts",
    "per_unit",
    "PHASE_PREFIXES",
    "epoch_metrics",
    "phase_metrics",
    "sum_records",
    "totals_metrics",
    "window_metrics",
]
