"""Every adapter's EmissionsCallback signature matches CallbackOptions, so the copies cannot drift.

The adapters' modules are imported here; the framework test modules (test_keras.py,
test_lightning.py, test_transformers.py) have imported the frameworks already when the suite runs,
so this costs no framework import of its own there. Both Lightning adapters take their signature
from ``LightningEmissionsMixin``, which imports no framework.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

from codecarbon_callbacks.options import (
    KEYWORD_ONLY,
    PARAMETER_KIND,
    POSITIONAL,
    VAR_KEYWORD,
    CallbackOptions,
)
from codecarbon_callbacks.session import EmissionsSession

_KINDS = {
    POSITIONAL: inspect.Parameter.POSITIONAL_OR_KEYWORD,
    KEYWORD_ONLY: inspect.Parameter.KEYWORD_ONLY,
    VAR_KEYWORD: inspect.Parameter.VAR_KEYWORD,
}

#: (module, class, framework it needs, the adapter's own parameters beyond the options)
ADAPTERS = [
    ("codecarbon_callbacks._lightning_impl", "LightningEmissionsMixin", None, set()),
    ("codecarbon_callbacks.lightning", "EmissionsCallback", "lightning", set()),
    ("codecarbon_callbacks.pytorch_lightning", "EmissionsCallback", "pytorch_lightning", set()),
    ("codecarbon_callbacks.transformers", "EmissionsCallback", "transformers", set()),
    (
        "codecarbon_callbacks.keras",
        "EmissionsCallback",
        "keras",
        {"state_path", "progress_bar_keys"},
    ),
]


def _expected() -> list[tuple[str, inspect._ParameterKind, object, object]]:
    """(name, kind, default, annotation) of each option, in order, as a signature states it."""
    rows = []
    for f in dataclasses.fields(CallbackOptions):
        kind = _KINDS[f.metadata.get(PARAMETER_KIND, KEYWORD_ONLY)]
        if kind is inspect.Parameter.VAR_KEYWORD:
            rows.append((f.name, kind, inspect.Parameter.empty, inspect.Parameter.empty))
        else:
            rows.append((f.name, kind, f.default, f.type))
    return rows


@pytest.mark.parametrize(("module", "name", "framework", "extra"), ADAPTERS)
def test_every_callback_signature_matches_the_options(module, name, framework, extra):
    if framework is not None:
        pytest.importorskip(framework)
    callback = getattr(importlib.import_module(module), name)
    parameters = [
        p for p in inspect.signature(callback.__init__).parameters.values() if p.name != "self"
    ]
    assert {p.name for p in parameters} >= extra, f"{module}: its own parameters are missing"
    got = [
        (
            p.name,
            p.kind,
            p.default,
            p.annotation if p.kind is not p.VAR_KEYWORD else inspect.Parameter.empty,
        )
        for p in parameters
        if p.name not in extra
    ]
    assert got == _expected(), f"{module}.{name} and CallbackOptions differ"


def test_session_takes_the_options_or_the_arguments_not_both(tracker_kwargs):
    options = CallbackOptions(max_energy_kwh=2.0, tracker_kwargs=tracker_kwargs)
    session = EmissionsSession("custom", options=options)
    flat = EmissionsSession("custom", max_energy_kwh=2.0, **tracker_kwargs)
    assert session.max_energy_kwh == flat.max_energy_kwh == 2.0
    assert session.tracker_kwargs == flat.tracker_kwargs == tracker_kwargs
    assert session.configuration_key() == flat.configuration_key()
    with pytest.raises(ValueError, match="options"):
        EmissionsSession("custom", options=options, verbose=False)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("task", {"taskFamliy": "x"}, "did you mean 'taskFamily'"),
        ("dataset", [{"dataUsage": "input"}, {"dataTyp": "text"}], "did you mean 'dataType'"),
    ],
)
def test_a_misspelt_boamps_key_fails_at_construction(name, value, message):
    """A typo in ``task=``/``dataset=`` was accepted and the report failed validation at the
    end of the fit; it is refused when the options are built, naming the key."""
    with pytest.raises(ValueError, match=message):
        CallbackOptions(**{name: value})
    CallbackOptions(task={"task_family": "x", "taskStage": "training"})  # both spellings pass
