"""The BoAmps ``task`` of a run, built from plain facts about its model and data.

The framework layer fills a :class:`TaskFacts` (from what it reads off the model, the dataset and
the trainer); :func:`build_task` turns it, with what the user gave (``task_family``,
``task_stage``, ``task=``, ``dataset=``), into the camelCase ``task`` dict that the framework
callbacks put in ``tracker.metadata["boamps_task"]``. The user's explicit values win.

A leaf besides :mod:`.model`: it knows no framework and no tracker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codecarbon_callbacks_core.output.boamps.model import DATA_TYPES


@dataclass(frozen=True)
class TaskFacts:
    """What is known about a run's model and data, each None when unknown.

    Attributes:
        framework: the framework's name (BoAmps ``framework``), e.g. ``"lightning"``.
        task_stage: the ``taskStage`` of the run's stage (``training``, ``inference``).
        training: the run trains (a fit): epochs and training type apply, ``nbRequest`` does not.
        pretrained: the model was loaded pretrained (a training run is then ``finetuning``).
        framework_version: the framework's version.
        class_path: the model's class, ``module.QualName``.
        parameters: the model's number of parameters (a count, not billions).
        layers: the model's number of layers.
        epochs: the epochs the run is configured for.
        optimizer: the optimizer's name.
        foundation_model: the name or path the model was loaded from.
        quantization: the weights' BoAmps ``quantization`` (``fp32``, ``bf16``...).
        training_type: BoAmps ``trainingType``.
        algorithm_type: BoAmps ``algorithmType``.
        data_type: the input's BoAmps ``dataType`` (``other`` when not one of its values).
        n_samples: the number of input samples (``dataQuantity``).
        input_shape: the dataset's shape as a string, e.g. ``"(64, 8)"``.
        nb_request: the number of inference requests (evaluation runs).
    """

    framework: str
    task_stage: str = "training"
    training: bool = True
    pretrained: bool = False
    framework_version: str | None = None
    class_path: str | None = None
    parameters: float | None = None
    layers: float | None = None
    epochs: float | None = None
    optimizer: str | None = None
    foundation_model: str | None = None
    quantization: str | None = None
    training_type: str | None = None
    algorithm_type: str = "neural network"
    data_type: str | None = None
    n_samples: int | None = None
    input_shape: str | None = None
    nb_request: float | None = None


#: TaskFacts field -> the BoAmps algorithm key it fills as a string, when given
_ALGORITHM_TEXTS = (
    ("framework_version", "frameworkVersion"),
    ("class_path", "classPath"),
    ("optimizer", "optimizer"),
    ("foundation_model", "foundationModelName"),
    ("quantization", "quantization"),
)


def _algorithm(facts: TaskFacts) -> dict[str, Any]:
    """The BoAmps algorithm (camelCase) the facts describe."""
    algorithm: dict[str, Any] = {"framework": facts.framework}
    for name, key in _ALGORITHM_TEXTS[:2]:
        if getattr(facts, name):
            algorithm[key] = getattr(facts, name)
    if facts.parameters is not None:
        algorithm["parametersNumber"] = float(facts.parameters) / 1e9
    if facts.layers is not None:
        algorithm["layersNumber"] = facts.layers
    if facts.training and facts.epochs is not None and facts.epochs > 0:
        algorithm["epochsNumber"] = facts.epochs
    for name, key in _ALGORITHM_TEXTS[2:]:
        if getattr(facts, name):
            algorithm[key] = getattr(facts, name)
    if facts.training_type and facts.training:
        algorithm["trainingType"] = facts.training_type
    algorithm["algorithmType"] = facts.algorithm_type
    return algorithm


def _dataset(facts: TaskFacts) -> dict[str, Any]:
    """The BoAmps input dataset (camelCase) the facts describe."""
    dataset: dict[str, Any] = {"dataUsage": "input"}
    dataset["dataType"] = facts.data_type if facts.data_type in DATA_TYPES else "other"
    if facts.n_samples is not None:
        dataset["dataQuantity"] = facts.n_samples
    if facts.input_shape:
        dataset["shape"] = facts.input_shape
    return dataset


def _merge_user_task(
    task: dict[str, Any],
    algorithm: Mapping[str, Any],
    user_task: Mapping[str, Any],
    user_dataset_given: bool,
) -> None:
    """Lay the user's task fields over ``task``: the first algorithm merges, the rest replace."""
    for key, value in user_task.items():
        if (
            key == "algorithms"
            and isinstance(value, list)
            and value
            and isinstance(value[0], Mapping)
        ):
            merged = dict(algorithm)
            merged.update(value[0])
            task["algorithms"] = [merged, *value[1:]]
        elif key == "dataset" and isinstance(value, list) and not user_dataset_given:
            task["dataset"] = [dict(v) for v in value]
        else:
            task[key] = value


def build_task(
    facts: TaskFacts,
    *,
    task_stage: str | None = None,
    task_family: str | None = None,
    task: Mapping[str, Any] | None = None,
    dataset: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The BoAmps ``task`` (camelCase) from the facts, with the user's values laid over them.

    Args:
        facts: what the framework layer knows about the model and data.
        task_stage: the user's ``taskStage``; by default the stage's (``finetuning`` for a
            training run of a pretrained model).
        task_family: the user's ``taskFamily``.
        task: the user's task fields (camelCase); they override the built ones (the first of
            their ``algorithms`` is merged into the built algorithm).
        dataset: the user's datasets (camelCase dicts); they replace the built one.

    Returns:
        A new dict with ``taskStage``, ``algorithms`` and ``dataset`` at least.
    """
    if task_stage:
        stage = task_stage
    elif facts.training and facts.pretrained:
        stage = "finetuning"
    else:
        stage = facts.task_stage
    algorithm = _algorithm(facts)
    out: dict[str, Any] = {
        "taskStage": stage,
        "algorithms": [algorithm],
        "dataset": [_dataset(facts)],
    }
    if task_family:
        out["taskFamily"] = task_family
    if not facts.training and facts.nb_request is not None:
        out["nbRequest"] = facts.nb_request
    if dataset is not None:
        out["dataset"] = [dict(d) for d in dataset]
    if task:
        _merge_user_task(out, algorithm, task, dataset is not None)
    return out


__all__ = ["TaskFacts", "build_task"]
