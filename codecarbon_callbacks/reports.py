"""Read emissions reports and turn them into tables and plots.

The public library behind ``codecarbon-callbacks report``, the examples and the notebook. It reads
the CSV files the trackers write (``emissions.csv``: one row per run and flush; and
``emissions_windows.csv``: one row per epoch, phase, step, task or flush window) with the core's
:func:`~codecarbon_callbacks_core.output.file.read_emissions`, and summarises them:

- :func:`load_reports`: every run file and window file under some paths, as :class:`Reports`;
- :func:`select_run`, :func:`last_run_id`: keep one run;
- :func:`run_summary`, :func:`epoch_summary`, :func:`task_summary`: one row per run, per
  (run, epoch), per task, in the files' units (kWh, kg CO2eq, s, W);
- :func:`format_table`: a fixed-width text table (Wh and g CO2eq);
- :func:`plot_epochs`: a PNG chart of per-epoch energy per component and emissions
  (:mod:`codecarbon_callbacks.report_plots` draws it); :func:`project_names`: each run's project.

pandas is imported when a function needs it (matplotlib only by :func:`plot_epochs`); importing
this module costs neither.

Example:
    >>> from codecarbon_callbacks.reports import epoch_summary, format_table, load_reports
    >>> reports = load_reports(["example_output"])  # doctest: +SKIP
    >>> print(format_table(epoch_summary(reports.windows), "epochs"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.errors import CodeCarbonCallbacksError

if TYPE_CHECKING:
    import pandas

__all__ = [
    "J_PER_KWH",
    "TILING_KINDS",
    "ReportError",
    "Reports",
    "epoch_summary",
    "format_table",
    "last_run_id",
    "load_reports",
    "plot_epochs",
    "project_names",
    "run_summary",
    "select_run",
    "task_summary",
]

#: joules in one kWh
J_PER_KWH = 3.6e6

#: window kinds that tile a run (their energies add up); step/time/flush windows overlap them
TILING_KINDS = ("epoch", "phase")


class ReportError(CodeCarbonCallbacksError):
    """Reports cannot be read or drawn: a path is missing, no report is found, a file does not
    parse as an emissions CSV, or a chart cannot be made (the message says which and why)."""


@dataclass
class Reports:
    """The CSV reports found under some paths, as :func:`load_reports` returns them.

    Attributes:
        runs: the rows of every run file (``emissions.csv``, ours or CodeCarbon's), one per run
            and per flush, as :func:`~codecarbon_callbacks_core.output.file.read_emissions`
            types them (energies in kWh, emissions in kg CO2eq, durations in s, timestamps in
            UTC), plus ``source_file``; None when no run file was found.
        windows: the rows of every window file (``emissions_windows.csv``), typed the same way;
            None when no window file was found.
        run_files, window_files: the paths read, in the order read.
        fallback_files: those of them that are fallback files: rows a tracker could not write
            to its output folder at stop or exit, kept in the user's cache folder (see
            :func:`~codecarbon_callbacks_core.output.file.fallback_path`).
    """

    runs: pandas.DataFrame | None = None
    windows: pandas.DataFrame | None = None
    run_files: list[str] = field(default_factory=list)
    window_files: list[str] = field(default_factory=list)
    fallback_files: list[str] = field(default_factory=list)


def _csv_header(path: Path) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader([f.readline()]), [])
    except (OSError, UnicodeDecodeError):
        return []


def _candidate_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """The CSV files under ``paths`` and, apart, the fallback files kept for them."""
    from codecarbon_callbacks_core.output.file import fallback_files, fallback_path

    files: list[Path] = []
    fallbacks: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() or not path.exists():
            found = fallback_files(path)
            if not path.exists() and not found:
                raise ReportError(f"{raw}: no such file or folder")
            if path.is_dir():
                files.extend(sorted(p for p in path.glob("*.csv") if p.is_file()))
            fallbacks.extend(found)
        else:
            files.append(path)
            if fallback_path(path).is_file():
                fallbacks.append(fallback_path(path))
    return files, [p for p in dict.fromkeys(fallbacks) if p not in files]


def load_reports(paths: Iterable[str | os.PathLike[str]]) -> Reports:
    """Read every run file and window file among ``paths`` (files, or folders of ``*.csv``).

    A file is recognised by its header: a ``window_id`` column makes it a window file
    (``emissions_windows.csv``), ``run_id`` + ``energy_consumed`` a run file (``emissions.csv``,
    ours or CodeCarbon's). Other CSV files in a folder are skipped, and so are CodeCarbon's task
    files (``emissions_<experiment>_<run_id>.csv``, a ``task_name`` column): the tasks they hold
    are in the window file.

    Rows that a tracker could not write to a folder at stop or exit went to a fallback file in
    the user's cache folder: they are read too, for each folder given (even one that no longer
    exists) and each file given, and named in ``Reports.fallback_files``.

    Zone-less timestamps (CodeCarbon writes the local time of the machine that ran) are read as
    this machine's local time, and ours (UTC) keep their instant, so runs from both sort on one
    time line.

    Args:
        paths: CSV files or folders (a folder's ``*.csv`` files are read, in name order).

    Returns:
        The rows found, with the files they came from (see :class:`Reports`).

    Raises:
        ReportError: a path does not exist, no report is found, or a report file cannot be
            parsed (the message names the file).
    """
    import pandas as pd
    from codecarbon_callbacks_core.output.file import read_emissions

    reports = Reports()
    run_frames: list[pd.DataFrame] = []
    window_frames: list[pd.DataFrame] = []
    given = list(paths)
    files, fallbacks = _candidate_files(given)
    reports.fallback_files = [str(p) for p in fallbacks]
    for path in files + fallbacks:
        header = _csv_header(path)
        if "window_id" in header:
            kind = "windows"
        elif "task_name" in header:
            continue  # CodeCarbon's task file: its tasks are in the window file too
        elif "run_id" in header and "energy_consumed" in header:
            kind = "runs"
        else:
            continue
        try:
            frame = read_emissions(path, tz="local")
        except Exception as e:  # noqa: BLE001 - any parse failure becomes one clear line
            raise ReportError(
                f"{path}: cannot be read as an emissions CSV ({type(e).__name__}: {e})"
            ) from None
        frame["source_file"] = str(path)
        if kind == "windows":
            window_frames.append(frame)
            reports.window_files.append(str(path))
        else:
            run_frames.append(frame)
            reports.run_files.append(str(path))
    if not run_frames and not window_frames:
        where = ", ".join(str(p) for p in given)
        raise ReportError(f"no emissions.csv or emissions_windows.csv found in {where}")
    if run_frames:
        reports.runs = pd.concat(run_frames, ignore_index=True)
    if window_frames:
        reports.windows = pd.concat(window_frames, ignore_index=True)
    return reports


def select_run(frame: pandas.DataFrame | None, run: str | None) -> pandas.DataFrame | None:
    """The rows of ``frame`` whose ``run_id`` starts with ``run`` (all of them when ``run`` is
    None; None when ``frame`` is None). An unknown prefix gives an empty frame, not an error."""
    if frame is None or run is None:
        return frame
    return frame[frame["run_id"].astype(str).str.startswith(run)]


def last_run_id(reports: Reports) -> str | None:
    """The ``run_id`` of the run that ended last: the latest ``timestamp`` among the run rows,
    else the latest ``end_timestamp`` among the window rows; None when there is no row."""
    for frame, column in ((reports.runs, "timestamp"), (reports.windows, "end_timestamp")):
        if frame is not None and len(frame):
            ordered = frame.sort_values(column, kind="stable", na_position="first")
            return str(ordered["run_id"].iloc[-1])
    return None


def run_summary(runs: pandas.DataFrame | None) -> pandas.DataFrame:
    """One row per run: its latest record (a run's final row replaces its flushed ones).

    Args:
        runs: run rows, as :attr:`Reports.runs` (None or empty gives an empty frame).

    Returns:
        A frame sorted by end time, with columns run_id, project_name, status (``completed``
        where the file has none, as CodeCarbon's), end (UTC timestamp), duration_s (s),
        energy_kwh, cpu_energy_kwh, gpu_energy_kwh, ram_energy_kwh (kWh), emissions_kg
        (kg CO2eq), carbon_intensity_g_per_kwh (gCO2eq/kWh; NaN in CodeCarbon's files),
        carbon_intensity_source, methods (e.g. ``"cpu=rapl gpu=nvml_energy ram=constant"``).
    """
    import pandas as pd

    if runs is None or not len(runs):
        return pd.DataFrame()
    ordered = runs.sort_values("timestamp", kind="stable", na_position="first")
    latest = ordered.groupby("run_id", sort=False).tail(1)

    def column(name: str, default: Any = "") -> pd.Series:
        if name in latest.columns:
            return latest[name]
        return pd.Series([default] * len(latest), index=latest.index)

    methods = []
    for _, row in latest.iterrows():
        parts = [
            f"{k}={row.get(f'{k}_method')}" for k in ("cpu", "gpu", "ram") if row.get(f"{k}_method")
        ]
        methods.append(" ".join(parts))
    summary = pd.DataFrame(
        {
            "run_id": latest["run_id"].astype(str),
            "project_name": column("project_name"),
            "status": column("status", "completed").replace("", "completed"),
            "end": latest["timestamp"],
            "duration_s": latest["duration"],
            "energy_kwh": latest["energy_consumed"],
            "cpu_energy_kwh": latest["cpu_energy"],
            "gpu_energy_kwh": latest["gpu_energy"],
            "ram_energy_kwh": latest["ram_energy"],
            "emissions_kg": latest["emissions"],
            "carbon_intensity_g_per_kwh": column("carbon_intensity_g_per_kwh", float("nan")),
            "carbon_intensity_source": column("carbon_intensity_source"),
            "methods": methods,
        }
    )
    return summary.sort_values("end", kind="stable").reset_index(drop=True)


def epoch_summary(windows: pandas.DataFrame | None) -> pandas.DataFrame:
    """One row per (run, epoch): the epoch's tiling windows added up.

    The session tiles a run with ``epoch`` (training) and ``phase`` (validation, other) windows;
    every one of them that carries an epoch number counts towards that epoch, so train and
    validation energy both land in their epoch. Step, time, flush and task windows overlap
    these and are left out.

    Args:
        windows: window rows, as :attr:`Reports.windows` (None, empty or without epochs gives
            an empty frame with the columns below).

    Returns:
        A frame in the order the epochs started, with columns run_id, epoch (nullable Int64),
        duration_s (s), energy_kwh, cpu_energy_kwh, gpu_energy_kwh, ram_energy_kwh (kWh),
        emissions_kg (kg CO2eq), train_energy_kwh and validation_energy_kwh (kWh of the
        ``train`` and ``validation`` phases), mean_power_w (W: energy / duration; 0 for an
        empty epoch), status (the worst status among the epoch's windows).
    """
    import pandas as pd

    columns = [
        "run_id",
        "epoch",
        "duration_s",
        "energy_kwh",
        "cpu_energy_kwh",
        "gpu_energy_kwh",
        "ram_energy_kwh",
        "emissions_kg",
        "train_energy_kwh",
        "validation_energy_kwh",
        "mean_power_w",
        "status",
    ]
    if windows is None or not len(windows) or "epoch" not in windows.columns:
        return pd.DataFrame(columns=columns)
    selected = windows[windows["kind"].isin(TILING_KINDS) & windows["epoch"].notna()].copy()
    if not len(selected):
        return pd.DataFrame(columns=columns)
    selected["train_energy"] = selected["energy_consumed"].where(selected["phase"] == "train", 0.0)
    selected["validation_energy"] = selected["energy_consumed"].where(
        selected["phase"] == "validation", 0.0
    )
    selected["first_start"] = selected["start_timestamp"]
    grouped = selected.groupby(["run_id", "epoch"], sort=False)
    summary = grouped.agg(
        first_start=("first_start", "min"),
        duration_s=("duration", "sum"),
        energy_kwh=("energy_consumed", "sum"),
        cpu_energy_kwh=("cpu_energy", "sum"),
        gpu_energy_kwh=("gpu_energy", "sum"),
        ram_energy_kwh=("ram_energy", "sum"),
        emissions_kg=("emissions", "sum"),
        train_energy_kwh=("train_energy", "sum"),
        validation_energy_kwh=("validation_energy", "sum"),
        status=("status", lambda s: next((x for x in s if x != "completed"), "completed")),
    ).reset_index()
    summary["mean_power_w"] = [
        (e * J_PER_KWH / d) if d > 0 else 0.0
        for e, d in zip(summary["energy_kwh"], summary["duration_s"])
    ]
    summary = summary.sort_values(["first_start", "epoch"], kind="stable").reset_index(drop=True)
    summary["epoch"] = summary["epoch"].astype("Int64")
    return summary[columns]


def task_summary(windows: pandas.DataFrame | None) -> pandas.DataFrame:
    """One row per task window (CodeCarbon's ``start_task``/``stop_task``), in file order.

    Args:
        windows: window rows, as :attr:`Reports.windows` (None or empty gives an empty frame).

    Returns:
        A frame with columns run_id, task (its name), duration_s (s), energy_kwh (kWh),
        emissions_kg (kg CO2eq), status.
    """
    import pandas as pd

    if windows is None or not len(windows):
        return pd.DataFrame()
    tasks = windows[windows["kind"] == "task"]
    return pd.DataFrame(
        {
            "run_id": tasks["run_id"].astype(str),
            "task": tasks["name"],
            "duration_s": tasks["duration"],
            "energy_kwh": tasks["energy_consumed"],
            "emissions_kg": tasks["emissions"],
            "status": tasks["status"],
        }
    ).reset_index(drop=True)


def _fmt_number(value: Any, digits: int = 4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "-"
    if number == 0:
        return "0"
    return f"{number:.{digits}g}"


#: display columns: (source column, header, scale)
_RUN_DISPLAY = (
    ("run_id", "run", None),
    ("project_name", "project", None),
    ("status", "status", None),
    ("duration_s", "duration_s", 1.0),
    ("energy_kwh", "energy_Wh", 1000.0),
    ("cpu_energy_kwh", "cpu_Wh", 1000.0),
    ("gpu_energy_kwh", "gpu_Wh", 1000.0),
    ("ram_energy_kwh", "ram_Wh", 1000.0),
    ("emissions_kg", "emissions_g", 1000.0),
    ("carbon_intensity_g_per_kwh", "g_per_kWh", 1.0),
    ("methods", "measured_by", None),
)
_EPOCH_DISPLAY = (
    ("run_id", "run", None),
    ("epoch", "epoch", None),
    ("duration_s", "duration_s", 1.0),
    ("energy_kwh", "energy_Wh", 1000.0),
    ("cpu_energy_kwh", "cpu_Wh", 1000.0),
    ("gpu_energy_kwh", "gpu_Wh", 1000.0),
    ("ram_energy_kwh", "ram_Wh", 1000.0),
    ("train_energy_kwh", "train_Wh", 1000.0),
    ("validation_energy_kwh", "val_Wh", 1000.0),
    ("emissions_kg", "emissions_g", 1000.0),
    ("mean_power_w", "power_W", 1.0),
    ("status", "status", None),
)
_TASK_DISPLAY = (
    ("run_id", "run", None),
    ("task", "task", None),
    ("duration_s", "duration_s", 1.0),
    ("energy_kwh", "energy_Wh", 1000.0),
    ("emissions_kg", "emissions_g", 1000.0),
    ("status", "status", None),
)
_DISPLAYS = {"runs": _RUN_DISPLAY, "epochs": _EPOCH_DISPLAY, "tasks": _TASK_DISPLAY}


def format_table(frame: pandas.DataFrame, kind: str = "epochs") -> str:
    """A fixed-width text table of a summary, energies in Wh and emissions in g CO2eq.

    Run ids are cut to their first 8 characters, numbers to 4 significant digits; a missing
    value shows as ``-``. Columns the frame lacks are left out.

    Args:
        frame: the output of :func:`run_summary`, :func:`epoch_summary` or :func:`task_summary`.
        kind: ``"runs"``, ``"epochs"`` or ``"tasks"``: which of them ``frame`` is.

    Returns:
        The table, a header line and a rule first, without a final newline.

    Raises:
        ValueError: ``kind`` is none of the three.
    """
    if kind not in _DISPLAYS:
        raise ValueError(f"kind must be one of {', '.join(_DISPLAYS)}, got {kind!r}")
    display = [(src, head, scale) for src, head, scale in _DISPLAYS[kind] if src in frame.columns]
    rows: list[list[str]] = [[head for _, head, _ in display]]
    for _, record in frame.iterrows():
        cells = []
        for src, _, scale in display:
            value = record[src]
            if src == "run_id":
                cells.append(str(value)[:8])
            elif scale is None:
                missing = value is None or (isinstance(value, float) and math.isnan(value))
                cells.append("-" if missing else str(value))
            else:
                cells.append(_fmt_number(float(value) * scale if value is not None else value))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(display))]
    lines = []
    for n, cells in enumerate(rows):
        padded = (c.rjust(w) if n and _is_number(c) else c.ljust(w) for c, w in zip(cells, widths))
        lines.append("  ".join(padded).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def project_names(reports: Reports) -> dict[str, str]:
    """Each run's project name, by run id, from the run and window rows of ``reports`` (the
    last non-empty name a run's rows carry); runs without one are left out."""
    names: dict[str, str] = {}
    for frame in (reports.windows, reports.runs):
        if frame is None or not len(frame) or "project_name" not in frame.columns:
            continue
        for run_id, project in zip(frame["run_id"], frame["project_name"]):
            if isinstance(project, str) and project:
                names[str(run_id)] = project
    return names


def plot_epochs(
    epochs: pandas.DataFrame | None,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    projects: Mapping[str, str] | None = None,
) -> str:
    """Save a chart of per-epoch energy per component and emissions, two panels per run (the
    six latest): energy as stacked bars, emissions on their own axis below, in units scaled to
    the figures (mWh, mg, ...), legends outside the data, the project and run in each title
    (see :func:`codecarbon_callbacks.report_plots.epoch_figure`). Needs matplotlib (its
    non-interactive ``Agg`` backend is selected).

    Args:
        epochs: the output of :func:`epoch_summary`.
        path: the image file to write; its suffix picks the format (``.png``, ``.svg``, ...).
        title: the figure's title (default: the project when all runs share one).
        projects: each run's project, by run id (:func:`project_names`).

    Returns:
        ``path``, as a string.

    Raises:
        ReportError: matplotlib is missing, there is nothing to plot, or the file cannot be
            written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install matplotlib") from None
    if epochs is None or not len(epochs):
        raise ReportError("nothing to plot: no per-epoch windows in these reports")
    from codecarbon_callbacks.report_plots import epoch_figure

    fig = epoch_figure(epochs, title=title, projects=projects)
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise ReportError(f"--plot {path}: cannot be written ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return str(path)
