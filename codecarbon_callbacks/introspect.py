"""Model and data facts for the BoAmps report and the run's metadata: torch, Hugging Face, Keras.

Every function takes the object it inspects (a model, a dataset, one sample), never a session;
each is best effort: what cannot be read is left out. Nothing here imports a framework: objects
are read through their attributes (``shape``, ``dtype``, ``parameters()``, ``config``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from codecarbon_callbacks_core.output.boamps.task import TaskFacts

logger = logging.getLogger(__name__)

#: BoAmps ``quantization`` of a model's weight dtype
TORCH_QUANTIZATION: dict[str, str] = {
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "float64": "fp64",
    "int8": "int8",
    "mixed_float16": "fp16",
    "mixed_bfloat16": "bf16",
}


def guess_data_type(sample: Any) -> str:
    """The BoAmps ``dataType`` of one input sample (no batch axis), or ``"other"``.

    Strings are ``text``; a mapping with ``input_ids`` or a 1-D integer array is ``token``; a 1-D
    float array is ``tabular``; 2-D single channel or 3-D arrays with a channel axis of 1, 3 or 4
    are ``image``; 4-D arrays are ``video``; booleans are ``boolean``.
    """
    if isinstance(sample, Mapping):
        return _mapping_data_type(sample)
    if isinstance(sample, (tuple, list)) and sample and not isinstance(sample[0], (int, float)):
        return guess_data_type(sample[0])
    if isinstance(sample, str):
        return "text"
    shape = _shape_of(sample)
    if shape is None:
        return "tabular" if isinstance(sample, (list, tuple)) else "other"
    return _array_data_type(shape, str(getattr(sample, "dtype", "")).lower())


#: keys of a mapping sample (Hugging Face style) -> the BoAmps ``dataType`` they mean, in order
_MAPPING_KEYS = (
    (("input_ids",), "token"),
    (("pixel_values", "image", "images"), "image"),
    (("input_values", "input_features", "audio"), "audio"),
)


def _mapping_data_type(sample: Mapping[str, Any]) -> str:
    """The ``dataType`` of a mapping sample, from its keys."""
    for keys, data_type in _MAPPING_KEYS:
        if any(key in sample for key in keys):
            return data_type
    return "other"


def _array_data_type(shape: tuple[int, ...], dtype: str) -> str:
    """The ``dataType`` of an array sample of this shape and (lower-case) dtype name."""
    if "bool" in dtype:
        return "boolean"
    integer = "int" in dtype or "long" in dtype
    if len(shape) == 0:
        return "tabular"
    if len(shape) == 1:
        return "token" if integer else "tabular"
    if len(shape) == 3 and (shape[0] in (1, 3, 4) or shape[-1] in (1, 3, 4)):
        return "image"
    if len(shape) == 2 and not integer and min(shape) >= 8:
        return "image"
    if len(shape) == 4:
        return "video"
    return "other"


def _shape_of(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(d) if d is not None else -1 for d in shape)
    except (TypeError, ValueError):
        return None


def shape_string(sample: Any, n_samples: int | None = None) -> str | None:
    """The dataset's shape as BoAmps wants it, e.g. ``"(64, 8)"`` for 64 samples of 8 features."""
    if isinstance(sample, Mapping):
        sample = sample.get(
            "input_ids", sample.get("pixel_values", next(iter(sample.values()), None))
        )
    elif isinstance(sample, (tuple, list)) and sample and _shape_of(sample[0]) is not None:
        sample = sample[0]
    shape = _shape_of(sample)
    if shape is None:
        if isinstance(sample, (list, tuple)):
            shape = (len(sample),)
        else:
            return None
    dims = [
        str(n_samples) if n_samples is not None else "None",
        *("None" if d < 0 else str(d) for d in shape),
    ]
    return "(" + ", ".join(dims) + ")"


