"""What every framework adapter shares: the options it carries into the session, and the figures
it logs when an evaluation run ends.

Each adapter's ``EmissionsCallback`` keeps an explicit signature (so that ``help()`` and IDEs show
every parameter), builds a :class:`CallbackOptions` from it and hands that to
:class:`~codecarbon_callbacks.session.EmissionsSession`. ``tests/callbacks/test_options.py``
checks every adapter's signature against the fields below, so the copies cannot drift.

Example:
    >>> options = CallbackOptions(max_energy_kwh=2.0, tracker_kwargs={"country_iso_code": "FRA"})
    >>> options.max_energy_kwh
    2.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks.arguments import check_positive as _check_positive

if TYPE_CHECKING:
    from codecarbon_callbacks.session import EmissionsSession

#: how each field appears in the callbacks' signatures: ``tracker`` may be given by position,
#: ``tracker_kwargs`` is the ``**tracker_kwargs`` catch-all, every other one is keyword-only
PARAMETER_KIND = "parameter_kind"
POSITIONAL = "positional_or_keyword"
KEYWORD_ONLY = "keyword_only"
VAR_KEYWORD = "var_keyword"


def _check_boamps_fields(name: str, value: Any) -> None:
    """``task`` / ``dataset`` given as a dict (or dicts): every key a field of BoAmps's task /
    dataset (camelCase or snake_case), else a ValueError naming it, with a "did you mean".

    Objects (BoAmps or CodeCarbon ones) are taken as they are; they check their own fields.
    """
    if value is None:
        return
    items = value if name == "dataset" and isinstance(value, list) else [value]
    if not all(isinstance(item, Mapping) for item in items):
        return
    import difflib

    from codecarbon_callbacks_core.output.boamps.model import (
        BoAmpsDataset,
        BoAmpsTask,
        camel_to_snake,
        snake_to_camel,
    )

    model = BoAmpsTask if name == "task" else BoAmpsDataset
    fields = {f.name for f in dataclasses.fields(model)}
    for item in items:
        for key in item:
            if camel_to_snake(str(key)) in fields:
                continue
            accepted = sorted(snake_to_camel(f) for f in fields)
            close = difflib.get_close_matches(str(key), accepted, n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else f"; accepted: {', '.join(accepted)}"
            )
            raise ValueError(f"{name}: {key!r} is not a BoAmps {name} field{hint}")


@dataclass(frozen=True)
class CallbackOptions:
    """The parameters every framework's ``EmissionsCallback`` shares, checked once.

    The fields are in the order of the callbacks' signatures.

    Args:
        tracker: an existing ``EmissionsTracker`` to use instead of creating one; the session
            starts it when it is not running and stops only what it started. Mutually exclusive
            with ``tracker_kwargs``.
        task_family: BoAmps ``taskFamily`` (e.g. ``"text classification"``); with it the BoAmps
            report validates without more input.
        task_stage: BoAmps ``taskStage``; by default ``training`` (``finetuning`` when a
            pretrained model is detected, ``inference`` for test/predict runs).
        task: BoAmps task fields overriding the automatic ones (camelCase dict or a BoAmps
            object).
        dataset: a BoAmps dataset dict (or a list of them) overriding the automatic one.
        max_energy_kwh: stop training when the run's energy plus the next window's would exceed
            it, in kWh.
        max_emissions_kg: the same for emissions, in kg CO2eq.
        window_every_n_steps: also record a ``step`` window every n optimizer steps (a count).
        window_every_seconds: also record a ``time`` window every so many seconds.
        verbose: print one line when a fit ends, on rank zero: the run's energy (kWh), emissions
            (kg CO2eq) and where its reports are. False prints nothing.
        tracker_kwargs: the tracker's own parameters by name (the callbacks'
            ``**tracker_kwargs``; ``country_iso_code="FRA"`` makes the tracker offline). They are
            checked when the session resolves the tracker's configuration.

    Raises:
        ValueError: a bad argument, naming it and what is accepted.
    """

    tracker: Any = field(default=None, metadata={PARAMETER_KIND: POSITIONAL})
    task_family: str | None = None
    task_stage: str | None = None
    task: Any = None
    dataset: Any = None
    max_energy_kwh: float | None = None
    max_emissions_kg: float | None = None
    window_every_n_steps: int | None = None
    window_every_seconds: float | None = None
    verbose: bool = True
    tracker_kwargs: Mapping[str, Any] = field(
        default_factory=dict, metadata={PARAMETER_KIND: VAR_KEYWORD}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.verbose, bool):
            raise ValueError(f"verbose must be True or False, got {self.verbose!r}")
        if self.tracker is not None and self.tracker_kwargs:
            raise ValueError(
                "tracker: give either an existing tracker or the tracker's parameters "
                f"({', '.join(sorted(self.tracker_kwargs))}), not both"
            )
        if self.tracker is not None and not all(
            hasattr(self.tracker, a) for a in ("start", "stop", "open_window")
        ):
            raise ValueError(f"tracker must be an EmissionsTracker (or None), got {self.tracker!r}")
        if self.task_family is not None and not isinstance(self.task_family, str):
            raise ValueError(
                "task_family must be a string such as 'image classification', "
                f"got {self.task_family!r}"
            )
        if self.task_stage is not None and not isinstance(self.task_stage, str):
            raise ValueError(
                "task_stage must be a string such as 'training' or 'finetuning', "
                f"got {self.task_stage!r}"
            )
        _check_boamps_fields("task", self.task)
        _check_boamps_fields("dataset", self.dataset)
        _check_positive("max_energy_kwh", self.max_energy_kwh)
        _check_positive("max_emissions_kg", self.max_emissions_kg)
        _check_positive("window_every_n_steps", self.window_every_n_steps, integer=True)
        _check_positive("window_every_seconds", self.window_every_seconds)
        # a copy, so that the caller's dict changing later does not change these options
        object.__setattr__(self, "tracker_kwargs", dict(self.tracker_kwargs))

    @classmethod
    def from_arguments(cls, tracker: Any = None, **arguments: Any) -> CallbackOptions:
        """Options from a flat call, as the callbacks take them: the names of this class's fields
        set those fields, every other name is a tracker parameter.

        Example:
            >>> CallbackOptions.from_arguments(task_family="x", output_dir="runs").tracker_kwargs
            {'output_dir': 'runs'}
        """
        own = {f.name for f in dataclasses.fields(cls)} - {"tracker", "tracker_kwargs"}
        given = {name: arguments.pop(name) for name in list(arguments) if name in own}
        return cls(tracker=tracker, **given, tracker_kwargs=arguments)

    def arguments(self) -> dict[str, Any]:
        """The arguments as a flat call gives them (every option, then the tracker's
        parameters), without ``tracker``; secrets included, so for memory only (see
        ``codecarbon_callbacks.session.checkpoint_arguments``)."""
        named = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("tracker", "tracker_kwargs")
        }
        return {**named, **self.tracker_kwargs}


def end_eval_run(session: EmissionsSession, prefix: str) -> dict[str, float]:
    """End the session's evaluation run (validate, test, predict) and return its figures.

    Args:
        session: the adapter's session.
        prefix: the framework's name for the run (``"val"``, ``"test"``, ``"eval"``,
            ``"predict"``).

    Returns:
        ``{prefix}_energy_kwh`` (kWh), ``{prefix}_emissions_kg`` (kg CO2eq) and
        ``{prefix}_duration_s`` (seconds) of the run; empty when no run was running or it
        recorded nothing.
    """
    was_running = session.running
    session.end_run()
    if not was_running:
        return {}
    totals = session.summary().get("totals", {})
    if not totals:
        return {}
    return {
        f"{prefix}_energy_kwh": totals["energy_kwh"],
        f"{prefix}_emissions_kg": totals["emissions_kg"],
        f"{prefix}_duration_s": totals["duration_s"],
    }


__all__ = ["CallbackOptions", "end_eval_run"]
