"""Every public callable of CodeCarbon 3.3.2 (``codecarbon``'s trackers and ``track_emissions``,
every class ``codecarbon.output`` exports) has the same parameters here: names, order, kinds and
defaults, compared with the installed CodeCarbon 3.3.2 (a dev dependency).

The rules, for each CodeCarbon parameter list against ours:
- ours starts with CodeCarbon's parameters, same names and kinds, in the same order (positional
  calls mean the same); CodeCarbon's ``_`` (its name for an unused positional) matches any name;
- a default CodeCarbon gives is ours too (CodeCarbon's "not given" sentinel matches ours);
- what we add after them is keyword-only, has a default, or is ``**kwargs``.
Everything else is a deliberate difference and must be listed in DIFFERENCES with its reason
(docs/migrating.md's "What differs" table has the user-facing ones); a listed difference that no
longer differs fails too, so the list stays true.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from codecarbon_callbacks_core.config import _UNSET

import codecarbon_callbacks
import codecarbon_callbacks.output as facade

cc = pytest.importorskip(
    "codecarbon", reason="CodeCarbon 3.3.2 (a dev dependency) is not importable"
)
if cc.__version__ != "3.3.2":  # pragma: no cover - the dev dependency is pinned
    pytest.skip(
        f"these signatures are CodeCarbon 3.3.2's; {cc.__version__} is installed",
        allow_module_level=True,
    )
import codecarbon.output as cc_output  # noqa: E402
from codecarbon.emissions_tracker import _sentinel as CC_UNSET  # noqa: E402

#: (owner, name) -> why ours differs from CodeCarbon's signature on purpose
DIFFERENCES: dict[tuple[str, str], str] = {
    ("track_emissions", ""): (
        "keyword arguments only (fn, then every CodeCarbon name, through **tracker_kwargs, and "
        "ours): CodeCarbon's 41 positional parameters after fn are not a usable call form of "
        "a decorator; test_track_emissions_accepts_every_codecarbon_name checks the names"
    ),
    ("EmissionsData", "__init__"): (
        "every field has a default (a partial record: a delta, a window); names and positional "
        "order are CodeCarbon's, with our columns after them"
    ),
    ("LoggerOutput", "__init__"): (
        "logger defaults to the package's record logger 'codecarbon_callbacks.emissions'"
    ),
    ("GoogleCloudLoggerOutput", "__init__"): (
        "logger defaults to google.cloud.logging.Client().logger('codecarbon'), imported only "
        "then (an ImportError names the package when it is missing)"
    ),
    ("CodeCarbonAPIOutput", "__init__"): (
        "conf defaults to None: it is ignored (the run's description comes from the records)"
    ),
    ("PrometheusOutput", "__init__"): (
        "prometheus_url defaults to 'localhost:9091', the tracker's default (CodeCarbon's)"
    ),
    ("PrometheusOutput", "add_emission"): (
        "not provided: CodeCarbon's internal step of out()/live_out(); ours pushes from them"
    ),
}

#: keyword-only parameters our trackers add after CodeCarbon's, on purpose -> why
ADDED_TO_TRACKER: dict[str, str] = {
    "prometheus_scrape_address": (
        "serves the PROMETHEUS output's series on prometheus_client's HTTP server, for users "
        "without a Pushgateway (CodeCarbon has no scrape endpoint)"
    ),
    "components": "hardware components to measure instead of detecting them (fakes in tests)",
    "record_combiner": "distributed runs: combines this rank's records with the other ranks'",
    "writes_outputs": "distributed runs: False on ranks other than zero (they write nothing)",
}


def _cc_callables() -> Iterator[tuple[str, str, Callable[..., Any], Any]]:
    """(owner, name, CodeCarbon's callable, our owner object) for every public callable."""
    yield "track_emissions", "", cc.track_emissions, codecarbon_callbacks.track_emissions
    owners: list[tuple[type, Any]] = [
        (cc.EmissionsTracker, codecarbon_callbacks.EmissionsTracker),
        (cc.OfflineEmissionsTracker, codecarbon_callbacks.OfflineEmissionsTracker),
    ]
    for name in sorted(n for n in dir(cc_output) if not n.startswith("_")):
        value = getattr(cc_output, name)
        if inspect.isclass(value):
            owners.append((value, getattr(facade, name)))
    for theirs, ours in owners:
        for name in sorted(dir(theirs)):
            if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__"):
                continue
            member = getattr(theirs, name)
            if not callable(member) or inspect.isclass(member):
                continue
            if not str(getattr(member, "__module__", "")).startswith("codecarbon"):
                continue  # inherited from object, str or Enum
            yield theirs.__name__, name, member, ours


def _params(func: Callable[..., Any]) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(func).parameters.values() if p.name != "self"]


def _default(parameter: inspect.Parameter) -> Any:
    if parameter.default is CC_UNSET or parameter.default is _UNSET:
        return "<not given>"
    return parameter.default


