"""BOAMPS output: a BoAmps 1.1 JSON report per run (``boamps_report_<run_id>.json``).

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
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from codecarbon_callbacks_core._shared import write_json_atomic
from codecarbon_callbacks_core.output._util import describe_error, warn_once
from codecarbon_callbacks_core.output.base import BaseOutput

if TYPE_CHECKING:
    from typing_extensions import Self  # annotations only: never imported at run time

    from codecarbon_callbacks_core.records import EmissionsData

logger = logging.getLogger(__name__)

#: The BoAmps specification version the reports follow.
BOAMPS_FORMAT_VERSION = "1.1.0"
BOAMPS_FORMAT_SPEC_URI = "https://github.com/Boavizta/BoAmps/tree/main/model"
MEASUREMENT_METHOD = "codecarbon_callbacks"

# Enumerations of the BoAmps 1.1 schemas (model/*.json) that we check at run time.
DATA_USAGES = ("input", "output")
DATA_TYPES = (
    "tabular",
    "audio",
    "boolean",
    "image",
    "video",
    "object",
    "text",
    "token",
    "word",
    "other",
)
DATA_SOURCES = ("public", "private", "other")
#: dataset dataFormat values of the schema (it also allows null).
DATA_FORMATS = (
    "3gp",
    "3gpp",
    "3gpp2",
    "8svx",
    "aa",
    "aac",
    "aax",
    "act",
    "afdesign",
    "afphoto",
    "ai",
    "aiff",
    "alac",
    "amr",
    "amv",
    "ape",
    "arrow",
    "asf",
    "au",
    "avi",
    "avif",
    "awb",
    "bmp",
    "bpg",
    "cd5",
    "cda",
    "cdr",
    "cgm",
    "clip",
    "cpt",
    "csv",
    "deep",
    "dirac",
    "divx",
    "drawingml",
    "drw",
    "dss",
    "dvf",
    "ecw",
    "eps",
    "fits",
    "flac",
    "flif",
    "flv",
    "flvf4v",
    "gem",
    "gerber",
    "gif",
    "gle",
    "gsm",
    "heif",
    "hp-gl",
    "html",
    "hvif",
    "ico",
    "iklax",
    "ilbm",
    "img",
    "ivs",
    "jpeg",
    "json",
    "kra",
    "lottie",
    "m4a",
    "m4b",
    "m4p",
    "m4v",
    "mathml",
    "matroska",
    "mdp",
    "mmf",
    "movpkg",
    "mp3",
    "mpc",
    "mpeg1",
    "mpeg2",
    "mpeg4",
    "msv",
    "mxf",
    "naplps",
    "netpbm",
    "nmf",
    "nrrd",
    "nsv",
    "odg",
    "ods",
    "ogg",
    "opus",
    "pam",
    "parquet",
    "pbm",
    "pcx",
    "pdf",
    "pdn",
    "pgf",
    "pgm",
    "pgml",
    "pict",
    "plbm",
    "png",
    "pnm",
    "postscript",
    "ppm",
    "psd",
    "psp",
    "pstricks",
    "qcc",
    "quicktime",
    "ra",
    "raw",
    "realmedia",
    "regis",
    "rf64",
    "roq",
    "sai",
    "sgi",
    "sid",
    "sql",
    "sln",
    "svg",
    "svi",
    "swf",
    "text",
    "tga",
    "tiff",
    "tinyvg",
    "tta",
    "vicar",
    "vivoactive",
    "vml",
    "vob",
    "voc",
    "vox",
    "wav",
    "webm",
    "webp",
    "wma",
    "wmf",
    "wmv",
    "wv",
    "xaml",
    "xar",
    "xcf",
    "xisf",
    "xls",
    "xlsx",
    "xml",
    "xps",
    "yaml",
    "other",
)
REPORT_STATUSES = ("draft", "final", "corrective", "other")

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
CONFIDENTIALITY_LEVELS = ("public", "internal", "confidential", "secret")
ESTIMATED_ACCURACIES = ("veryPoor", "poor", "average", "good", "veryGood")
INFRA_TYPES = ("publicCloud", "privateCloud", "onPremise", "other")
POWER_SUPPLIER_TYPES = ("public", "private", "internal", "other")
POWER_SOURCES = ("solar", "wind", "nuclear", "hydroelectric", "gas", "coal", "other")
QUALITIES = ("high", "medium", "low")

#: A parametersNumber above this is surely a raw count, not billions (10 000 billions = 10 T).
_RAW_PARAMETER_COUNT_THRESHOLD = 10_000


def snake_to_camel(name: str) -> str:
    """``task_stage`` -> ``taskStage``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_to_snake(name: str) -> str:
    """``taskStage`` -> ``task_stage``."""
    s1 = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s1).lower()


