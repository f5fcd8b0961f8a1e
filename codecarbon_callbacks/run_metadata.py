"""What describes a session's runs in ``tracker.metadata``: the framework, the stage, the
budgets and the BoAmps task built from the framework's facts and the user's task and datasets.

:class:`RunDescription` holds the user's part, checked and converted to BoAmps' camelCase once;
its methods take the run's stage and the framework's information as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from codecarbon_callbacks_core.output.boamps.model import camel_keys
from codecarbon_callbacks_core.output.boamps.task import build_task

from codecarbon_callbacks.arguments import as_dict
from codecarbon_callbacks.introspect import task_facts

#: run stages a session knows, and the BoAmps taskStage each maps to by default
RUN_STAGES: dict[str, str] = {
    "fit": "training",
    "validate": "inference",
    "test": "inference",
    "predict": "inference",
}


@dataclass(frozen=True)
class RunDescription:
    """The user's description of the runs (see :class:`~codecarbon_callbacks.options.
    CallbackOptions`): ``task`` and ``dataset`` in BoAmps camelCase, ``dataset`` a list."""

    framework: str
    task_stage: str | None = None
    task_family: str | None = None
    task: dict[str, Any] | None = None
    dataset: list[dict[str, Any]] | None = None
    max_energy_kwh: float | None = None
    max_emissions_kg: float | None = None

    @classmethod
    def build(
        cls, framework: str, *, task: Any = None, dataset: Any = None, **fields: Any
    ) -> RunDescription:
        """From the options as given: ``task`` a mapping or dataclass, ``dataset`` one or a
        list of them. Raises ValueError naming ``task`` or ``dataset`` for anything else."""
        if dataset is None:
            datasets = None
        elif isinstance(dataset, (list, tuple)):
            datasets = [camel_keys(as_dict(d, "dataset")) for d in dataset]
        else:
            datasets = [camel_keys(as_dict(dataset, "dataset"))]
        user_task = camel_keys(as_dict(task, "task")) if task is not None else None
        return cls(framework, task=user_task, dataset=datasets, **fields)

    def boamps_task(self, stage: str, info: Mapping[str, Any]) -> dict[str, Any]:
        """The BoAmps ``task`` (camelCase) of a ``stage`` run from the framework's ``info``
        and the user's (see :func:`~codecarbon_callbacks_core.output.boamps.task.build_task`)."""
        facts = task_facts(
            self.framework,
            info,
            task_stage=RUN_STAGES.get(stage, "training"),
            training=stage == "fit",
        )
        return build_task(
            facts,
            task_stage=self.task_stage,
            task_family=self.task_family,
            task=self.task,
            dataset=self.dataset,
        )

    def metadata(self, stage: str | None, info: Mapping[str, Any]) -> dict[str, Any]:
        """What a session adds to ``tracker.metadata`` (low-cardinality keys at the top);
        ``stage`` None outside a run."""
        out: dict[str, Any] = {
            "framework": self.framework,
            "framework_version": str(info.get("framework_version", "")),
            "run_stage": stage or "",
            "boamps_task": self.boamps_task(stage or "fit", info),
        }
        if self.task_family:
            out["task_family"] = self.task_family
        if self.max_energy_kwh is not None:
            out["max_energy_kwh"] = self.max_energy_kwh
        if self.max_emissions_kg is not None:
            out["max_emissions_kg"] = self.max_emissions_kg
        return out


__all__ = ["RUN_STAGES", "RunDescription"]
