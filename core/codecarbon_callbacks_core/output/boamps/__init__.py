"""BoAmps: a BoAmps 1.1 JSON report per run (``boamps_report_<run_id>.json``).

BoAmps (Boavizta, https://github.com/Boavizta/BoAmps) is an open format for the energy of AI
tasks. The measurable parts (measures, infrastructure, environment, system, software) are filled
from the run; what only the user knows (the task: stage, family, algorithms, datasets) comes from
the user (``task=``, a context file) and/or from the framework callbacks, which put a camelCase
task dict in ``tracker.metadata["boamps_task"]``. The user's explicit values win.

Units, as the schema defines them: ``powerConsumption`` in kWh, ``measurementDuration`` in s,
``parametersNumber`` in billions, ``averageUtilization*`` from 0 to 1, ``memorySize`` in GB,
``powerSourceCarbonIntensity`` in gCO2eq/kWh, ``shape`` a string.

The report is validated at run time against the schema's required fields and enums with our own
code (no jsonschema dependency); a report that lacks required fields is still written, with a
warning naming them.

Modules, after CodeCarbon's ``output_methods/boamps/{models,mapper,output}.py``:
:mod:`.model` (the objects, value sets and camelCase keys), :mod:`.task` (the task from plain
facts the framework layer gives), :mod:`.report` (a record -> a report), :mod:`.schema` (the
checks) and :mod:`.output` (``BoAmpsOutput``, which writes it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it; resolved on first use, so that importing
#: :mod:`.model` alone (as the framework layer does) loads neither the report builder nor the
#: output
_EXPORTS: dict[str, str] = {
    "BoAmpsAlgorithm": "codecarbon_callbacks_core.output.boamps.model",
    "BoAmpsDataset": "codecarbon_callbacks_core.output.boamps.model",
    "BoAmpsHeader": "codecarbon_callbacks_core.output.boamps.model",
    "BoAmpsOutput": "codecarbon_callbacks_core.output.boamps.output",
    "BoAmpsPublisher": "codecarbon_callbacks_core.output.boamps.model",
    "BoAmpsTask": "codecarbon_callbacks_core.output.boamps.model",
    "build_report": "codecarbon_callbacks_core.output.boamps.report",
    "report_status": "codecarbon_callbacks_core.output.boamps.report",
    "validate_report": "codecarbon_callbacks_core.output.boamps.schema",
}

__all__ = [
    "BoAmpsAlgorithm",
    "BoAmpsDataset",
    "BoAmpsHeader",
    "BoAmpsOutput",
    "BoAmpsPublisher",
    "BoAmpsTask",
    "build_report",
    "report_status",
    "validate_report",
]

if TYPE_CHECKING:  # pragma: no cover
    from codecarbon_callbacks_core.output.boamps.model import (
        BoAmpsAlgorithm,
        BoAmpsDataset,
        BoAmpsHeader,
        BoAmpsPublisher,
        BoAmpsTask,
    )
    from codecarbon_callbacks_core.output.boamps.output import BoAmpsOutput
    from codecarbon_callbacks_core.output.boamps.report import build_report, report_status
    from codecarbon_callbacks_core.output.boamps.schema import validate_report


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
