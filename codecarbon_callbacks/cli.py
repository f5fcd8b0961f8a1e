"""The ``codecarbon-callbacks`` command: detect, monitor, report, resend.

- ``detect``: the hardware found, how each component is measured, where the carbon intensity
  comes from, what is missing and how to fix it;
- ``monitor -- COMMAND ...``: track any command with live power and energy, write the usual
  reports, exit with the command's exit code;
- ``report PATH...``: per-run and per-epoch summaries of ``emissions.csv`` /
  ``emissions_windows.csv`` files (or folders holding them), ``--plot FILE.png`` for a chart;
- ``resend``: deliver the spool of records an HTTP output could not deliver.

Errors are one line on stderr with a non-zero exit code (1; 2 for bad usage).

The table helpers (:func:`load_reports`, :func:`run_summary`, :func:`epoch_summary`,
:func:`format_table`, :func:`plot_epochs`) are public: the examples and the notebook use them.

Example:
    >>> from codecarbon_callbacks.cli import main
    >>> main(["report", "example_output", "--last"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from codecarbon_callbacks_core.errors import CodeCarbonCallbacksError, CodeCarbonCallbacksWarning

if TYPE_CHECKING:
    import pandas
    from codecarbon_callbacks_core.output.resend import ResendResult

logger = logging.getLogger(__name__)

PROG = "codecarbon-callbacks"
J_PER_KWH = 3.6e6

#: window kinds that tile a run (their energies add up); step/time/flush windows overlap them
TILING_KINDS = ("epoch", "phase")

#: where Linux exposes RAPL
POWERCAP_ROOT = Path("/sys/class/powercap")
RAPL_PERMISSION_FIX = "sudo chmod -R a+r /sys/class/powercap/intel-rapl"


class CliError(CodeCarbonCallbacksError):
    """A failure reported as one line on stderr, with exit code 1."""


# --------------------------------------------------------------------------------------------
# reading reports


@dataclass
class Reports:
    """The CSV reports found under some paths: runs (emissions.csv) and windows."""

    runs: pandas.DataFrame | None = None
    windows: pandas.DataFrame | None = None
    run_files: list[str] = field(default_factory=list)
    window_files: list[str] = field(default_factory=list)


def _csv_header(path: Path) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader([f.readline()]), [])
    except (OSError, UnicodeDecodeError):
        return []


def _candidate_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.csv") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"{raw}: no such file or folder")
    return files


def load_reports(paths: Iterable[str | os.PathLike[str]]) -> Reports:
    """Read every run file and window file among ``paths`` (files, or folders of ``*.csv``).

    A file is recognised by its header: a ``window_id`` column makes it a window file
    (``emissions_windows.csv``), ``run_id`` + ``energy_consumed`` a run file (``emissions.csv``,
    ours or CodeCarbon's). Other CSV files in a folder are skipped.

    Zone-less timestamps (CodeCarbon writes the local time of the machine that ran) are read as
    this machine's local time, and ours (UTC) keep their instant, so runs from both sort on one
    time line.

    Raises:
        CliError: a path does not exist, or no report is found.
    """
    import pandas as pd
    from codecarbon_callbacks_core.output.file import read_emissions

    reports = Reports()
    run_frames: list[pd.DataFrame] = []
    window_frames: list[pd.DataFrame] = []
    given = list(paths)
    for path in _candidate_files(given):
        header = _csv_header(path)
        if "window_id" in header:
            kind = "windows"
        elif "run_id" in header and "energy_consumed" in header:
            kind = "runs"
        else:
            continue
        try:
            frame = read_emissions(path, tz="local")
        except Exception as e:  # noqa: BLE001 - any parse failure becomes one clear line
            raise CliError(f"{path}: cannot be read as an emissions CSV ({type(e).__name__}: {e})") from None
        frame["source_file"] = str(path)
        if kind == "windows":
            window_frames.append(frame)
            reports.window_files.append(str(path))
        else:
            run_frames.append(frame)
            reports.run_files.append(str(path))
    if not run_frames and not window_frames:
        where = ", ".join(str(p) for p in given)
        raise CliError(f"no emissions.csv or emissions_windows.csv found in {where}")
    if run_frames:
        reports.runs = pd.concat(run_frames, ignore_index=True)
    if window_frames:
        reports.windows = pd.concat(window_frames, ignore_index=True)
    return reports


def _select_runs(frame: pandas.DataFrame | None, run: str | None) -> pandas.DataFrame | None:
    if frame is None or run is None:
        return frame
    return frame[frame["run_id"].astype(str).str.startswith(run)]


def _last_run_id(reports: Reports) -> str | None:
    """The run that ended last, from the run rows (else the window rows)."""
    for frame, column in ((reports.runs, "timestamp"), (reports.windows, "end_timestamp")):
        if frame is not None and len(frame):
            ordered = frame.sort_values(column, kind="stable", na_position="first")
            return str(ordered["run_id"].iloc[-1])
    return None


def run_summary(runs: pandas.DataFrame) -> pandas.DataFrame:
    """One row per run: its latest record (a run's final row replaces its flushed ones).

    Columns: run_id, project_name, status, end (timestamp), duration_s, energy_kwh,
    cpu_energy_kwh, gpu_energy_kwh, ram_energy_kwh, emissions_kg, carbon_intensity_g_per_kwh,
    carbon_intensity_source, methods ("cpu=rapl gpu=nvml_energy ram=constant").
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
        parts = [f"{k}={row.get(f'{k}_method')}" for k in ("cpu", "gpu", "ram") if row.get(f"{k}_method")]
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


def epoch_summary(windows: pandas.DataFrame) -> pandas.DataFrame:
    """One row per (run, epoch): the epoch's tiling windows added up.

    The session tiles a run with ``epoch`` (training) and ``phase`` (validation, other) windows;
    every one of them that carries an epoch number counts towards that epoch, so train and
    validation energy both land in their epoch. Step, time, flush and task windows overlap
    these and are left out.

    Columns: run_id, epoch, duration_s, energy_kwh, cpu_energy_kwh, gpu_energy_kwh,
    ram_energy_kwh, emissions_kg, train_energy_kwh, validation_energy_kwh, mean_power_w,
    status (the worst status among the epoch's windows).
    """
    import pandas as pd

    columns = ["run_id", "epoch", "duration_s", "energy_kwh", "cpu_energy_kwh", "gpu_energy_kwh",
               "ram_energy_kwh", "emissions_kg", "train_energy_kwh", "validation_energy_kwh",
               "mean_power_w", "status"]
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
        (e * J_PER_KWH / d) if d > 0 else 0.0 for e, d in zip(summary["energy_kwh"], summary["duration_s"])
    ]
    summary = summary.sort_values(["first_start", "epoch"], kind="stable").reset_index(drop=True)
    summary["epoch"] = summary["epoch"].astype("Int64")
    return summary[columns]


def task_summary(windows: pandas.DataFrame) -> pandas.DataFrame:
    """One row per task window (CodeCarbon's start_task/stop_task)."""
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

    Args:
        frame: the output of :func:`run_summary`, :func:`epoch_summary` or :func:`task_summary`.
        kind: ``"runs"``, ``"epochs"`` or ``"tasks"``.
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
                cells.append("-" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value))
            else:
                cells.append(_fmt_number(float(value) * scale if value is not None else value))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(display))]
    lines = []
    for n, cells in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if n and _is_number(c) else c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def plot_epochs(epochs: pandas.DataFrame, path: str | os.PathLike[str], *, title: str | None = None) -> str:
    """Save a chart of per-epoch energy per component (stacked bars, Wh) and emissions (g).

    One panel per run (the six latest). Needs matplotlib.

    Returns:
        The path written.

    Raises:
        CliError: matplotlib is missing, there is nothing to plot, or the file cannot be written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install matplotlib") from None
    if epochs is None or not len(epochs):
        raise CliError("nothing to plot: no per-epoch windows in these reports")
    run_ids = list(dict.fromkeys(epochs["run_id"]))[-6:]
    fig, axes = plt.subplots(len(run_ids), 1, figsize=(8, 3.2 * len(run_ids)), squeeze=False)
    for ax, run_id in zip(axes[:, 0], run_ids):
        rows = epochs[epochs["run_id"] == run_id]
        labels = [str(e) for e in rows["epoch"]]
        x = list(range(len(rows)))
        bottom = [0.0] * len(rows)
        for kind, color in (("cpu", "#4C72B0"), ("gpu", "#55A868"), ("ram", "#C44E52")):
            values = [v * 1000.0 for v in rows[f"{kind}_energy_kwh"]]
            if not any(values):
                continue
            ax.bar(x, values, bottom=bottom, color=color, label=f"{kind.upper()} energy")
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(x, labels)
        ax.set_xlabel("epoch")
        ax.set_ylabel("energy (Wh)")
        ax.set_title(title or f"run {str(run_id)[:8]}")
        twin = ax.twinx()
        twin.plot(x, [v * 1000.0 for v in rows["emissions_kg"]], color="black", marker="o",
                  label="emissions")
        twin.set_ylabel("emissions (g CO2eq)")
        twin.set_ylim(bottom=0)
        handles, names = ax.get_legend_handles_labels()
        more, more_names = twin.get_legend_handles_labels()
        ax.legend(handles + more, names + more_names, loc="upper right", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise CliError(f"--plot {path}: cannot be written ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return str(path)


# --------------------------------------------------------------------------------------------
# report


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    reports = load_reports(args.paths)
    run = args.run
    if args.last:
        run = _last_run_id(reports)
    runs = _select_runs(reports.runs, run)
    windows = _select_runs(reports.windows, run)
    if run is not None and (runs is None or not len(runs)) and (windows is None or not len(windows)):
        raise CliError(f"--run {run}: no run with this id in {', '.join(args.paths)}")
    run_table = run_summary(runs) if runs is not None else None
    epoch_table = epoch_summary(windows) if windows is not None else None
    task_table = task_summary(windows) if windows is not None else None
    if args.plot:
        plot_epochs(epoch_table, args.plot)
    if args.json:
        def records(frame: Any) -> list[dict[str, Any]]:
            if frame is None or not len(frame):
                return []
            return json.loads(frame.to_json(orient="records", date_format="iso", double_precision=15))

        payload = {
            "files": reports.run_files + reports.window_files,
            "runs": records(run_table),
            "epochs": records(epoch_table),
            "tasks": records(task_table),
        }
        if args.plot:
            payload["plot"] = str(args.plot)
        out.write(json.dumps(payload, indent=2) + "\n")
        return 0
    if run_table is not None and len(run_table):
        out.write(f"Runs ({', '.join(reports.run_files)}):\n{format_table(run_table, 'runs')}\n\n")
    if epoch_table is not None and len(epoch_table):
        out.write(f"Per epoch ({', '.join(reports.window_files)}):\n{format_table(epoch_table, 'epochs')}\n\n")
    elif reports.window_files:
        out.write(f"No per-epoch windows in {', '.join(reports.window_files)}.\n\n")
    if task_table is not None and len(task_table):
        out.write(f"Tasks:\n{format_table(task_table, 'tasks')}\n\n")
    if args.plot:
        out.write(f"Chart written to {args.plot}\n")
    return 0


# --------------------------------------------------------------------------------------------
# detect


def _rapl_state() -> str:
    """"readable", "unreadable", "absent" (Linux), or "not_linux"."""
    if not sys.platform.startswith("linux"):
        return "not_linux"
    zones = sorted(POWERCAP_ROOT.glob("intel-rapl:*")) if POWERCAP_ROOT.is_dir() else []
    if not zones:
        return "absent"
    for zone in zones:
        if os.access(zone / "energy_uj", os.R_OK):
            return "readable"
    return "unreadable"


def _nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


def _amd_gpu_present() -> bool:
    for vendor in Path("/sys/class/drm").glob("card*/device/vendor"):
        try:
            if vendor.read_text().strip().lower() == "0x1002":
                return True
        except OSError:
            continue
    return False


def _in_container() -> bool:
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def hardware_suggestions(components: Sequence[Any]) -> list[str]:
    """What is missing from ``components`` and how to fix it, as sentences."""
    import importlib.util

    tips: list[str] = []
    methods = {c.kind: getattr(c.method, "value", str(c.method)) for c in components}
    cpu_method = methods.get("cpu")
    system = platform.system()
    if system == "Darwin":
        tips.append("macOS: no RAPL or NVML here; CPU energy is estimated from TDP x load "
                    "(set force_cpu_power=W if you know better); Apple GPUs are not measured.")
    elif system == "Windows":
        tips.append("Windows: RAPL is not read (no powercap); CPU energy is estimated from TDP x load "
                    "(set force_cpu_power=W if you know better). NVIDIA GPUs are measured through NVML.")
    elif cpu_method not in (None, "rapl"):
        rapl = _rapl_state()
        if rapl == "unreadable":
            tips.append("RAPL is present but not readable by this user: run "
                        f"`{RAPL_PERMISSION_FIX}` (until reboot; a udev rule makes it permanent) "
                        "to measure the CPU with its energy counter instead of an estimate.")
        elif rapl == "absent":
            where = " (in a container: mount /sys/class/powercap from the host, read-only)" if _in_container() else \
                " (virtual machines and some CPUs do not expose it)"
            how = "estimated from TDP x load" if cpu_method == "tdp_estimate" else "a constant power"
            tips.append("No RAPL interface under /sys/class/powercap" + where + f"; CPU energy is {how}. "
                        "Set force_cpu_power=W to use a known figure.")
    if "gpu" not in methods:
        if _nvidia_driver_present():
            if importlib.util.find_spec("pynvml") is None:
                tips.append("An NVIDIA driver is present but NVML's Python binding is not: "
                            "pip install nvidia-ml-py")
            else:
                tips.append("An NVIDIA driver is present but no GPU was measured: see the notes "
                            "above (gpu_ids, CUDA_VISIBLE_DEVICES, driver permissions).")
        elif _amd_gpu_present():
            tips.append("An AMD GPU is present: AMD GPUs are not measured (their energy is not "
                        "in the reports).")
    elif methods.get("gpu") == "nvml_power":
        tips.append("This GPU has no NVML energy counter (pre-Volta): its power is integrated, "
                    "which is less exact.")
    return tips


def _location_arguments(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("country_iso_code", "region", "cloud_provider", "cloud_region",
            "force_carbon_intensity_g_co2e_kwh")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _resolve_detect_config(args: argparse.Namespace) -> Any:
    from codecarbon_callbacks_core.config import resolve_config

    arguments = _location_arguments(args)
    for key in ("tracking_mode", "gpu_ids", "force_cpu_power", "force_ram_power"):
        value = getattr(args, key, None)
        if value is not None:
            arguments[key] = value
    # detect writes nothing: a folder that surely exists, so that a read-only cwd or a missing
    # configured output_dir does not fail the check
    import tempfile

    arguments["output_dir"] = tempfile.gettempdir()
    return resolve_config(arguments)


def _intensity_report(config: Any, online: bool, timeout_s: float) -> dict[str, Any]:
    from codecarbon_callbacks_core.intensity.lookup import UnknownLocationError, resolve_offline

    location = {
        "country_iso_code": config.country_iso_code or config.country_2letter_iso_code,
        "region": config.region,
        "cloud_provider": config.cloud_provider,
        "cloud_region": config.cloud_region,
    }
    has_location = bool(location["country_iso_code"] or location["cloud_provider"])
    forced = config.force_carbon_intensity_g_co2e_kwh
    note = ""
    if online:
        from codecarbon_callbacks_core.intensity.online import LocationLookup

        lookup = LocationLookup(
            electricitymaps_api_token=config.electricitymaps_api_token,
            force_carbon_intensity_g_co2e_kwh=forced,
            timeout_s=timeout_s,
            user_warning=False,  # the report's note says it
            **location,
        ).start()
        result = lookup.result(timeout_s=timeout_s + 0.5)
        if lookup.failure:
            note = f"online lookup failed ({lookup.failure}); fallback used"
    else:
        quiet = logging.getLogger("codecarbon_callbacks_core.intensity")
        level = quiet.level
        if not has_location:  # the note below says it, with the fix
            quiet.setLevel(logging.ERROR)
        try:
            result = resolve_offline(force_carbon_intensity_g_co2e_kwh=forced,
                                     user_warning=has_location, **location)
        except (UnknownLocationError, ValueError) as e:
            raise CliError(str(e)) from None
        finally:
            quiet.setLevel(level)
        if not has_location and forced is None:
            note = ("no location given: EmissionsTracker looks it up online at start (geo-IP), "
                    "using this world average until it knows; OfflineEmissionsTracker needs "
                    "country_iso_code. Give --country-iso-code (or CODECARBON_COUNTRY_ISO_CODE) "
                    "to be exact and offline, or --online to try the lookup now.")
    if result is None:
        raise CliError("the carbon intensity lookup gave no answer")
    return {
        "g_per_kwh": result.g_per_kwh,
        "source": result.source,
        "country_iso_code": result.country_iso_code,
        "country_name": result.country_name,
        "region": result.region,
        "cloud_provider": result.cloud_provider,
        "cloud_region": result.cloud_region,
        "note": note,
    }


def cmd_detect(args: argparse.Namespace, out: TextIO) -> int:
    config = _resolve_detect_config(args)
    try:
        from codecarbon_callbacks_core.hardware import detect_for_config
    except ImportError as e:
        raise CliError(f"hardware detection is not available in this installation ({e})") from None
    components, notes = detect_for_config(config)
    try:
        described = []
        for c in components:
            item = dict(c.describe())
            item["sample_interval_s"] = c.sample_interval_s
            described.append(item)
        suggestions = hardware_suggestions(components)
    finally:
        for c in components:
            try:
                c.close()
            except Exception as e:  # noqa: BLE001 - closing a probe is best effort
                logger.debug("closing %s failed: %s", c.name, e)
    intensity = _intensity_report(config, args.online, args.timeout)
    payload = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "components": described,
        "notes": list(notes),
        "suggestions": suggestions,
        "carbon_intensity": intensity,
        "pue": config.pue,
    }
    if args.json:
        out.write(json.dumps(payload, indent=2, default=str) + "\n")
        return 0
    out.write(f"Platform: {payload['platform']} (Python {payload['python']})\n\n")
    out.write("Components measured:\n")
    if not described:
        out.write("  none\n")
    width = max((len(str(d.get("name", ""))) for d in described), default=0)
    for item in described:
        line = f"  {str(item.get('name', '')).ljust(width)}  {item.get('method', '?'):<12}  {item.get('model') or '-'}"
        if item.get("failure"):
            line += f"  (failing: {item['failure']})"
        out.write(line + "\n")
    out.write("\nMethods, best first: rapl / nvml_energy (hardware energy counters), nvml_power "
              "(integrated power), tdp_estimate (TDP x load model), constant (a fixed power).\n")
    if notes:
        out.write("\nNotes from detection:\n")
        out.writelines(f"  - {note}\n" for note in notes)
    ci = intensity
    place = ", ".join(str(v) for v in (ci["country_name"] or ci["country_iso_code"], ci["region"],
                                         ci["cloud_provider"], ci["cloud_region"]) if v)
    out.write(f"\nCarbon intensity: {ci['g_per_kwh']:.4g} gCO2eq/kWh from {ci['source']}"
              + (f" ({place})" if place else "") + "\n")
    if ci["note"]:
        out.write(f"  {ci['note']}\n")
    if suggestions:
        out.write("\nTo measure better:\n")
        out.writelines(f"  - {tip}\n" for tip in suggestions)
    else:
        out.write("\nNo fix to suggest on this machine.\n")
    return 0


# --------------------------------------------------------------------------------------------
# monitor


def _tracker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = _location_arguments(args)
    for key in ("project_name", "output_dir", "measure_power_secs", "tracking_mode", "pue",
                "force_cpu_power", "force_ram_power", "experiment_id", "gpu_ids"):
        value = getattr(args, key, None)
        if value is not None:
            kwargs[key] = value
    if args.output_methods is not None:
        kwargs["output_methods"] = args.output_methods
    return kwargs


def _totals_line(elapsed_s: float, tracker: Any) -> tuple[str, dict[str, float]]:
    totals = tracker.totals()
    power = {kind: 0.0 for kind in ("cpu", "gpu", "ram")}
    for component in tracker.components:
        try:
            power[component.kind] = power.get(component.kind, 0.0) + float(component.power_w())
        except Exception as e:  # noqa: BLE001 - reads as 0 W here; the tracker warns
            logger.debug("power of %s: %s", component.name, e)
    figures = {
        "elapsed_s": elapsed_s,
        "power_w": sum(power.values()),
        **{f"{k}_power_w": v for k, v in power.items()},
        "energy_kwh": totals.energy_consumed,
        "emissions_kg": totals.emissions,
    }
    parts = " ".join(f"{k} {v:.3g}" for k, v in power.items() if v)
    line = (f"{elapsed_s:7.1f} s | {figures['power_w']:.4g} W"
            + (f" ({parts})" if parts else "")
            + f" | {figures['energy_kwh'] * 1000:.4g} Wh"
            + f" | {figures['emissions_kg'] * 1000:.4g} g CO2eq")
    return line, figures


def _use_rich(args: argparse.Namespace, stream: TextIO) -> bool:
    if args.plain:
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    # both must be terminals: Live sends our stdout through its console (on stderr)
    return all(hasattr(s, "isatty") and s.isatty() for s in (stream, sys.stdout))


def split_terminal_output(buffer: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Cut a child's output into finished lines and carriage-return updates.

    Returns ``(events, rest)``: events are ``("line", text)`` for text ended by ``\\n`` (or
    ``\\r\\n``) and ``("partial", text)`` for text ended by a lone ``\\r`` (a progress bar
    redrawing itself); ``rest`` is the unfinished tail.
    """
    events: list[tuple[str, bytes]] = []
    start = 0
    i = 0
    while i < len(buffer):
        byte = buffer[i : i + 1]
        if byte == b"\n":
            events.append(("line", buffer[start:i]))
            start = i + 1
        elif byte == b"\r":
            if i + 1 == len(buffer):
                break  # a lone \r at the end may be the start of \r\n: wait for more
            if buffer[i + 1 : i + 2] == b"\n":
                events.append(("line", buffer[start:i]))
                i += 1
            else:
                events.append(("partial", buffer[start:i]))
            start = i + 1
        i += 1
    return events, buffer[start:]


