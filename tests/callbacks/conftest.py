"""Fixtures for the framework callback tests: tracker parameters and the BoAmps schemas.

The suite-wide tests/conftest.py sets HF_HUB_OFFLINE=1 and KERAS_BACKEND=torch before any
framework is imported; each test module imports its framework once (module scope).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SCHEMA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "boamps"


@pytest.fixture
def tracker_kwargs(tmp_path: Path) -> dict[str, Any]:
    """OfflineEmissionsTracker parameters writing CSVs into tmp_path.

    The machine's own hardware is measured: here no RAPL and no GPU, so an estimated CPU and RAM,
    which is the path the callbacks must support ("still works, saying so once").
    """
    return {
        "country_iso_code": "FRA",
        "output_dir": str(tmp_path),
        "measure_power_secs": 0.1,
        "allow_multiple_runs": True,
    }


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
