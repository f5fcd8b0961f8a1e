"""Fixtures for the framework callback tests: tracker parameters.

The suite-wide tests/conftest.py sets HF_HUB_OFFLINE=1 and KERAS_BACKEND=torch before any
framework is imported; each test module imports its framework once (module scope).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


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