class _ChildOutput:
    """The child's output for the live display: finished lines are printed, the line being
    redrawn with ``\\r`` (progress bars) stays in the live area above the figures."""

    def __init__(self, print_line: Any) -> None:
        self.print_line = print_line
        self.lock = threading.Lock()
        self.pending: dict[str, str] = {}

    def read(self, name: str, pipe: Any) -> None:
        rest = b""
        try:
            while True:
                chunk = os.read(pipe.fileno(), 65536)
                if not chunk:
                    break
                events, rest = split_terminal_output(rest + chunk)
                for kind, raw in events:
                    text = raw.decode("utf-8", errors="replace")
                    with self.lock:
                        if kind == "line":
                            self.pending.pop(name, None)
                            self.print_line(text)
                        else:
                            self.pending[name] = text
                with self.lock:
                    if rest:
                        self.pending[name] = rest.decode("utf-8", errors="replace")
            if rest:
                with self.lock:
                    self.pending.pop(name, None)
                    self.print_line(rest.rstrip(b"\r").decode("utf-8", errors="replace"))
        finally:
            pipe.close()

    def lines(self) -> list[str]:
        with self.lock:
            return [text for text in self.pending.values() if text]


def cmd_monitor(args: argparse.Namespace, out: TextIO) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CliError("monitor needs a command: codecarbon-callbacks monitor -- python train.py")
    if args.interval <= 0:
        raise CliError(f"--interval must be > 0 seconds, got {args.interval}")
    import shutil

    if shutil.which(command[0]) is None:
        why = "not executable" if os.path.exists(command[0]) else "not found"
        raise CliError(f"cannot run {command[0]!r}: {why}")
    from codecarbon_callbacks_core.tracker import EmissionsTracker, OfflineEmissionsTracker

    kwargs = _tracker_kwargs(args)
    offline = bool(kwargs.get("country_iso_code") or kwargs.get("cloud_provider")) or args.offline
    tracker = (OfflineEmissionsTracker if offline else EmissionsTracker)(**kwargs)
    # added to the configured metadata; the program's name only: its arguments may hold secrets
    tracker.update_metadata({"monitored_program": os.path.basename(command[0])})
    status_stream: TextIO = sys.stderr
    rich_mode = _use_rich(args, status_stream)

    tracker.start()
    started = time.monotonic()
    env = dict(os.environ)
    child: subprocess.Popen[bytes] | None = None
    status = "failed"
    returncode = 1
    previous_term = None
    try:
        try:
            if rich_mode:
                env.setdefault("PYTHONUNBUFFERED", "1")
                child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            else:
                child = subprocess.Popen(command, env=env)
        except OSError as e:
            raise CliError(f"cannot run {command[0]!r}: {e.strerror or e}") from None

        def forward_term(signum: int, frame: Any) -> None:
            if child is not None and child.poll() is None:
                child.send_signal(signum)

        try:
            previous_term = signal.signal(signal.SIGTERM, forward_term)
        except ValueError:  # not the main thread
            previous_term = None
        try:
            if rich_mode:
                returncode = _monitor_rich(child, tracker, started, args.interval, status_stream)
            else:
                returncode = _monitor_plain(child, tracker, started, args.interval, status_stream)
            status = "completed" if returncode == 0 else "failed"
        except KeyboardInterrupt:
            status = "interrupted"
            try:
                returncode = child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                returncode = child.wait()
            returncode = returncode if returncode > 0 else 130
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        tracker.stop(status=status)
    if returncode < 0:  # killed by a signal: the shell convention
        returncode = 128 - returncode
    data = tracker.final_emissions_data
    if data is not None:
        out.write(
            f"{PROG}: {_short(shlex.join(command))} exited with {returncode} after {data.duration:.1f} s: "
            f"{data.energy_consumed * 1000:.4g} Wh (cpu {data.cpu_energy * 1000:.4g}, "
            f"gpu {data.gpu_energy * 1000:.4g}, ram {data.ram_energy * 1000:.4g}), "
            f"{data.emissions * 1000:.4g} g CO2eq at {data.carbon_intensity_g_per_kwh:.4g} g/kWh "
            f"({data.carbon_intensity_source}); run {data.run_id}\n"
        )
        from codecarbon_callbacks_core.output.base import OutputMethod

        if OutputMethod.CSV in tracker.config.output_methods:
            path = Path(tracker.config.output_dir) / tracker.config.output_file
            out.write(f"{PROG}: reports in {path.resolve()} "
                      f"(and {tracker.config.windows_output_file} beside it)\n")
    out.flush()
    return returncode


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _monitor_plain(child: subprocess.Popen[bytes], tracker: Any, started: float, interval_s: float,
                   stream: TextIO) -> int:
    while True:
        try:
            return child.wait(timeout=interval_s)
        except subprocess.TimeoutExpired:
            pass
        line, _ = _totals_line(time.monotonic() - started, tracker)
        stream.write(f"{PROG}: {line}\n")
        stream.flush()


