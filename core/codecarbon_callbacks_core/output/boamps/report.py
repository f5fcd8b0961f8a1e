"""Building a BoAmps 1.1 report (a camelCase dict) from a run's totals (an ``EmissionsData``).

The measurable sections (measures, infrastructure, environment, system, software) come from the
record; the task (what only the user knows: stage, family, algorithms, datasets) comes from
``record.metadata["boamps_task"]`` (filled by the framework callbacks) merged under the user's
``task``, whose values win. ``header.reportStatus`` always comes from the run's state.

Units, as the schema defines them: ``powerConsumption`` in kWh, ``measurementDuration`` in s,
``parametersNumber`` in billions, ``averageUtilization*`` from 0 to 1, ``memorySize`` in GB,
``powerSourceCarbonIntensity`` in gCO2eq/kWh, ``shape`` a string. Source of the format:
https://github.com/Boavizta/BoAmps/tree/main/model (BoAmps 1.1).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.output._util import warn_once
from codecarbon_callbacks_core.output.boamps.model import (
    BOAMPS_FORMAT_SPEC_URI,
    BOAMPS_FORMAT_VERSION,
    BoAmpsAlgorithm,
    BoAmpsDataset,
    BoAmpsHeader,
    BoAmpsTask,
    camel_to_snake,
    snake_to_camel,
)

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData

logger = logging.getLogger(__name__)

#: ``measures[].measurementMethod`` of every report: this package.
MEASUREMENT_METHOD = "codecarbon_callbacks"

#: A parametersNumber above this is surely a raw count, not billions (10 000 billions = 10 T).
_RAW_PARAMETER_COUNT_THRESHOLD = 10_000

#: Why a report is ``other``, by run status (the schema has no reason field: it goes in the free
#: ``task.taskDescription``).
_OTHER_STATUS_REASONS = {
    "failed": "the run failed (an exception ended it); the figures cover it up to the failure",
    "interrupted": (
        "the run was interrupted (SIGTERM or Ctrl-C); the figures cover it up to the interruption"
    ),
    "incomplete": (
        "the run's end was never seen (written at interpreter exit or when the next run began); "
        "the figures cover it up to then"
    ),
    "budget_stop": "an energy/emissions budget stopped training before it completed",
}


def report_status(record: EmissionsData) -> tuple[str, str | None]:
    """The BoAmps ``header.reportStatus`` of a run's totals, and the reason when it is ``other``.

    ``draft`` while the run goes on (status ``running``: live updates and flush()), ``final`` only
    for a completed run, ``other`` for any other end (failed, interrupted, incomplete,
    budget_stop), with a one-line reason; a budget stop adds the budget's own reason
    (``metadata["budget_stop_reason"]``) when the record has it.

    Example:
        >>> from codecarbon_callbacks_core.records import EmissionsData
        >>> report_status(EmissionsData(status="running"))
        ('draft', None)
    """
    status = record.status or ""
    if status == "running":
        return "draft", None
    if status == "completed":
        return "final", None
    reason = _OTHER_STATUS_REASONS.get(status, f"the run ended with status {status!r}")
    metadata = record.metadata if isinstance(record.metadata, dict) else {}
    budget_reason = metadata.get("budget_stop_reason")
    if status == "budget_stop" and budget_reason:
        reason = f"{reason} ({budget_reason})"
    return "other", f"reportStatus other: {reason} (run status {status!r})."


# --------------------------------------------------------------------------- helpers


def _boamps_datetime(timestamp: str | None) -> str | None:
    """ISO 8601 -> BoAmps' ``YYYY-MM-DD HH:MM:SS`` (UTC when the timestamp has a zone)."""
    if not timestamp:
        return None
    try:
        moment = _dt.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return str(timestamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _manufacturer(model: str) -> str | None:
    lowered = model.lower()
    for needle, name in (
        ("nvidia", "NVIDIA"),
        ("tesla", "NVIDIA"),
        ("geforce", "NVIDIA"),
        ("intel", "Intel"),
        ("amd", "AMD"),
        ("radeon", "AMD"),
        ("apple", "Apple"),
        ("ampere", "Ampere"),
        ("graviton", "AWS"),
    ):
        if needle in lowered:
            return name
    return None


def _merge_dicts(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; lists of dicts merged element by element (top's fields win)."""
    merged = dict(base)
    for key, value in top.items():
        if value is None:
            continue
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _merge_dicts(old, value)
        elif (
            isinstance(old, list)
            and isinstance(value, list)
            and all(isinstance(v, dict) for v in old + value)
        ):
            length = max(len(old), len(value))
            merged[key] = [
                _merge_dicts(old[i] if i < len(old) else {}, value[i] if i < len(value) else {})
                for i in range(length)
            ]
        else:
            merged[key] = value
    return merged


def _normalise_task(task: dict[str, Any]) -> dict[str, Any]:
    """Fix units and types the schema is strict about (shape string, parameters in billions)."""
    task = json.loads(json.dumps(task, default=str))
    for algorithm in task.get("algorithms") or []:
        if not isinstance(algorithm, dict):
            continue
        number = algorithm.get("parametersNumber")
        if isinstance(number, (int, float)) and number > _RAW_PARAMETER_COUNT_THRESHOLD:
            warn_once(
                "boamps-parameters-billions",
                "BoAmps parametersNumber is in billions; %s looks like a raw count, written as %s",
                number,
                number / 1e9,
                log=logger,
            )
            algorithm["parametersNumber"] = number / 1e9
    for dataset in task.get("dataset") or []:
        if isinstance(dataset, dict) and isinstance(dataset.get("shape"), list):
            dataset["shape"] = str(tuple(dataset["shape"]))
    return task


def _task_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, BoAmpsTask):
        return value.to_dict()
    if isinstance(value, dict):
        return BoAmpsTask.from_dict(value).to_dict()
    raise ValueError(f"task must be a BoAmpsTask or a dict, got {type(value).__name__}")


def _lenient_task_dict(value: dict[str, Any]) -> dict[str, Any]:
    """The task from record metadata: unknown keys are dropped with a warning, never fatal."""
    known = {snake_to_camel(f.name) for f in dataclasses.fields(BoAmpsTask)}
    nested = {"algorithms": BoAmpsAlgorithm, "dataset": BoAmpsDataset}
    dropped: list[str] = []
    task: dict[str, Any] = {}
    for key, item in value.items():
        key = snake_to_camel(camel_to_snake(str(key)))
        if key not in known:
            dropped.append(key)
        elif key in nested and isinstance(item, list):
            fields = {snake_to_camel(f.name) for f in dataclasses.fields(nested[key])}
            cleaned = []
            for element in item:
                if not isinstance(element, dict):
                    dropped.append(f"{key}[]")
                    continue
                cleaned.append(
                    {snake_to_camel(camel_to_snake(str(k))): v for k, v in element.items()}
                )
                dropped += [f"{key}[].{k}" for k in cleaned[-1] if k not in fields]
                cleaned[-1] = {k: v for k, v in cleaned[-1].items() if k in fields}
            task[key] = cleaned
        else:
            task[key] = item
    if dropped:
        warn_once(
            "boamps-record-task-unknown",
            "metadata['boamps_task'] has fields BoAmps does not define, left out: %s",
            ", ".join(sorted(set(dropped))),
            log=logger,
        )
    return task


def _distributed_components(
    distributed: dict[str, Any], record: EmissionsData, single: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Infrastructure components of a distributed run (``metadata["distributed"]``).

    One component per CPU model and per RAM size over the machines, and per GPU model over the
    GPUs measured, with ``nbComponent`` counting them; ``share`` is 1 where whole devices were
    measured (GPUs; CPUs and RAM in ``machine`` tracking mode), absent in ``process`` mode
    (a process's share of a machine is not a fixed fraction).
    """
    whole_host = distributed.get("tracking_mode", record.tracking_mode) != "process"
    machines = [m for m in distributed.get("per_machine") or [] if isinstance(m, dict)]
    by_cpu: dict[str, int] = {}
    by_ram: dict[float, int] = {}
    for m in machines:
        model = str(m.get("cpu_model") or record.cpu_model or "")
        by_cpu[model] = by_cpu.get(model, 0) + max(1, int(m.get("cpu_count") or 0))
        size = float(m.get("ram_total_size") or 0.0)
        by_ram[size] = by_ram.get(size, 0) + 1
    by_gpu: dict[str, int] = {}
    for g in distributed.get("per_gpu") or []:
        if isinstance(g, dict):
            model = str(g.get("model") or "")
            by_gpu[model] = by_gpu.get(model, 0) + 1
    host_share = {"share": 1.0} if whole_host else {}
    hw: list[dict[str, Any]] = [
        {
            "componentName": model or None,
            "componentType": "cpu",
            "nbComponent": count,
            "manufacturer": _manufacturer(model) if model else None,
            **host_share,
        }
        for model, count in sorted(by_cpu.items())
    ]
    hw += [
        {
            "componentName": model or None,
            "componentType": "gpu",
            "nbComponent": count,
            "manufacturer": _manufacturer(model) if model else None,
            "share": 1.0,
        }
        for model, count in sorted(by_gpu.items())
    ]
    hw += [
        {
            "componentName": "RAM",
            "componentType": "ram",
            "nbComponent": count,
            "memorySize": size or None,
            **host_share,
        }
        for size, count in sorted(by_ram.items())
    ]
    return hw or single


#: BoAmps ``quality`` from the energy's relative uncertainty (95 % half-width / energy): at most
#: the first figure is ``high``, at most the second ``medium``, else ``low``
QUALITY_THRESHOLDS = (0.10, 0.30)


def quality_from_uncertainty(record: EmissionsData) -> str | None:
    """``high``, ``medium`` or ``low`` from ``record.energy_consumed_uncertainty_kwh`` relative
    to ``record.energy_consumed`` (see :data:`QUALITY_THRESHOLDS`); None without energy.

    >>> from codecarbon_callbacks_core.records import EmissionsData
    >>> quality_from_uncertainty(EmissionsData(energy_consumed=1.0,
    ...     energy_consumed_uncertainty_kwh=0.05))
    'high'
    """
    if not record.energy_consumed > 0:
        return None
    relative = record.energy_consumed_uncertainty_kwh / record.energy_consumed
    if relative <= QUALITY_THRESHOLDS[0]:
        return "high"
    return "medium" if relative <= QUALITY_THRESHOLDS[1] else "low"


def build_report(
    record: EmissionsData,
    *,
    task: BoAmpsTask | dict[str, Any] | None = None,
    header: BoAmpsHeader | dict[str, Any] | None = None,
    quality: str | None = None,
    infra_overrides: dict[str, Any] | None = None,
    environment_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The BoAmps report (camelCase dict) of a run's totals ``record``.

    Task metadata: ``record.metadata["boamps_task"]`` (camelCase, from the framework callbacks)
    merged under ``task`` (the user's values win); its unknown fields are dropped with a warning.
    Fields left at None are left out of the report.

    Args:
        record: the run's totals (``energy_consumed`` in kWh, ``duration`` in s).
        task: what was measured (a BoAmpsTask or a camelCase/snake_case dict).
        header: header fields (publisher, licensing...); its ``reportStatus`` is ignored: the
            status comes from the run (see :func:`report_status`).
        quality: ``high``, ``medium`` or ``low`` (not checked here; see ``validate_report``);
            None: from the record's energy uncertainty (:func:`quality_from_uncertainty`).
        infra_overrides: infrastructure fields; its ``components`` are merged into the detected
            components of the same ``componentType``.
        environment_overrides: environment fields (location, powerSupplierType...).

    Returns:
        The report: header, task, measures (one), system, software, infrastructure, environment,
        quality.

    Raises:
        ValueError: ``task`` or ``header`` is not a dict or object of its kind, or has a field
            BoAmps does not define.
    """
    metadata = record.metadata if isinstance(record.metadata, dict) else {}
    components = [c for c in metadata.get("components") or [] if isinstance(c, dict)]
    status, status_reason = report_status(record)
    report_header = _report_header(record, header, status)
    merged_task = _report_task(metadata, task, status_reason)
    has_gpu = bool(record.gpu_count) or any(c.get("kind") == "gpu" for c in components)
    infrastructure = _infrastructure(
        record, _detected_components(record, metadata, components, has_gpu)
    )
    if infra_overrides:
        _apply_infra_overrides(infrastructure, infra_overrides)
    environment = _environment(record)
    if environment_overrides:
        environment.update({snake_to_camel(k): v for k, v in environment_overrides.items()})
    report: dict[str, Any] = {
        "header": report_header,
        "task": _normalise_task(merged_task) if merged_task else None,
        "measures": [_measure(record, metadata, components, has_gpu)],
        "system": {"os": record.os or None},
        "software": {"language": "python", "version": record.python_version or None},
        "infrastructure": infrastructure,
        "environment": environment,
        "quality": quality if quality is not None else quality_from_uncertainty(record),
    }
    return _drop_none(report)


def _report_header(
    record: EmissionsData, header: BoAmpsHeader | dict[str, Any] | None, status: str
) -> dict[str, Any]:
    """The ``header``: defaults, the user's fields over them, and the run's status whatever the
    user's header says."""
    report_header = {
        "formatVersion": BOAMPS_FORMAT_VERSION,
        "formatVersionSpecificationUri": BOAMPS_FORMAT_SPEC_URI,
        "reportId": record.run_id or None,
        # the record's time, as CodeCarbon's (now, for a record without one)
        "reportDatetime": _boamps_datetime(record.timestamp)
        or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }
    if header is not None:
        user_header = (
            header.to_dict()
            if isinstance(header, BoAmpsHeader)
            else (BoAmpsHeader.from_dict(header).to_dict())
        )
        given = user_header.pop("reportStatus", None)
        if given is not None and given != status:
            logger.debug(
                "BoAmps header reportStatus %r ignored: the run's state gives %r", given, status
            )
        report_header = _merge_dicts(report_header, user_header)
    report_header["reportStatus"] = status
    return report_header


def _report_task(
    metadata: dict[str, Any],
    task: BoAmpsTask | dict[str, Any] | None,
    status_reason: str | None,
) -> dict[str, Any]:
    """The task of the record's metadata with the user's over it, and the status reason."""
    task_from_record = metadata.get("boamps_task")
    merged_task = _merge_dicts(
        _lenient_task_dict(task_from_record) if isinstance(task_from_record, dict) else {},
        _task_dict(task),
    )
    if status_reason:
        # The schema has no field for the reason; taskDescription is its free-text field.
        described = str(merged_task.get("taskDescription") or "").strip()
        merged_task["taskDescription"] = f"{described} {status_reason}".strip()
    return merged_task


def _tracking_mode(
    record: EmissionsData, components: list[dict[str, Any]], kind: str
) -> str | None:
    """How ``kind`` (cpu, gpu) was measured: the record's column, else its components' methods."""
    explicit = getattr(record, f"{kind}_method", "") or ""
    if explicit:
        return explicit
    methods = sorted(
        {str(c.get("method")) for c in components if c.get("kind") == kind and c.get("method")}
    )
    return "+".join(methods) or None


def _measure(
    record: EmissionsData,
    metadata: dict[str, Any],
    components: list[dict[str, Any]],
    has_gpu: bool,
) -> dict[str, Any]:
    """The one ``measures[]`` entry: energy in kWh, duration in s, utilisations from 0 to 1."""
    return {
        "measurementMethod": MEASUREMENT_METHOD,
        "version": record.tracker_version or _package_version(),
        "cpuTrackingMode": _tracking_mode(record, components, "cpu"),
        "gpuTrackingMode": _tracking_mode(record, components, "gpu") if has_gpu else None,
        "averageUtilizationCpu": _fraction(record.cpu_utilization_percent),
        "averageUtilizationGpu": _fraction(record.gpu_utilization_percent) if has_gpu else None,
        "powerConsumption": float(record.energy_consumed),
        "measurementDuration": float(record.duration),
        "measurementDateTime": _boamps_datetime(
            metadata.get("run_start_timestamp") or record.timestamp
        ),
    }


def _detected_components(
    record: EmissionsData,
    metadata: dict[str, Any],
    components: list[dict[str, Any]],
    has_gpu: bool,
) -> list[dict[str, Any]]:
    """``infrastructure.components``: CPU, GPU (when one was measured) and RAM (GB), or one per
    model and size over the machines of a distributed run."""
    hw: list[dict[str, Any]] = []
    cpu_model = record.cpu_model or next(
        (str(c.get("model")) for c in components if c.get("kind") == "cpu" and c.get("model")), ""
    )
    hw.append(
        {
            "componentName": cpu_model or None,
            "componentType": "cpu",
            "nbComponent": int(record.cpu_count)
            if record.cpu_count
            else max(1, sum(1 for c in components if c.get("kind") == "cpu")),
            "manufacturer": _manufacturer(cpu_model) if cpu_model else None,
        }
    )
    if has_gpu:
        gpus = [c for c in components if c.get("kind") == "gpu"]
        gpu_model = record.gpu_model or next(
            (str(c.get("model")) for c in gpus if c.get("model")), ""
        )
        hw.append(
            {
                "componentName": gpu_model or None,
                "componentType": "gpu",
                "nbComponent": int(record.gpu_count) if record.gpu_count else max(1, len(gpus)),
                "manufacturer": _manufacturer(gpu_model) if gpu_model else None,
            }
        )
    hw.append(
        {
            "componentName": "RAM",
            "componentType": "ram",
            "nbComponent": 1,
            "memorySize": float(record.ram_total_size) if record.ram_total_size else None,
        }
    )
    distributed = metadata.get("distributed")
    if isinstance(distributed, dict) and distributed.get("per_machine"):
        hw = _distributed_components(distributed, record, hw)
    return hw


def _infrastructure(record: EmissionsData, hw: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``infrastructure`` section: public cloud or on premise, and the components ``hw``."""
    on_cloud = record.on_cloud == "Y" or bool(record.cloud_provider)
    return {
        "infraType": "publicCloud" if on_cloud else "onPremise",
        "cloudProvider": record.cloud_provider or None,
        "cloudInstance": None,
        "components": hw,
    }


def _apply_infra_overrides(infrastructure: dict[str, Any], infra_overrides: dict[str, Any]) -> None:
    """The user's infrastructure fields over ``infrastructure``, in place; each user component
    is merged into the first detected one of its ``componentType`` (the user's fields win)."""
    hw: list[dict[str, Any]] = infrastructure["components"]
    overrides = dict(infra_overrides)
    user_components = overrides.pop("components", None)
    infrastructure.update({snake_to_camel(k): v for k, v in overrides.items()})
    if not user_components:
        return
    by_type = {c["componentType"]: c for c in hw}
    merged_components: list[dict[str, Any]] = []
    used: set[str] = set()
    for comp in user_components:
        comp_dict = {snake_to_camel(k): v for k, v in dict(comp).items()}
        kind = comp_dict.get("componentType")
        if kind in by_type and kind not in used:
            comp_dict = _merge_dicts(by_type[kind], comp_dict)
            used.add(str(kind))
        merged_components.append(comp_dict)
    merged_components += [c for c in hw if c["componentType"] not in used]
    infrastructure["components"] = merged_components


def _environment(record: EmissionsData) -> dict[str, Any]:
    """The ``environment`` section; ``powerSourceCarbonIntensity`` in gCO2eq/kWh."""
    return {
        "country": record.country_name or record.country_iso_code or None,
        "latitude": record.latitude,
        "longitude": record.longitude,
        "location": record.cloud_region or record.region or None,
        "powerSourceCarbonIntensity": (
            float(record.carbon_intensity_g_per_kwh) if record.carbon_intensity_g_per_kwh else None
        ),
    }


def _fraction(percent: float | None) -> float | None:
    if percent is None or not isinstance(percent, (int, float)) or math.isnan(percent):
        return None
    return round(min(max(float(percent) / 100.0, 0.0), 1.0), 6)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _drop_none(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v != {}}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _package_version() -> str:
    from codecarbon_callbacks_core._version import __version__

    return __version__


__all__ = ["MEASUREMENT_METHOD", "build_report", "report_status"]