def signature_problems(theirs: Callable[..., Any], ours: Callable[..., Any] | None) -> list[str]:
    """What differs between CodeCarbon's parameters and ours, by the rules above."""
    if ours is None:
        return ["missing"]
    mine, cc_params = _params(ours), _params(theirs)
    problems = []
    for i, expected in enumerate(cc_params):
        if i >= len(mine):
            problems.append(f"no parameter {expected.name!r}")
            continue
        got = mine[i]
        if expected.name != "_" and got.name != expected.name:
            problems.append(f"parameter {i} is {got.name!r}, CodeCarbon's {expected.name!r}")
        if got.kind != expected.kind:
            problems.append(f"{got.name!r} is {got.kind.name}, CodeCarbon's {expected.kind.name}")
        if _default(got) != _default(expected):
            problems.append(
                f"{got.name!r} defaults to {_default(got)!r}, CodeCarbon's {_default(expected)!r}"
            )
    for extra in mine[len(cc_params) :]:
        if extra.kind in (extra.KEYWORD_ONLY, extra.VAR_KEYWORD):
            continue
        if extra.default is inspect.Parameter.empty:
            problems.append(f"added parameter {extra.name!r} is required")
    return problems


CASES = list(_cc_callables())


@pytest.mark.parametrize(
    ("owner", "name", "theirs", "ours_owner"), CASES, ids=[f"{o}.{n}" for o, n, _, _ in CASES]
)
def test_signature_is_codecarbons(owner: str, name: str, theirs: Any, ours_owner: Any) -> None:
    ours = ours_owner if not name else getattr(ours_owner, name, None)
    problems = signature_problems(theirs, ours)
    if (owner, name) in DIFFERENCES:
        assert problems, f"{owner}.{name} is listed in DIFFERENCES but no longer differs"
    else:
        assert problems == [], f"{owner}.{name}: {problems}"


def test_the_cases_cover_codecarbons_surface() -> None:
    names = {(owner, name) for owner, name, _, _ in CASES}
    # a sample of what a user calls, so a change in how the cases are gathered cannot empty them
    for expected in [
        ("EmissionsTracker", "__init__"),
        ("EmissionsTracker", "get_detected_hardware"),
        ("EmissionsTracker", "service_shutdown"),
        ("OfflineEmissionsTracker", "__init__"),
        ("FileOutput", "__init__"),
        ("FileOutput", "has_valid_headers"),
        ("BoAmpsOutput", "from_file"),
        ("CodeCarbonAPIOutput", "__init__"),
        ("TaskEmissionsData", "__init__"),
        ("GoogleCloudLoggerOutput", "__init__"),
    ]:
        assert expected in names
    assert set(DIFFERENCES) <= names


def test_the_rules_catch_a_difference() -> None:
    def codecarbons(output_file_name: str, output_dir: str, on_csv_write: str = "append") -> None:
        """CodeCarbon's FileOutput order."""

    def swapped(output_dir: str, output_file_name: str, on_csv_write: str = "append") -> None:
        """The order we had."""

    def other_default(output_file_name: str, output_dir: str, on_csv_write: str = "x") -> None:
        """Another default."""

    def required_extra(
        output_file_name: str, output_dir: str, on_csv_write: str = "append", more: int = 0
    ) -> None:
        """An added optional parameter: allowed."""

    assert signature_problems(codecarbons, codecarbons) == []
    assert signature_problems(codecarbons, required_extra) == []
    assert len(signature_problems(codecarbons, swapped)) == 2
    assert signature_problems(codecarbons, other_default) == [
        "'on_csv_write' defaults to 'x', CodeCarbon's 'append'"
    ]
    assert signature_problems(codecarbons, None) == ["missing"]


def test_track_emissions_accepts_every_codecarbon_name(tmp_path, monkeypatch) -> None:
    """The listed difference of track_emissions: every CodeCarbon name is still accepted."""
    import warnings

    monkeypatch.chdir(tmp_path)
    names = [p.name for p in _params(cc.track_emissions) if p.name != "fn"]
    tracker_names = {p.name for p in _params(codecarbon_callbacks.OfflineEmissionsTracker)}
    tracker_names |= {p.name for p in _params(codecarbon_callbacks.BaseEmissionsTracker)}
    assert set(names) - {"offline"} <= tracker_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decorated = codecarbon_callbacks.track_emissions(
            offline=True, country_iso_code="FRA", output_dir=str(tmp_path), output_methods=[]
        )(lambda: 42)
    assert decorated() == 42


def test_output_methods_are_codecarbons() -> None:
    theirs = {m.name: m.value for m in cc_output.OutputMethod}
    ours = {m.name: m.value for m in facade.OutputMethod}
    assert theirs.items() <= ours.items()


def test_the_trackers_added_parameters_are_the_listed_ones() -> None:
    """What the trackers add after CodeCarbon's parameters is listed above, with its reason."""
    theirs = {p.name for p in _params(cc.EmissionsTracker.__init__)}
    for ours in (codecarbon_callbacks.EmissionsTracker, codecarbon_callbacks.BaseEmissionsTracker):
        added = [
            p.name
            for p in _params(ours.__init__)
            if p.name not in theirs and p.kind is not p.VAR_KEYWORD
        ]
        assert added == list(ADDED_TO_TRACKER)