_T = TypeVar("_T", bound="_BoAmpsObject")  # noqa: PYI018 - used in from_dict's signature


class _BoAmpsObject:
    """snake_case dataclass <-> camelCase dict, None fields left out."""

    _nested: ClassVar[dict[str, Any]] = {}
    _nested_lists: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The object as a BoAmps (camelCase) dict, without the fields left at None."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, list):
                value = [v.to_dict() if isinstance(v, _BoAmpsObject) else v for v in value]
            elif isinstance(value, _BoAmpsObject):
                value = value.to_dict()
            out[snake_to_camel(f.name)] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Self | None) -> Self:
        """Build from a camelCase (or snake_case) dict; an unknown key is a ValueError."""
        if isinstance(data, cls):
            return data
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError(  # noqa: TRY004 - bad config values are ValueErrors (ConfigError)
                f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}"
            )
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = camel_to_snake(str(key))
            if name not in names:
                accepted = ", ".join(sorted(snake_to_camel(n) for n in names))
                raise ValueError(f"{cls.__name__}: unknown field {key!r}; accepted: {accepted}")
            if name in cls._nested and isinstance(value, dict):
                value = cls._nested[name].from_dict(value)
            elif name in cls._nested_lists and isinstance(value, list):
                value = [cls._nested_lists[name].from_dict(v) for v in value]
            kwargs[name] = value
        return cls(**kwargs)


@dataclass
class BoAmpsPublisher(_BoAmpsObject):
    """The organisation publishing the report (``header.publisher``)."""

    name: str | None = None
    division: str | None = None
    project_name: str | None = None
    confidentiality_level: str | None = None
    public_key: str | None = None


@dataclass
class BoAmpsHeader(_BoAmpsObject):
    """The report header; unset fields are filled (reportId = run_id, reportDatetime = now).

    ``report_status`` is not taken from here: the report's status comes from the run's state
    (see :func:`report_status`); a value given here is ignored.

    Example:
        >>> BoAmpsHeader(licensing="CC-BY-4.0", publisher=BoAmpsPublisher(
        ...     name="ACME", confidentiality_level="public")).to_dict()["publisher"]["name"]
        'ACME'
    """

    licensing: str | None = None
    format_version: str | None = None
    format_version_specification_uri: str | None = None
    report_id: str | None = None
    report_datetime: str | None = None
    report_status: str | None = None
    publisher: BoAmpsPublisher | None = None

    _nested: ClassVar[dict[str, Any]] = {"publisher": BoAmpsPublisher}


@dataclass
class BoAmpsAlgorithm(_BoAmpsObject):
    """One algorithm of the task. ``parameters_number`` is in billions (8 for an 8B model)."""

    training_type: str | None = None
    algorithm_type: str | None = None
    algorithm_name: str | None = None
    algorithm_uri: str | None = None
    foundation_model_name: str | None = None
    foundation_model_uri: str | None = None
    parameters_number: float | None = None
    framework: str | None = None
    framework_version: str | None = None
    class_path: str | None = None
    layers_number: float | None = None
    epochs_number: float | None = None
    optimizer: str | None = None
    quantization: str | None = None


@dataclass
class BoAmpsDataset(_BoAmpsObject):
    """One dataset of the task. ``data_usage`` is input|output; ``data_type`` one of
    tabular, audio, boolean, image, video, object, text, token, word, other; ``data_size`` in
    GB; ``shape`` a string such as ``"(12, 1000)"`` (a tuple or list is converted)."""

    data_usage: str | None = None
    data_type: str | None = None
    data_format: str | None = None
    data_size: float | None = None
    data_quantity: float | None = None
    shape: str | None = None
    source: str | None = None
    source_uri: str | None = None
    owner: str | None = None


@dataclass
class BoAmpsTask(_BoAmpsObject):
    """What was measured: ``task_stage`` (training, finetuning, inference...), ``task_family``
    (text classification...), at least one algorithm and one dataset.

    Example:
        >>> task = BoAmpsTask(task_stage="training", task_family="image classification",
        ...     algorithms=[BoAmpsAlgorithm(algorithm_name="resnet18", framework="pytorch")],
        ...     dataset=[BoAmpsDataset(data_usage="input", data_type="image")])
        >>> task.to_dict()["taskStage"]
        'training'
    """

    task_stage: str | None = None
    task_family: str | None = None
    nb_request: float | None = None
    algorithms: list[BoAmpsAlgorithm] | None = None
    dataset: list[BoAmpsDataset] | None = None
    measured_accuracy: float | None = None
    estimated_accuracy: str | None = None
    task_description: str | None = None

    _nested_lists: ClassVar[dict[str, Any]] = {
        "algorithms": BoAmpsAlgorithm,
        "dataset": BoAmpsDataset,
    }


