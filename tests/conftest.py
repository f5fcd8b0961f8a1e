"""Test set-up shared by the whole suite.

Frameworks are slow to import (lightning 6-7 s, keras 4-5 s, transformers 6-7 s): the suite imports
each once, in the modules that need it. These variables must be set before any of them loads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

#: The reference copies (official BoAmps schemas, the public source tables behind our data files,
#: the CodeCarbon API's request shapes) live outside the repository. Only the few tests that compare
#: against them read them, through the ``reference_dir`` fixture; without them those tests skip.
REFERENCE_ENV = "CODECARBON_CALLBACKS_REFERENCE_DIR"
REFERENCE_DIR = Path(os.environ.get(REFERENCE_ENV) or REPO_ROOT.parent / "shared" / "reference")
#: what a complete reference folder holds (a folder without them counts as missing)
REFERENCE_PARTS = (
    "boamps/report_schema.json",
    "codecarbon-api/client-payloads.example.json",
    "data/country_carbon_intensity.csv",
    "data/cpu_power.csv",
)
_REFERENCE_SKIP = f"reference copies not found at {REFERENCE_DIR}"

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(autouse=True)
def _isolated_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No CODECARBON_* variable or ~/.codecarbon.config of the developer leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CODECARBON_") and name != "CODECARBON_CALLBACKS_FAKE_NVML":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(autouse=True)
def _nothing_reported_yet() -> None:
    """Each test starts as a fresh process would: nothing said once yet (``warn_once``), so that
    a test that expects a warning or a log line does not depend on which tests ran before."""
    from codecarbon_callbacks_core import _shared

    with _shared._warned_lock:
        _shared._warned.clear()


def _missing_reference_parts() -> list[str]:
    return [part for part in REFERENCE_PARTS if not (REFERENCE_DIR / part).is_file()]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reference: compares against a reference copy outside the repository "
        f"(${REFERENCE_ENV}, default ../shared/reference); skipped when it is absent",
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that asks for ``reference_dir`` (directly or through a fixture) is marked."""
    for item in items:
        if "reference_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.reference)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line, at the end, when reference tests were skipped for want of the reference."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and _REFERENCE_SKIP in str(report.longrepr[2])
    ]
    if skipped:
        missing = ", ".join(_missing_reference_parts())
        terminalreporter.write_line(
            f"{len(skipped)} reference test(s) skipped: {missing} not found under {REFERENCE_DIR}. "
            f"Put the project's shared/reference folder beside the clone (../shared/reference) or "
            f"set {REFERENCE_ENV} to a copy of it; its README names each file's public source."
        )


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference folder: ``$CODECARBON_CALLBACKS_REFERENCE_DIR``, else ../shared/reference.

    Skips the asking test (with one summary line at the end of the run) when it is incomplete.
    """
    if _missing_reference_parts():
        pytest.skip(_REFERENCE_SKIP)
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def boamps_validator(reference_dir: Path) -> Any:
    """A draft-04 validator of the official BoAmps report schema, sub-schemas resolved offline."""
    import json

    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    schemas = {
        name: json.loads((reference_dir / "boamps" / f"{name}_schema.json").read_text("utf-8"))
        for name in ("report", "algorithm", "dataset", "hardware", "measure")
    }
    registry = Registry().with_resources(
        (schema["id"], Resource.from_contents(schema, default_specification=DRAFT4))
        for schema in schemas.values()
    )
    return Draft4Validator(schemas["report"], registry=registry)
