"""The BoAmps 1.1 data model: the value sets of its fields, the task and header objects, and the
snake_case <-> camelCase conversion of their keys.

Source: the BoAmps specification (Boavizta, https://github.com/Boavizta/BoAmps/tree/main/model,
``report_schema.json`` and the schemas it includes); the enumerations below copy its ``enum``
lists. The objects are plain dataclasses with snake_case fields; ``to_dict()`` gives the report's
camelCase keys, ``from_dict()`` reads them back (or snake_case keys). Units are the schema's:
``parameters_number`` in billions, ``data_size`` in GB, ``measured_accuracy`` from 0 to 1.

This module is a leaf: it imports nothing from the package, so the framework layer can use the
value sets and :func:`camel_keys` without loading the output.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from typing_extensions import Self  # annotations only: never imported at run time


#: The BoAmps specification version the reports follow, and where it is published.
BOAMPS_FORMAT_VERSION = "1.1.0"
BOAMPS_FORMAT_SPEC_URI = "https://github.com/Boavizta/BoAmps/tree/main/model"

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
CONFIDENTIALITY_LEVELS = ("public", "internal", "confidential", "secret")
ESTIMATED_ACCURACIES = ("veryPoor", "poor", "average", "good", "veryGood")
INFRA_TYPES = ("publicCloud", "privateCloud", "onPremise", "other")
POWER_SUPPLIER_TYPES = ("public", "private", "internal", "other")
POWER_SOURCES = ("solar", "wind", "nuclear", "hydroelectric", "gas", "coal", "other")
QUALITIES = ("high", "medium", "low")


def snake_to_camel(name: str) -> str:
    """``task_stage`` -> ``taskStage`` (the BoAmps key of a snake_case field name)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_to_snake(name: str) -> str:
    """``taskStage`` -> ``task_stage`` (the field name of a BoAmps camelCase key)."""
    s1 = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s1).lower()


def camel_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` with snake_case keys turned camelCase, nested mappings included.

    Keys without an underscore are kept as they are (``taskStage`` stays ``taskStage``); mappings
    inside lists are converted too, other values are kept. Example:
    ``{"task_stage": "training", "dataset": [{"data_type": "text"}]}`` ->
    ``{"taskStage": "training", "dataset": [{"dataType": "text"}]}``.

    Raises:
        TypeError: a key is not a string.
    """
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            value = camel_keys(value)
        elif isinstance(value, list):
            value = [camel_keys(v) if isinstance(v, Mapping) else v for v in value]
        out[snake_to_camel(key) if "_" in key else key] = value
    return out


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


__all__ = [
    "BOAMPS_FORMAT_SPEC_URI",
    "BOAMPS_FORMAT_VERSION",
    "CONFIDENTIALITY_LEVELS",
    "DATA_FORMATS",
    "DATA_SOURCES",
    "DATA_TYPES",
    "DATA_USAGES",
    "ESTIMATED_ACCURACIES",
    "INFRA_TYPES",
    "POWER_SOURCES",
    "POWER_SUPPLIER_TYPES",
    "QUALITIES",
    "REPORT_STATUSES",
    "BoAmpsAlgorithm",
    "BoAmpsDataset",
    "BoAmpsHeader",
    "BoAmpsPublisher",
    "BoAmpsTask",
    "camel_keys",
    "camel_to_snake",
    "snake_to_camel",
]
