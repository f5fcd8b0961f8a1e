"""Charts of per-epoch energy and emissions that a person reads at a glance.

- Units follow the figures: a small run is drawn in mWh and mg, a large one in kWh and kg
  (:func:`energy_unit`, :func:`mass_unit`), so no axis carries a ``1e-5`` offset.
- Per run, two panels sharing the epoch axis: energy as bars stacked per component, and emissions
  on their own axis below (not a scaled copy of the bars drawn over them).
- Legends sit outside the data, to the right of their panel; the y axes leave headroom above the
  highest bar or point.
- Legend entries are plain words (``CPU``, ``GPU``, ``RAM``; :func:`component_label` turns
  ``cpu:package-0`` into ``CPU package 0``), and titles name the project and the run.

:func:`epoch_figure` returns the matplotlib figure; :func:`codecarbon_callbacks.reports.plot_epochs`
saves it. matplotlib is imported by :func:`epoch_figure` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["component_label", "energy_unit", "epoch_figure", "mass_unit"]

#: energy units and their size in kWh, largest first
ENERGY_UNITS: tuple[tuple[str, float], ...] = (
    ("kWh", 1.0),
    ("Wh", 1e-3),
    ("mWh", 1e-6),
    ("µWh", 1e-9),
)
#: mass units and their size in kg, largest first
MASS_UNITS: tuple[tuple[str, float], ...] = (
    ("kg", 1.0),
    ("g", 1e-3),
    ("mg", 1e-6),
    ("µg", 1e-9),
)
#: the part of a chart's y range left empty above the highest value
HEADROOM = 0.18
#: how each kind is named and drawn
KIND_STYLE: dict[str, tuple[str, str]] = {
    "cpu": ("CPU", "#4C72B0"),
    "gpu": ("GPU", "#55A868"),
    "ram": ("RAM", "#C44E52"),
}
_METHOD_WORDS = {
    "rapl": "measured, RAPL",
    "nvml_energy": "measured, NVML counter",
    "nvml_power": "NVML power, integrated",
    "amdsmi_energy": "measured, AMD SMI counter",
    "amdsmi_power": "AMD SMI power, integrated",
    "tdp_estimate": "estimated from TDP and load",
    "constant": "fixed power, estimated",
}


def _pick(peak: float, units: Sequence[tuple[str, float]]) -> tuple[str, float]:
    for name, size in units:
        if abs(peak) >= size:
            return name, 1.0 / size
    name, size = units[-1] if peak else units[1]
    return name, 1.0 / size


def energy_unit(values_kwh: Iterable[float]) -> tuple[str, float]:
    """The unit to draw ``values_kwh`` in, and the factor from kWh to it.

    The largest unit in which the largest value is at least 1: ``[0.002, 0.004]`` kWh gives
    ``("Wh", 1000.0)``, ``[3e-6]`` gives ``("mWh", 1e6)``. All zero or empty: ``("Wh", 1000.0)``.
    """
    peak = max((abs(float(v)) for v in values_kwh if v == v), default=0.0)
    return _pick(peak, ENERGY_UNITS)


def mass_unit(values_kg: Iterable[float]) -> tuple[str, float]:
    """The unit to draw ``values_kg`` (emissions, kg CO2eq) in, and the factor from kg to it:
    ``[4e-6]`` gives ``("mg", 1e6)``; all zero or empty gives ``("g", 1000.0)``."""
    peak = max((abs(float(v)) for v in values_kg if v == v), default=0.0)
    return _pick(peak, MASS_UNITS)


def component_label(name: str, method: str | None = None) -> str:
    """A component's name (``cpu:package-0``, ``gpu:1``, ``ram``, ``cpu:constant``) in plain
    words, with how it was measured when ``method`` is given.

    Example:
        >>> component_label("cpu:package-0", "rapl")
        'CPU package 0 (measured, RAPL)'
        >>> component_label("cpu:constant")
        'CPU (fixed power)'
    """
    kind, _, detail = name.partition(":")
    words = KIND_STYLE.get(kind, (kind.upper(), ""))[0]
    if detail.isdigit():
        words += f" {detail}"
    elif detail.startswith(("package-", "dram-")):
        part, _, index = detail.partition("-")
        words += f" {'package' if part == 'package' else 'DRAM'} {index}"
    elif detail == "psys":
        words += " (whole platform, psys)"
    elif detail == "constant" and method is None:
        words += " (fixed power)"
    elif detail == "forced" and method is None:
        words += " (power you set)"
    elif detail and detail not in ("constant", "forced"):
        words += f" {detail}"
    if method:
        words += f" ({_METHOD_WORDS.get(method, method)})"
    return words


def _title(run_id: str, project: str | None) -> str:
    run = f"run {str(run_id)[:8]}"
    return f"{project} · {run}" if project else run


def _headroom(ax: Axes, peak: float) -> None:
    ax.set_ylim(0.0, peak * (1.0 + HEADROOM) if peak > 0 else 1.0)


def epoch_figure(
    epochs: pandas.DataFrame,
    *,
    title: str | None = None,
    projects: Mapping[str, str] | None = None,
    max_runs: int = 6,
) -> Figure:
    """A figure of per-epoch energy per component and emissions, for each run (the latest
    ``max_runs``), two panels per run sharing the epoch axis.

    Args:
        epochs: the output of :func:`codecarbon_callbacks.reports.epoch_summary` (not empty).
        title: the figure's title (default: the project when all runs share one).
        projects: each run's project name, by run id (see
            :func:`codecarbon_callbacks.reports.project_names`); the panels' titles name it.
        max_runs: how many runs to draw, the latest ones.

    Returns:
        A matplotlib figure (``Agg``-independent: the caller saves or shows it). Energy axes
        are labelled ``energy (<unit>)``, emissions axes ``emissions (<unit> CO2eq)``.

    Raises:
        ImportError: matplotlib is missing.
    """
    import matplotlib.pyplot as plt

    projects = projects or {}
    run_ids = list(dict.fromkeys(epochs["run_id"]))[-max_runs:]
    fig, axes = plt.subplots(
        2 * len(run_ids),
        1,
        figsize=(9.0, 4.6 * len(run_ids)),
        squeeze=False,
        layout="constrained",
        height_ratios=[3, 2] * len(run_ids),
    )
    e_name, e_factor = energy_unit(epochs["energy_kwh"])
    m_name, m_factor = mass_unit(epochs["emissions_kg"])
    for index, run_id in enumerate(run_ids):
        energy_ax, emissions_ax = axes[2 * index, 0], axes[2 * index + 1, 0]
        rows = epochs[epochs["run_id"] == run_id]
        x = list(range(len(rows)))
        labels = [str(e) for e in rows["epoch"]]
        bottom = [0.0] * len(rows)
        for kind, (words, color) in KIND_STYLE.items():
            values = [float(v) * e_factor for v in rows[f"{kind}_energy_kwh"].fillna(0.0)]
            if not any(values):
                continue
            energy_ax.bar(x, values, bottom=bottom, color=color, label=words, width=0.6)
            bottom = [b + v for b, v in zip(bottom, values)]
        _headroom(energy_ax, max(bottom, default=0.0))
        energy_ax.set_ylabel(f"energy ({e_name})")
        energy_ax.set_title(f"{_title(run_id, projects.get(str(run_id)))}: energy per epoch")
        energy_ax.legend(
            title="component", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0
        )
        energy_ax.set_xticks(x, labels)
        emissions = [float(v) * m_factor for v in rows["emissions_kg"].fillna(0.0)]
        emissions_ax.plot(x, emissions, color="black", marker="o", label="emissions")
        _headroom(emissions_ax, max(emissions, default=0.0))
        emissions_ax.set_ylabel(f"emissions ({m_name} CO2eq)")
        emissions_ax.set_xlabel("epoch")
        emissions_ax.set_xticks(x, labels)
        emissions_ax.set_xlim(energy_ax.get_xlim())
        energy_kwh, emissions_kg = rows["energy_kwh"].sum(), rows["emissions_kg"].sum()
        intensity = f" at {emissions_kg * 1000 / energy_kwh:.4g} gCO2eq/kWh" if energy_kwh else ""
        emissions_ax.set_title(f"emissions per epoch{intensity}", fontsize="medium")
        for ax in (energy_ax, emissions_ax):
            ax.yaxis.get_major_formatter().set_useOffset(False)  # type: ignore[attr-defined]
            ax.grid(axis="y", alpha=0.3)
    if title is None:
        names = {projects.get(str(r)) for r in run_ids}
        title = next(iter(names)) if len(names) == 1 and None not in names else None
    if title:
        fig.suptitle(title)
    return fig
