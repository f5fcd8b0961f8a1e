"""Checks of a BoAmps report against the 1.1 schema: required fields, enumerations, ranges.

Source: the BoAmps 1.1 JSON schemas (https://github.com/Boavizta/BoAmps/tree/main/model); the
value sets are those of :mod:`.model`. The checks are our own code (no jsonschema dependency) and
cover what the reports we build can get wrong; the test suite also validates reports against the
official schemas.
"""

from __future__ import annotations

from typing import Any

from codecarbon_callbacks_core.output.boamps.model import (
    CONFIDENTIALITY_LEVELS,
    DATA_FORMATS,
    DATA_SOURCES,
    DATA_TYPES,
    DATA_USAGES,
    ESTIMATED_ACCURACIES,
    INFRA_TYPES,
    POWER_SOURCES,
    POWER_SUPPLIER_TYPES,
    QUALITIES,
    REPORT_STATUSES,
)

#: the keys each object (a dotted path, ``[]`` for each list element) must have
_REQUIRED: dict[str, tuple[str, ...]] = {
    "": ("task", "measures", "infrastructure"),
    "header": ("reportDatetime",),
    "header.publisher": ("confidentialityLevel",),
    "task": ("taskStage", "taskFamily", "algorithms", "dataset"),
    "task.dataset[]": ("dataUsage", "dataType"),
    "measures[]": ("measurementMethod", "powerConsumption"),
    "system": ("os",),
    "software": ("language",),
    "infrastructure": ("infraType", "components"),
    "infrastructure.components[]": ("componentType", "nbComponent"),
    "environment": ("country",),
}

#: the fields whose value must be one of the schema's enumeration
_ENUMS: dict[str, tuple[str, ...]] = {
    "header.reportStatus": REPORT_STATUSES,
    "header.publisher.confidentialityLevel": CONFIDENTIALITY_LEVELS,
    "task.estimatedAccuracy": ESTIMATED_ACCURACIES,
    "task.dataset[].dataUsage": DATA_USAGES,
    "task.dataset[].dataType": DATA_TYPES,
    "task.dataset[].source": DATA_SOURCES,
    "task.dataset[].dataFormat": DATA_FORMATS,
    "infrastructure.infraType": INFRA_TYPES,
    "environment.powerSupplierType": POWER_SUPPLIER_TYPES,
    "environment.powerSource": POWER_SOURCES,
    "quality": QUALITIES,
}

#: the fields that are fractions, from 0 to 1
_RANGES_0_1 = (
    "task.measuredAccuracy",
    "measures[].averageUtilizationCpu",
    "measures[].averageUtilizationGpu",
    "infrastructure.components[].share",
)


def _resolve(report: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    """All (concrete path, value) pairs at ``path`` ("a.b[].c"); missing parents give nothing."""
    nodes: list[tuple[str, Any]] = [("", report)]
    if not path:
        return nodes
    for part in path.split("."):
        is_list = part.endswith("[]")
        key = part[:-2] if is_list else part
        nxt: list[tuple[str, Any]] = []
        for where, node in nodes:
            if not isinstance(node, dict) or key not in node:
                continue
            here = f"{where}.{key}" if where else key
            value = node[key]
            if is_list:
                if isinstance(value, list):
                    nxt.extend((f"{here}[{i}]", v) for i, v in enumerate(value))
            else:
                nxt.append((here, value))
        nodes = nxt
    return nodes


def validate_report(report: dict[str, Any]) -> list[str]:
    """Problems of a BoAmps report against the 1.1 schema's required fields, enums and ranges.

    Args:
        report: a BoAmps report as a camelCase dict (what :func:`build_report` returns or a
            report file holds).

    Returns:
        Human-readable problems, one per field, e.g. ``"missing required field task.taskStage"``
        or ``"measures[0].averageUtilizationCpu=1.5 must be a number from 0 to 1"``; an empty
        list when none. Nothing is raised for a bad report. (Not a full JSON-Schema validator:
        types are checked only where we fill them.)
    """
    return [
        *_missing_fields(report),
        *_values_outside_enums(report),
        *_values_of_wrong_type(report),
    ]


def _missing_fields(report: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for parent, required in _REQUIRED.items():
        for where, node in _resolve(report, parent):
            if not isinstance(node, dict):
                continue
            for key in required:
                value = node.get(key)
                if value is None or (isinstance(value, list) and not value):
                    full = f"{where}.{key}" if where else key
                    problems.append(f"missing required field {full}")
    return problems


def _values_outside_enums(report: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for path, allowed in _ENUMS.items():
        for where, value in _resolve(report, path):
            if value is not None and value not in allowed:
                listed = (
                    ", ".join(allowed)
                    if len(allowed) <= 12
                    else (
                        f"the schema's {len(allowed)} values (e.g. {', '.join(allowed[:6])}, "
                        f"..., {allowed[-1]})"
                    )
                )
                problems.append(f"{where}={value!r} is not one of {listed}")
    return problems


def _values_of_wrong_type(report: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for path in _RANGES_0_1:
        for where, value in _resolve(report, path):
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                problems.append(f"{where}={value!r} must be a number from 0 to 1")
    for where, value in _resolve(report, "task.dataset[].shape"):
        if not isinstance(value, str):
            problems.append(f"{where} must be a string, got {type(value).__name__}")
    for where, value in _resolve(report, "infrastructure.components[].nbComponent"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{where}={value!r} must be an integer")
    return problems


__all__ = ["validate_report"]