def torch_model_info(module: Any) -> dict[str, Any]:
    """Class path, number of parameters and of layers of a torch ``nn.Module`` (no import needed).

    Layers are the leaf modules that hold parameters (Linear, Conv, Embedding, norms...), or the
    model config's ``num_hidden_layers`` for Hugging Face models.
    """
    info: dict[str, Any] = {"class_path": f"{type(module).__module__}.{type(module).__qualname__}"}
    try:
        first = next(iter(module.parameters()), None)
        if first is not None:
            info["quantization"] = TORCH_QUANTIZATION.get(str(first.dtype).replace("torch.", ""))
        info["parameters"] = int(sum(p.numel() for p in module.parameters()))
        leaves = [
            m
            for m in module.modules()
            if not list(m.children()) and any(True for _ in m.parameters(recurse=False))
        ]
        info["layers"] = len(leaves)
    except Exception as e:  # introspection is best effort
        logger.debug("could not count parameters of %s: %s", type(module).__name__, e)
    config = getattr(module, "config", None)
    hidden = getattr(config, "num_hidden_layers", None)
    if isinstance(hidden, int):
        info["layers"] = hidden
    info["pretrained"] = pretrained_name(module) is not None
    name = pretrained_name(module)
    if name:
        info["foundation_model"] = name
    return info


def pretrained_name(module: Any) -> str | None:
    """The name or path a (sub)model was loaded from with ``from_pretrained``, if any."""
    candidates = [module]
    modules = getattr(module, "modules", None)
    if callable(modules):
        try:
            candidates = list(modules())
        except Exception:
            candidates = [module]
    for m in candidates:
        name = getattr(m, "name_or_path", None) or getattr(
            getattr(m, "config", None), "_name_or_path", None
        )
        if isinstance(name, str) and name:
            return name
    return None


def dataset_info(dataset: Any, *, batch_size: int | None = None) -> dict[str, Any]:
    """Number of samples, first sample's type and shape of a map-style dataset (best effort)."""
    info: dict[str, Any] = {}
    if batch_size:
        info["batch_size"] = int(batch_size)
    if dataset is None:
        return info
    try:
        info["n_samples"] = len(dataset)
    except Exception:
        pass
    try:
        sample = dataset[0]
    except Exception:
        return info
    if (
        isinstance(sample, (tuple, list))
        and len(sample) >= 1
        and not isinstance(sample[0], (int, float))
    ):
        sample = sample[0]  # (inputs, targets)
    info["data_type"] = guess_data_type(sample)
    shape = shape_string(sample, info.get("n_samples"))
    if shape:
        info["input_shape"] = shape
    return info


def _number(info: Mapping[str, Any], key: str) -> float | None:
    value = info.get(key)
    return value if isinstance(value, (int, float)) else None


def _text(info: Mapping[str, Any], key: str) -> str | None:
    value = info.get(key)
    return str(value) if value else None


def task_facts(
    framework: str, info: Mapping[str, Any], *, task_stage: str, training: bool
) -> TaskFacts:
    """The facts a BoAmps task is built from (:func:`~codecarbon_callbacks_core.output.boamps.
    task.build_task`), read off what the framework reported.

    Args:
        framework: the framework's name.
        info: what the framework knows (``EmissionsSession.update_info``'s keys); values of the
            wrong type are left out.
        task_stage: the ``taskStage`` of the run's stage.
        training: the run is a fit.
    """
    n_samples = info.get("n_samples")
    data_type = info.get("data_type")
    return TaskFacts(
        framework=framework,
        task_stage=task_stage,
        training=training,
        pretrained=bool(info.get("pretrained")),
        framework_version=_text(info, "framework_version"),
        class_path=_text(info, "class_path"),
        parameters=_number(info, "parameters"),
        layers=_number(info, "layers"),
        epochs=_number(info, "epochs"),
        optimizer=_text(info, "optimizer"),
        foundation_model=_text(info, "foundation_model"),
        quantization=_text(info, "quantization"),
        training_type=_text(info, "training_type"),
        algorithm_type=str(info.get("algorithm_type", "neural network")),
        data_type=data_type if isinstance(data_type, str) else None,
        n_samples=n_samples if isinstance(n_samples, int) else None,
        input_shape=_text(info, "input_shape"),
        nb_request=_number(info, "nb_request"),
    )


__all__ = [
    "TORCH_QUANTIZATION",
    "dataset_info",
    "guess_data_type",
    "pretrained_name",
    "shape_string",
    "task_facts",
    "torch_model_info",
]
