"""Checks shared by the callback tests: the CSV rows, the tiling of windows, BoAmps reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def read_runs(directory: Path) -> Any:
    import pandas as pd

    return pd.read_csv(directory / "emissions.csv")


def read_windows(directory: Path) -> Any:
    import pandas as pd

    return pd.read_csv(directory / "emissions_windows.csv")


TILING_KINDS = ("epoch", "phase")


def check_tiling(windows: Any, run: Any, *, rel: float = 0.01) -> None:
    """The tiling windows (epochs and phases) of one run chain and sum to the run's energy.

    Each starts where the previous one ended (one meter snapshot), the first where the run
    started. The only time outside them is between the last window's close (which writes its
    record) and the tracker's stop: the energy they miss must fit in that time.
    """
    from datetime import datetime

    tiles = windows[(windows["run_id"] == run["run_id"]) & windows["kind"].isin(TILING_KINDS)]
    starts = list(tiles["start_timestamp"])
    ends = list(tiles["end_timestamp"])
    assert starts[1:] == ends[:-1]  # no gap, no overlap
    metadata = json.loads(run["metadata"])
    run_start = datetime.fromisoformat(metadata["run_start_timestamp"])
    run_end = datetime.fromisoformat(run["timestamp"])
    head_s = (datetime.fromisoformat(starts[0]) - run_start).total_seconds()
    tail_s = (run_end - datetime.fromisoformat(ends[-1])).total_seconds()
    assert 0 <= head_s < 0.05 and 0 <= tail_s < 0.1, (head_s, tail_s)
    missing = run["energy_consumed"] - tiles["energy_consumed"].sum()
    assert missing >= -1e-15
    allowed = max(rel, 3 * (head_s + tail_s) / run["duration"]) if run["duration"] > 0 else rel
    assert missing <= run["energy_consumed"] * allowed, (
        missing,
        run["energy_consumed"],
        head_s,
        tail_s,
    )


def check_epoch_metrics(rows: list[dict[str, float]], epochs: int) -> None:
    """Per-epoch figures: positive energies, totals that only grow."""
    assert len(rows) == epochs
    totals = [r["total_energy_kwh"] for r in rows]
    assert all(b > a for a, b in zip(totals, totals[1:])), totals
    for r in rows:
        assert r["epoch_energy_kwh"] > 0
        assert r["epoch_emissions_kg"] > 0
        assert r["epoch_duration_s"] > 0
        assert r["epoch_power_w"] > 0
        assert r["epoch_energy_kwh"] == pytest.approx(
            r["epoch_cpu_energy_kwh"] + r["epoch_gpu_energy_kwh"] + r["epoch_ram_energy_kwh"],
            rel=1e-9,
        )
        assert r["total_energy_kwh"] >= r["epoch_energy_kwh"]


def boamps_report(directory: Path, run_id: str) -> dict[str, Any]:
    return json.loads((directory / f"boamps_report_{run_id}.json").read_text())



def check_closing_line(stdout: str, directory: Path, *, status: str = "completed") -> None:
    """The one line a fit ends with: the last run's energy and emissions, and its report files."""
    import os

    lines = [line for line in stdout.splitlines() if line.startswith("codecarbon-callbacks:")]
    assert len(lines) == 1, lines
    run = read_runs(directory).iloc[-1]
    assert lines[0].startswith(f"codecarbon-callbacks: fit {status}: "), lines[0]
    assert f" {run['energy_consumed']:.6g} kWh, {run['emissions']:.6g} kg CO2eq; " in lines[0]
    assert lines[0].endswith(
        f"reports in {os.path.abspath(directory)}: emissions.csv, emissions_windows.csv"
    ), lines[0]