# --------------------------------------------------------------------------- validation

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

    Returns human-readable problems, e.g. ``"missing required field task.taskStage"``; an empty
    list when none. (Not a full JSON-Schema validator: types are checked only where we fill them.)
    """
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


# --------------------------------------------------------------------------- mapping


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
    merged under ``task`` (the user's values win).
    """
    metadata = record.metadata if isinstance(record.metadata, dict) else {}
    components = [c for c in metadata.get("components") or [] if isinstance(c, dict)]

    # header: the status comes from the run's state, whatever the user's header says
    status, status_reason = report_status(record)
    report_header = {
        "formatVersion": BOAMPS_FORMAT_VERSION,
        "formatVersionSpecificationUri": BOAMPS_FORMAT_SPEC_URI,
        "reportId": record.run_id or None,
        "reportDatetime": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
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

    # task
    task_from_record = metadata.get("boamps_task")
    merged_task = _merge_dicts(
        _lenient_task_dict(task_from_record) if isinstance(task_from_record, dict) else {},
        _task_dict(task),
    )
    if status_reason:
        # The schema has no field for the reason; taskDescription is its free-text field.
        described = str(merged_task.get("taskDescription") or "").strip()
        merged_task["taskDescription"] = f"{described} {status_reason}".strip()

    # measures
    def method_of(kind: str) -> str | None:
        explicit = getattr(record, f"{kind}_method", "") or ""
        if explicit:
            return explicit
        methods = sorted(
            {str(c.get("method")) for c in components if c.get("kind") == kind and c.get("method")}
        )
        return "+".join(methods) or None

    has_gpu = bool(record.gpu_count) or any(c.get("kind") == "gpu" for c in components)
    measure: dict[str, Any] = {
        "measurementMethod": MEASUREMENT_METHOD,
        "version": record.tracker_version or _package_version(),
        "cpuTrackingMode": method_of("cpu"),
        "gpuTrackingMode": method_of("gpu") if has_gpu else None,
        "averageUtilizationCpu": _fraction(record.cpu_utilization_percent),
        "averageUtilizationGpu": _fraction(record.gpu_utilization_percent) if has_gpu else None,
        "powerConsumption": float(record.energy_consumed),
        "measurementDuration": float(record.duration),
        "measurementDateTime": _boamps_datetime(
            metadata.get("run_start_timestamp") or record.timestamp
        ),
    }

    # infrastructure
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
    on_cloud = record.on_cloud == "Y" or bool(record.cloud_provider)
    infrastructure: dict[str, Any] = {
        "infraType": "publicCloud" if on_cloud else "onPremise",
        "cloudProvider": record.cloud_provider or None,
        "cloudInstance": None,
        "components": hw,
    }
    if infra_overrides:
        overrides = dict(infra_overrides)
        user_components = overrides.pop("components", None)
        infrastructure.update({snake_to_camel(k): v for k, v in overrides.items()})
        if user_components:
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

    # environment
    environment: dict[str, Any] = {
        "country": record.country_name or record.country_iso_code or None,
        "latitude": record.latitude,
        "longitude": record.longitude,
        "location": record.cloud_region or record.region or None,
        "powerSourceCarbonIntensity": (
            float(record.carbon_intensity_g_per_kwh) if record.carbon_intensity_g_per_kwh else None
        ),
    }
    if environment_overrides:
        environment.update({snake_to_camel(k): v for k, v in environment_overrides.items()})

    report: dict[str, Any] = {
        "header": report_header,
        "task": _normalise_task(merged_task) if merged_task else None,
        "measures": [measure],
        "system": {"os": record.os or None},
        "software": {"language": "python", "version": record.python_version or None},
        "infrastructure": infrastructure,
        "environment": environment,
        "quality": quality,
    }
    return _drop_none(report)


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


# --------------------------------------------------------------------------- output


class BoAmpsOutput(BaseOutput):
    """Writes ``boamps_report_<run_id>.json`` in ``output_dir`` on every flush/stop.

    The report is rewritten at each flush and at stop. ``header.reportStatus`` comes from the
    run's state, never from ``header`` or a context file: ``draft`` while running (a flush),
    ``final`` only when the run completed, ``other`` otherwise (failed, interrupted, incomplete,
    budget_stop), with the reason appended to ``task.taskDescription`` (the schema's free-text
    field; it has no field for a status reason).

    Args:
        output_dir: where the report is written (created if needed).
        task: what was measured (BoAmpsTask or camelCase dict); merged over
            ``record.metadata["boamps_task"]``.
        header: header fields to set (publisher, licensing...).
        quality: ``high``, ``medium`` or ``low``.
        infra_overrides: infrastructure fields (cloudInstance, cloudService, infraType,
            components: extra details merged into the detected components by componentType).
        environment_overrides: environment fields (location, powerSupplierType, powerSource...).

    Example:
        >>> out = BoAmpsOutput("out", task=BoAmpsTask(task_stage="training",
        ...     task_family="text classification",
        ...     algorithms=[BoAmpsAlgorithm(algorithm_name="bert-base", parameters_number=0.11)],
        ...     dataset=[BoAmpsDataset(data_usage="input", data_type="text")]))
        >>> # EmissionsTracker(output_handlers=[out])
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str] = ".",
        task: BoAmpsTask | dict[str, Any] | None = None,
        header: BoAmpsHeader | dict[str, Any] | None = None,
        quality: str | None = None,
        infra_overrides: dict[str, Any] | None = None,
        environment_overrides: dict[str, Any] | None = None,
    ) -> None:
        if quality is not None and quality not in QUALITIES:
            raise ValueError(
                f"quality must be one of {', '.join(QUALITIES)} or None, got {quality!r}"
            )
        self.output_dir = os.fspath(output_dir)
        self.task = BoAmpsTask.from_dict(task) if isinstance(task, dict) else task
        if self.task is not None and not isinstance(self.task, BoAmpsTask):
            raise ValueError(f"task must be a BoAmpsTask or a dict, got {type(task).__name__}")
        self.header = BoAmpsHeader.from_dict(header) if isinstance(header, dict) else header
        self.quality = quality
        self.infra_overrides = dict(infra_overrides) if infra_overrides else None
        self.environment_overrides = dict(environment_overrides) if environment_overrides else None
        #: Path of the last report written (None until one is).
        self.save_file_path: str | None = None
        #: Problems found in the last report (empty when it is schema-complete).
        self.last_problems: list[str] = []

    @classmethod
    def from_dict(
        cls, context: dict[str, Any], output_dir: str | os.PathLike[str] = "."
    ) -> BoAmpsOutput:
        """Build from a partial BoAmps report (camelCase): task, header, quality,
        infrastructure, environment sections; other keys are ignored with a debug message."""
        if not isinstance(context, dict):
            raise ValueError(  # noqa: TRY004 - bad config values are ValueErrors (ConfigError)
                f"BoAmps context must be a JSON object, got {type(context).__name__}"
            )
        infra = context.get("infrastructure")
        env = context.get("environment")
        return cls(
            output_dir=output_dir,
            task=BoAmpsTask.from_dict(context["task"]) if context.get("task") else None,
            header=BoAmpsHeader.from_dict(context["header"]) if context.get("header") else None,
            quality=context.get("quality"),
            infra_overrides=dict(infra) if isinstance(infra, dict) else None,
            environment_overrides=dict(env) if isinstance(env, dict) else None,
        )

    @classmethod
    def from_file(
        cls, context_file: str | os.PathLike[str], output_dir: str | os.PathLike[str] = "."
    ) -> BoAmpsOutput:
        """Build from a JSON context file (a partial BoAmps report, see ``from_dict``)."""
        path = os.fspath(context_file)
        try:
            with open(path, encoding="utf-8") as handle:
                context = json.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(f"BoAmps context file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"BoAmps context file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(context, output_dir=output_dir)

    def build(self, total: EmissionsData) -> dict[str, Any]:
        """The report for ``total`` (nothing written)."""
        return build_report(
            total,
            task=self.task,
            header=self.header,
            quality=self.quality,
            infra_overrides=self.infra_overrides,
            environment_overrides=self.environment_overrides,
        )

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        try:
            report = self.build(total)
            self.last_problems = validate_report(report)
            if self.last_problems:
                warn_once(
                    f"boamps-incomplete-{total.run_id}",
                    "BoAmps report for run %s is written but does not validate: %s. Give the "
                    "task with BoAmpsOutput(task=BoAmpsTask(...)), a context file, or "
                    "tracker.metadata['boamps_task'].",
                    total.run_id,
                    "; ".join(self.last_problems),
                    log=logger,
                )
            name = f"boamps_report_{total.run_id or 'unknown'}.json"
            path = os.path.join(self.output_dir, name)
            write_json_atomic(path, report, indent=2, allow_nan=False)
            self.save_file_path = path
            logger.debug("BoAmps report written to %s", path)
        except Exception as exc:  # noqa: BLE001 - never raise into training
            warn_once(
                "boamps-write-failed",
                "BOAMPS output could not write the report in %s: %s",
                self.output_dir,
                describe_error(exc),
                log=logger,
            )


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
