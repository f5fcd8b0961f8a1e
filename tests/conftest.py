"""Test set-up shared by the whole suite.

Frameworks are slow to import (lightning 6-7 s, keras 4-5 s, transformers 6-7 s): the suite imports
each once, in the modules that need it. These variables must be set before any of them loads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
#: ../shared beside the clone (CI has it there)
SHARED_DIR = REPO_ROOT.parent / "shared"
REFERENCE_DIR = SHARED_DIR / "reference"

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No CODECARBON_* variable or ~/.codecarbon.config of the developer leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CODECARBON_") and name != "CODECARBON_CALLBACKS_FAKE_NVML":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.fail(f"../shared/reference is missing (expected at {REFERENCE_DIR})")
    return REFERENCE_DIR
