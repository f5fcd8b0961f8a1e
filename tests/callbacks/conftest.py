"""Fixtures for the framework callback tests: tracker parameters, CSV readers, BoAmps schemas.

The suite-wide tests/conftest.py sets HF_HUB_OFFLINE=1 and KERAS_BACKEND=torch before any
framework is imported; each test module imports its framework once (module scope).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SCHEMA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "boamps"


def hardware_detection_available() -> bool:
    try:
        from codecarbon_callbacks.core.hardware import detect_components  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def tracker_kwargs(tmp_path: Path) -> dict[str, Any]:
    """OfflineEmissionsTracker parameters writing CSVs into tmp_path.

    The machine's own hardware is measured (no RAPL, no GPU here: estimated CPU and RAM). Only
    while hardware detection is not available in this checkout, constant-power components stand
    in for the CPU and RAM.
    """
    kwargs: dict[str, Any] = {
        "country_iso_code": "FRA",
        "output_dir": str(tmp_path),
        "measure_power_secs": 0.1,
        "allow_multiple_runs": True,
    }
    if not hardware_detection_available():
        from core.constant_power import ConstantPowerComponent

        kwargs["components"] = [
            ConstantPowerComponent("cpu", "cpu:package-0", 20.0, model="Test CPU"),
            ConstantPowerComponent("ram", "ram", 3.0, sample_interval_s=None),
        ]
    return kwargs


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


@pytest.fixture(scope="session")
def boamps_validator() -> Any:
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    if not SCHEMA_DIR.is_dir():
        pytest.fail(f"BoAmps schemas not found at {SCHEMA_DIR}")
    schemas = {
        name: json.loads((SCHEMA_DIR / f"{name}_schema.json").read_text())
        for name in ("report", "algorithm", "dataset", "hardware", "measure")
    }
    registry = Registry().with_resources(
        (schema["id"], Resource.from_contents(schema, default_specification=DRAFT4))
        for schema in schemas.values()
    )
    return Draft4Validator(schemas["report"], registry=registry)


def boamps_report(directory: Path, run_id: str) -> dict[str, Any]:
    return json.loads((directory / f"boamps_report_{run_id}.json").read_text())


def schema_errors(validator: Any, report: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(report)]
