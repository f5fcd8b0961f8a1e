"""BOAMPS output: a BoAmps 1.1 JSON report per run (``boamps_report_<run_id>.json``).

The report is built by :mod:`.report` and checked by :mod:`.schema` at each flush and at stop;
a report that lacks required fields is still written, with a warning naming them. Writing never
raises into training.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, TypeVar

from codecarbon_callbacks_core._shared import write_json_atomic
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output._util import describe_error, warn_once
from codecarbon_callbacks_core.output.base import BaseOutput
from codecarbon_callbacks_core.output.boamps.model import QUALITIES, BoAmpsHeader, BoAmpsTask
from codecarbon_callbacks_core.output.boamps.report import build_report
from codecarbon_callbacks_core.output.boamps.schema import validate_report

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData

logger = logging.getLogger(__name__)


class BoAmpsOutput(BaseOutput):
    """Writes ``boamps_report_<run_id>.json`` in ``output_dir`` on every flush/stop.

    The report is rewritten at each flush and at stop. ``header.reportStatus`` comes from the
    run's state, never from ``header`` or a context file: ``draft`` while running (a flush),
    ``final`` only when the run completed, ``other`` otherwise (failed, interrupted, incomplete,
    budget_stop), with the reason appended to ``task.taskDescription`` (the schema's free-text
    field; it has no field for a status reason).

    Args:
        output_dir: where the report is written (created if needed).
        task: what was measured (BoAmpsTask, camelCase dict, or any object with a camelCase
            ``to_dict()`` such as CodeCarbon's BoAmpsTask); merged over
            ``record.metadata["boamps_task"]``.
        header: header fields to set (publisher, licensing...), in the same forms.
        quality: ``high``, ``medium`` or ``low``; None (default): from the run's energy
            uncertainty (within 10 %: high, 30 %: medium, else low).
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
        self.task = _as_model(task, BoAmpsTask, "task")
        self.header = _as_model(header, BoAmpsHeader, "header")
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
        cls, context_file_path: str | os.PathLike[str], output_dir: str | os.PathLike[str] = "."
    ) -> BoAmpsOutput:
        """Build from a JSON context file (a partial BoAmps report, see ``from_dict``).

        Raises:
            FileNotFoundError: no such file.
            json.JSONDecodeError: the file is not valid JSON (a ValueError; the message names
                the file), as CodeCarbon raises.
        """
        path = os.fspath(context_file_path)
        try:
            with open(path, encoding="utf-8") as handle:
                context = json.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(f"BoAmps context file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise json.JSONDecodeError(
                f"BoAmps context file {path} is not valid JSON: {exc.msg}", exc.doc, exc.pos
            ) from exc
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
                    category=CodeCarbonCallbacksWarning,  # a UserWarning, as CodeCarbon's
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


_Model = TypeVar("_Model", BoAmpsTask, BoAmpsHeader)


def _as_model(value: Any, model: type[_Model], name: str) -> _Model | None:
    """``value`` as ``model``: given as one, as a camelCase dict, or as an object with a
    camelCase ``to_dict()`` (CodeCarbon's BoAmps models)."""
    if value is None or isinstance(value, model):
        return value
    to_dict = getattr(value, "to_dict", None)
    if not isinstance(value, dict) and callable(to_dict):
        value = to_dict()
    if isinstance(value, dict):
        return model.from_dict(value)
    raise ValueError(
        f"{name} must be a {model.__name__}, a dict or an object with to_dict(), "
        f"got {type(value).__name__}"
    )


__all__ = ["BoAmpsOutput"]