def _monitor_rich(child: subprocess.Popen[bytes], tracker: Any, started: float, interval_s: float,
                  stream: TextIO) -> int:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    console = Console(file=stream)
    output = _ChildOutput(lambda text: console.print(Text(text), highlight=False, markup=False))
    status = {"text": Text("starting...", style="bold green")}

    def render() -> Any:
        return Group(*(Text(line) for line in output.lines()), status["text"])

    with Live(console=console, get_renderable=render, refresh_per_second=4, transient=False,
              redirect_stdout=False, redirect_stderr=False):
        readers = [
            threading.Thread(target=output.read, args=("stdout", child.stdout), daemon=True),
            threading.Thread(target=output.read, args=("stderr", child.stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        while True:
            try:
                code = child.wait(timeout=min(interval_s, 0.5))
                break
            except subprocess.TimeoutExpired:
                pass
            line, _ = _totals_line(time.monotonic() - started, tracker)
            status["text"] = Text(line, style="bold green")
        for reader in readers:
            reader.join(timeout=5)
        line, _ = _totals_line(time.monotonic() - started, tracker)
        status["text"] = Text(line, style="bold")
    return code


# --------------------------------------------------------------------------------------------
# resend


#: how to give each kind's credentials to ``resend`` (never stored in the spool)
_CREDENTIALS_HELP = {
    "webhook": "give them in the URL: --emissions-endpoint 'https://USER:PASSWORD@host/path' "
               "(or a query token), or CODECARBON_EMISSIONS_ENDPOINT, or emissions_endpoint in "
               ".codecarbon.config",
    "api": "give the API key: --api-key KEY, or CODECARBON_API_KEY, or api_key in "
           ".codecarbon.config",
}
_ENDPOINT_FLAG = {"webhook": "--emissions-endpoint", "api": "--api-endpoint"}


def _resend_targets(args: argparse.Namespace, config: Any, stored: set[tuple[str, str]],
                    ) -> list[tuple[str, str]]:
    """The (kind, URL) pairs to deliver to: the endpoints given, else every stored endpoint.

    A given endpoint selects the records spooled for it, it never redirects others. A stored
    endpoint is posted to with the configuration's URL (and so its credentials) when that URL
    is the same endpoint; one whose query was not stored cannot be posted to without it.
    """
    from codecarbon_callbacks_core.output._util import sanitize_url

    given = [(kind, url) for kind, url in (("webhook", args.emissions_endpoint),
                                           ("api", args.api_endpoint)) if url]
    for kind, url in given:
        if not url.startswith(("http://", "https://")):
            raise CliError(f"{_ENDPOINT_FLAG[kind]} must be an http:// or https:// URL, got "
                           f"{sanitize_url(url)!r}")
    if given:
        return given
    configured = {"webhook": config.emissions_endpoint, "api": config.api_endpoint}
    targets = []
    for kind, endpoint in sorted(stored):
        if kind not in _ENDPOINT_FLAG:
            continue  # a kind this version cannot send: left, and named
        url = configured.get(kind)
        if url and sanitize_url(url) == endpoint:
            targets.append((kind, url))
        elif "?" not in endpoint:
            targets.append((kind, endpoint))
    return targets


def _resend_notes(spool_dir: Path, output_dir: Path, results: list[ResendResult],
                  left: dict[tuple[str, str], int], unreadable: list[str],
                  endpoints_given: bool) -> list[str]:
    """One line per thing the user must act on: refused credentials, endpoints not delivered
    to, unreadable files. Endpoints are named without credentials or query values."""
    notes = []
    for result in results:
        if result.unauthorized:
            notes.append(
                f"{result.kind} {result.endpoint} refused the credentials (HTTP "
                f"{result.auth_status}): {result.unauthorized} record(s) kept in {spool_dir}; "
                f"{_CREDENTIALS_HELP[result.kind]}. They are used for the request and never "
                "stored in the spool.")
    for (kind, endpoint), count in left.items():
        flag = _ENDPOINT_FLAG.get(kind, "--emissions-endpoint")
        url = endpoint.replace("?***", "?QUERY") if "?" in endpoint else endpoint
        how = f"to deliver them: {PROG} resend {shlex.quote(str(output_dir))} {flag} {url}"
        if "?" in endpoint:
            how += " (the URL's query was not stored: give it in full)"
        why = (" (the endpoints given select the records spooled for them; they do not "
               "redirect others)" if endpoints_given else "")
        notes.append(f"{count} record(s) spooled for {kind} {endpoint} were not delivered{why}; "
                     f"{how}")
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (", ..." if len(unreadable) > 5 else "")
        notes.append(f"{len(unreadable)} spool file(s) cannot be read and were left in place "
                     f"(not sent, not removed): {shown}")
    return notes


def cmd_resend(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from codecarbon_callbacks_core.output.resend import left_by_endpoint, resend_endpoint
        from codecarbon_callbacks_core.output.spool import SPOOL_DIRNAME, Spool
    except ImportError as e:
        raise CliError(f"the spool is not available in this installation ({e})") from None
    from codecarbon_callbacks_core.config import resolve_config

    output_dir = Path(args.output_dir)
    if not output_dir.is_dir():
        raise CliError(f"{args.output_dir}: no such folder")
    spool_dir = output_dir / SPOOL_DIRNAME
    if not spool_dir.is_dir():
        out.write(f"Nothing to resend: no spool in {output_dir} ({SPOOL_DIRNAME} is absent).\n")
        return 0
    config = resolve_config({"output_dir": str(output_dir)})
    spool = Spool(str(output_dir))
    entries = spool.entries()
    if not entries and not spool.unreadable():
        out.write(f"Nothing to resend: the spool in {spool_dir} is empty.\n")
        return 0
    api_key = args.api_key or config.api_key
    targets = _resend_targets(args, config, {(e.kind, e.endpoint) for e in entries})
    results = [
        resend_endpoint(spool, kind, url, api_key=api_key if kind == "api" else None,
                        include_uncertain=args.include_uncertain, timeout_s=args.timeout)
        for kind, url in targets
    ]
    counts = {key: sum(getattr(r, key) for r in results)
              for key in ("delivered", "failed", "uncertain", "rejected", "unauthorized")}
    left = left_by_endpoint(spool, targets)
    unreadable = spool.unreadable()
    remaining = len(spool.entries()) + len(unreadable)
    if args.json:
        not_delivered_to = [{"kind": kind, "endpoint": endpoint, "records": count}
                            for (kind, endpoint), count in left.items()]
        out.write(json.dumps({**counts, "other_endpoints": sum(left.values()),
                              "unreadable": len(unreadable), "remaining": remaining,
                              "not_delivered_to": not_delivered_to}) + "\n")
    else:
        out.write(
            f"Delivered {counts['delivered']}, failed {counts['failed']} (kept for later), "
            f"uncertain {counts['uncertain']} (kept; --include-uncertain re-sends them), "
            f"refused credentials {counts['unauthorized']} (kept), "
            f"rejected {counts['rejected']} (removed); {remaining} left in {spool_dir}"
            f" ({sum(left.values())} for endpoints not delivered to, {len(unreadable)} "
            "unreadable).\n")
    given = bool(args.emissions_endpoint or args.api_endpoint)
    for note in _resend_notes(spool_dir, output_dir, results, left, unreadable, given):
        sys.stderr.write(f"{PROG}: {note}\n")
    problems = []
    if counts["failed"]:
        problems.append(f"{counts['failed']} record(s) could not be delivered")
    if counts["unauthorized"]:
        problems.append(f"{counts['unauthorized']} record(s) refused for their credentials")
    if left:
        named = ", ".join(f"{kind} {endpoint}" for kind, endpoint in left)
        problems.append(f"{sum(left.values())} record(s) spooled for endpoints not delivered to "
                        f"({named})")
    if unreadable:
        problems.append(f"{len(unreadable)} unreadable spool file(s)")
    if problems:
        raise CliError(f"{'; '.join(problems)}; they stay in {spool_dir}")
    return 0


# --------------------------------------------------------------------------------------------
# parser


def _add_location_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("location (else CODECARBON_* variables, .codecarbon.config)")
    group.add_argument("--country-iso-code", metavar="ISO3", help="country, e.g. FRA (offline)")
    group.add_argument("--region", help="sub-national region, e.g. CA or quebec")
    group.add_argument("--cloud-provider", choices=["aws", "azure", "gcp"], help="cloud provider")
    group.add_argument("--cloud-region", help="cloud region, e.g. us-east-1")
    group.add_argument("--force-carbon-intensity-g-co2e-kwh", type=float, metavar="G_PER_KWH",
                       help="use this carbon intensity (gCO2eq/kWh)")


def _add_hardware_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hardware")
    group.add_argument("--tracking-mode", choices=["machine", "process"],
                       help="machine (default): the whole machine; process: this process only")
    group.add_argument("--gpu-ids", help="GPUs to measure: indexes or UUIDs, comma-separated")
    group.add_argument("--force-cpu-power", type=float, metavar="W", help="constant CPU power (W)")
    group.add_argument("--force-ram-power", type=float, metavar="W", help="constant RAM power (W)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``codecarbon-callbacks`` command."""
    from codecarbon_callbacks._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Energy and carbon emissions of training runs (and any command).",
        epilog="Run '%(prog)s COMMAND --help' for a command's options. Tracker parameters not "
               "given here come from CODECARBON_* environment variables and .codecarbon.config.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the library's log messages")
    commands = parser.add_subparsers(dest="command_name", metavar="COMMAND")

    detect = commands.add_parser(
        "detect", help="show the hardware found, how it is measured and what is missing",
        description="Show the hardware found, how each component is measured, where the carbon "
                    "intensity comes from, and what is missing with how to fix it. Offline unless "
                    "--online.")
    _add_location_options(detect)
    _add_hardware_options(detect)
    detect.add_argument("--online", action="store_true",
                        help="look the location up now (geo-IP; Electricity Maps with a token)")
    detect.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="bound of the online lookup, seconds (default 5)")
    detect.add_argument("--json", action="store_true", help="print JSON")
    detect.set_defaults(handler=cmd_detect)

    monitor = commands.add_parser(
        "monitor", help="track any command, with live power and energy",
        description="Run COMMAND and measure the machine's energy while it runs: live power and "
                    "energy on the terminal (stderr; plain lines when not a terminal), the usual "
                    "reports at the end. Exits with COMMAND's exit code.",
        epilog="Example: %(prog)s --country-iso-code FRA -- python train.py --epochs 3")
    monitor.add_argument("--output-dir", default=None, metavar="DIR",
                         help="where reports go (default: output_dir from config, else .)")
    monitor.add_argument("--project-name", help="project_name of the run")
    monitor.add_argument("--experiment-id", help="experiment_id of the run")
    monitor.add_argument("--output-methods", metavar="LIST",
                         help="comma-separated output methods, e.g. csv,logger (default csv)")
    monitor.add_argument("--measure-power-secs", type=float, metavar="S",
                         help="how often live outputs receive deltas (seconds)")
    monitor.add_argument("--pue", type=float, help="power usage effectiveness (>= 1)")
    monitor.add_argument("--offline", action="store_true",
                         help="never touch the network (needs a country or cloud region)")
    monitor.add_argument("--interval", type=float, default=2.0, metavar="S",
                         help="refresh of the live display, seconds (default 2)")
    monitor.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    _add_location_options(monitor)
    _add_hardware_options(monitor)
    monitor.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                         help="the command to run, after --")
    monitor.set_defaults(handler=cmd_monitor)

    report = commands.add_parser(
        "report", help="per-run and per-epoch summaries of emissions CSV files",
        description="Summarise emissions.csv (runs) and emissions_windows.csv (epochs, phases, "
                    "tasks). PATH is a file or a folder holding them. Energies in Wh, emissions "
                    "in g CO2eq.")
    report.add_argument("paths", nargs="+", metavar="PATH", help="CSV files or folders")
    which = report.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="RUN_ID", help="only this run (a prefix of its run_id)")
    which.add_argument("--last", action="store_true", help="only the run that ended last")
    report.add_argument("--plot", metavar="FILE.png", help="save a per-epoch chart (matplotlib)")
    report.add_argument("--json", action="store_true", help="print JSON (kWh and kg)")
    report.set_defaults(handler=cmd_report)

    resend = commands.add_parser(
        "resend", help="deliver the spool of records not yet delivered",
        description="Send now what the HTTP outputs (webhook, CodeCarbon API) could not deliver "
                    "and kept in OUTPUT_DIR/.codecarbon_spool. Without --emissions-endpoint or "
                    "--api-endpoint, each record goes to the endpoint it was spooled for (with "
                    "the credentials of the configuration when it names that endpoint). With "
                    "them, only the records spooled for those endpoints are sent: the options "
                    "select, they never redirect records to another endpoint. Records left for "
                    "other endpoints are named and the exit code is 1. Credentials are used for "
                    "the requests, never written to the spool or printed.",
        epilog="Example: %(prog)s runs --emissions-endpoint 'https://USER:PASSWORD@host/emissions'")
    resend.add_argument("output_dir", nargs="?", default=".", metavar="OUTPUT_DIR",
                        help="the tracker's output_dir (default .)")
    resend.add_argument("--emissions-endpoint", metavar="URL",
                        help="send only the webhook records spooled for URL (matched without "
                             "credentials or query; it filters, it does not redirect); its "
                             "user:password@ or query token is used for the requests, never "
                             "stored")
    resend.add_argument("--api-endpoint", metavar="URL",
                        help="send only the CodeCarbon API records spooled for URL (it filters, "
                             "it does not redirect)")
    resend.add_argument("--api-key", help="the CodeCarbon API key (else CODECARBON_API_KEY, "
                                          "else api_key in .codecarbon.config); never stored")
    resend.add_argument("--include-uncertain", action="store_true",
                        help="also re-send API records that may have arrived already")
    resend.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="timeout of each request, seconds (default 5)")
    resend.add_argument("--json", action="store_true", help="print the counts as JSON")
    resend.set_defaults(handler=cmd_resend)
    return parser


def _gpu_ids(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the entry point passes it to sys.exit)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    if hasattr(args, "gpu_ids"):
        args.gpu_ids = _gpu_ids(args.gpu_ids)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"{PROG}: %(levelname)s: %(message)s")
    from codecarbon_callbacks_core.config import ConfigError

    try:
        with warnings.catch_warnings():
            # the command shows the package's log lines (above): the same messages, once
            warnings.simplefilter("ignore", CodeCarbonCallbacksWarning)
            return int(args.handler(args, sys.stdout))
    except CliError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    except (ConfigError, OSError, ValueError) as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 - one line, the traceback with --verbose
        if args.verbose:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"{PROG}: error: unexpected {type(e).__name__}: {e} "
                         "(run with --verbose for the traceback)\n")
        return 1


__all__ = [
    "CliError",
    "Reports",
    "build_parser",
    "epoch_summary",
    "format_table",
    "hardware_suggestions",
    "load_reports",
    "main",
    "plot_epochs",
    "run_summary",
    "task_summary",
]


if __name__ == "__main__":  # python -m codecarbon_callbacks.cli, as the console script
    sys.exit(main())
