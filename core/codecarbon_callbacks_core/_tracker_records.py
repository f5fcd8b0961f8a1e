"""The tracker's record building: one record from two meter snapshots, and what fills it.

Plain functions over explicit arguments (the components, the resolved config, the intensity), so
the tracker keeps its life cycle and this module the arithmetic of a row.
"""

from __future__ import annotations

import functools
import operator
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from codecarbon_callbacks_core._version import __version__
from codecarbon_callbacks_core.hardware.base import combine, window_half_width_j
from codecarbon_callbacks_core.meter import Snapshot, window_uncertainty
from codecarbon_callbacks_core.records import (
    STATE_KEYS,
    EmissionsData,
    Figures,
    totals_from_state,
)

if TYPE_CHECKING:
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.hardware.base import Component, UncertaintyTerm
    from codecarbon_callbacks_core.intensity.lookup import IntensityResult

J_PER_KWH = 3.6e6
T = TypeVar("T")

_ZERO = EmissionsData()
KINDS = ("cpu", "gpu", "ram")
#: the version of the tracker's state_dict
STATE_VERSION = 1
#: the machine's facts every record carries, read once per run (see static_info)
STATIC_KEYS = (
    "os",
    "python_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "ram_total_size",
    "cpu_method",
    "gpu_method",
    "ram_method",
)
#: the latest instants formatted, by identity: an edge's instant is formatted for the window it
#: ends, the record's timestamp, the window it starts and the totals (isoformat: a few us each)
_ISO_RECENT: list[tuple[datetime, str]] = []
#: the last (key, fields) of constant_fields(): one entry, keyed on everything the fields come from
_CONSTANT_CACHE: tuple[tuple[Any, ...], dict[str, Any]] | None = None


@dataclass
class OpenWindow:
    """A window opened and not yet closed: its identity and its start snapshot."""

    window_id: str
    kind: str
    name: str
    epoch: int | None
    phase: str
    start: Snapshot
    metadata: dict[str, Any]


@dataclass
class ClosedWindow:
    """A window closed by ``switch_window_later()``: what its record is built from, as it was at
    the close (the record itself is built later, with others: see ``collect_windows()``)."""

    window: OpenWindow
    end: Snapshot
    status: str
    #: the window's number in the run (``metadata["window_count"]``)
    count: int
    #: the carbon intensity at the close (the provisional one while a location is looked up)
    intensity: IntensityResult
    #: the tracker's metadata at the close
    metadata: dict[str, Any]
    #: the GPUs' mean utilisation read at the close (None: no GPU)
    gpu_utilization: float | None
    #: RAM (utilisation %, used GB) at the close (:class:`RamUsage`)
    ram: tuple[float, float]
    #: whether the record is kept for collect_windows()
    collect: bool = False
    #: its figures, once asked for (``window_figures()``)
    figures: Figures | None = None


class LastOf(Generic[T]):
    """The last value built, kept for as long as it is asked for with the same objects (compared
    by identity: a snapshot, an intensity...): ``get(key, build)``."""

    def __init__(self) -> None:
        self._last: tuple[tuple[Any, ...], T] | None = None

    def get(self, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        last = self._last
        if last is not None and len(last[0]) == len(key) and all(map(operator.is_, last[0], key)):
            return last[1]
        value = build()
        self._last = (key, value)
        return value


def iso(moment: datetime) -> str:
    """``moment`` as ISO 8601 with microseconds (the records' timestamps)."""
    for seen, text in _ISO_RECENT:
        if seen is moment:
            return text
    text = moment.isoformat(timespec="microseconds")
    _ISO_RECENT.insert(0, (moment, text))
    del _ISO_RECENT[8:]
    return text


def static_info(components: Sequence[Component]) -> dict[str, Any]:
    """The machine's facts (:data:`STATIC_KEYS`) for the measured ``components``, and the
    job's identity (``"job"``) and cgroup limits (``"container"``), read once per run."""
    from codecarbon_callbacks_core.container import container_limits
    from codecarbon_callbacks_core.jobinfo import job_identity
    from codecarbon_callbacks_core.system import logical_cpu_count, total_ram_bytes

    cpus = [c for c in components if c.kind == "cpu"]
    gpus = [c for c in components if c.kind == "gpu"]
    rams = [c for c in components if c.kind == "ram"]

    def methods(items: list[Component]) -> str:
        return ",".join(sorted({c.method.value for c in items}))

    gpu_models = sorted({c.model for c in gpus})
    return {
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "cpu_count": logical_cpu_count(),
        "cpu_model": cpus[0].model if cpus else platform.processor(),
        "gpu_count": len(gpus),
        "gpu_model": (
            f"{len(gpus)} x {gpu_models[0]}" if len(gpu_models) == 1 else ", ".join(gpu_models)
        ),
        "ram_total_size": round(total_ram_bytes() / 1024**3, 3),
        "cpu_method": methods(cpus),
        "gpu_method": methods(gpus),
        "ram_method": methods(rams),
        "job": job_identity(),  # metadata["job"] and ["container"], see fill_record
        "container": container_limits(),
    }


def window_figures(
    components: Sequence[Component],
    start: Snapshot,
    end: Snapshot,
    *,
    pue: float,
    wue: float,
    intensity: IntensityResult,
    base: EmissionsData | None = None,
    window: OpenWindow | None = None,
) -> Figures:
    """The figures between two snapshots (plus ``base``'s: a resumed run's figures so far).

    Energy per kind (cpu, gpu, ram) is the components' energy differences; each component's
    uncertainty is its terms in quadrature, components in quadrature per kind and into the
    total; emissions = energy x PUE x intensity, its uncertainty the total's in quadrature with
    the intensity's own relative uncertainty where its source states one (none of the bundled
    or live sources does); water = energy x WUE.
    """
    base = base if base is not None else _ZERO
    per_kind = dict.fromkeys(KINDS, 0.0)
    half_widths: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for c in components:
        name, kind = c.name, c.kind
        a, b = start.reading(name), end.reading(name)
        joules = b.energy_j - a.energy_j
        per_kind[kind] = per_kind.get(kind, 0.0) + (joules if joules > 0.0 else 0.0) / J_PER_KWH
        half_widths.setdefault(kind, []).append(window_half_width_j(c, a, b) / J_PER_KWH)
    duration_s = end.monotonic_s - start.monotonic_s
    duration_s = duration_s if duration_s > 0.0 else 0.0
    new_energy = sum(per_kind.values())
    g_per_kwh = intensity.g_per_kwh
    f = Figures(window)
    f.cpu_power, f.gpu_power, f.ram_power = (
        (per_kind[kind] * J_PER_KWH / duration_s if duration_s > 0 else 0.0) for kind in KINDS
    )
    f.cpu_energy = per_kind["cpu"] + base.cpu_energy
    f.gpu_energy = per_kind["gpu"] + base.gpu_energy
    f.ram_energy = per_kind["ram"] + base.ram_energy
    f.energy_consumed = f.cpu_energy + f.gpu_energy + f.ram_energy
    f.duration = duration_s + base.duration
    f.emissions = new_energy * pue * g_per_kwh / 1000.0 + base.emissions
    f.emissions_rate = f.emissions / f.duration if f.duration > 0 else 0.0
    f.water_consumed = new_energy * wue + base.water_consumed
    f.cpu_energy_uncertainty_kwh = combine(half_widths["cpu"])
    f.gpu_energy_uncertainty_kwh = combine(half_widths["gpu"])
    f.ram_energy_uncertainty_kwh = combine(half_widths["ram"])
    total_kwh = combine(h for values in half_widths.values() for h in values)
    f.energy_consumed_uncertainty_kwh = total_kwh
    intensity_half_width = intensity.uncertainty_g_per_kwh
    relative = (
        intensity_half_width / g_per_kwh
        if intensity_half_width is not None and g_per_kwh > 0
        else 0.0
    )
    f.emissions_uncertainty_kg = (
        pue * g_per_kwh / 1000.0 * combine([total_kwh, relative * new_energy])
    )
    return f


def describe_components(
    components: Sequence[Component],
    start: Snapshot,
    end: Snapshot,
    terms: Mapping[str, Sequence[UncertaintyTerm]],
) -> list[dict[str, Any]]:
    """Each component's description with its ``energy_kwh`` between the snapshots, its
    ``energy_uncertainty_kwh`` (95 % half-width) and the ``uncertainty_terms`` behind it
    (``term``, ``half_width_kwh``, ``source``): a record's ``metadata["components"]``."""
    breakdown = []
    for c in components:
        joules = max(0.0, end.energy_j.get(c.name, 0.0) - start.energy_j.get(c.name, 0.0))
        own = terms.get(c.name, ())
        try:
            item = c.describe()
        except Exception as e:  # a backend's bug must not cost the record
            item = {"kind": c.kind, "name": c.name, "failure": f"describe() failed: {e}"}
        item["energy_kwh"] = joules / J_PER_KWH
        item["energy_uncertainty_kwh"] = combine(t.half_width_j for t in own) / J_PER_KWH
        item["uncertainty_terms"] = [
            {"term": t.name, "half_width_kwh": t.half_width_j / J_PER_KWH, "source": t.source}
            for t in own
        ]
        breakdown.append(item)
    return breakdown


#: what the records say where the carbon intensity's source states no uncertainty
INTENSITY_UNSTATED = "not stated by the source; not included in emissions_uncertainty_kg"


@functools.lru_cache(maxsize=8)
def _uncertainty_summary(intensity: IntensityResult, resumed: bool) -> dict[str, Any]:
    """``metadata["uncertainty"]`` for one intensity (the same for every record of a run:
    built once, copied per record)."""
    intensity_half_width = intensity.uncertainty_g_per_kwh
    summary: dict[str, Any] = {
        "interval": "95% half-width; components in quadrature",
        "carbon_intensity_uncertainty_g_per_kwh": intensity_half_width,
        "carbon_intensity_uncertainty": (
            f"stated by {intensity.source}"
            if intensity_half_width is not None
            else f"{intensity.source}: {INTENSITY_UNSTATED}"
        ),
    }
    if resumed:
        summary["scope"] = "this process's measured part only (a resumed run's earlier part: none)"
    return summary


class RamUsage:
    """(utilisation %, used GB) of RAM, read at most once a second: epochs can be milliseconds.

    Args:
        tracking_mode: "process" (the process's RSS) or "machine" (all used memory).
    """

    def __init__(self, tracking_mode: str) -> None:
        self.tracking_mode = tracking_mode
        self._cache: tuple[float, float, float] | None = None

    def read(self, now_s: float) -> tuple[float, float]:
        """The figures at monotonic ``now_s`` (seconds), cached for one second."""
        cached = self._cache
        if cached is not None and now_s - cached[0] < 1.0:
            return cached[1], cached[2]
        from codecarbon_callbacks_core.system import memory_used_bytes, process_rss_bytes

        try:
            machine_used, total = memory_used_bytes()
            used = process_rss_bytes() if self.tracking_mode == "process" else machine_used
            figures = (
                round(100.0 * machine_used / total, 1) if total else 0.0,
                round(used / 1024**3, 3),
            )
        except Exception:  # pragma: no cover - a failed reading is not worth a crash
            figures = (0.0, 0.0)
        self._cache = (now_s, *figures)
        return figures


def constant_fields(
    config: TrackerConfig, run_id: str, intensity: IntensityResult, static: Mapping[str, Any]
) -> dict[str, Any]:
    """The fields every record of a run shares: its identity, configuration, location and
    machine (``static``: :data:`STATIC_KEYS` known at start(); before it, records keep their
    defaults). Built again only when one of them changes: a record is filled at every window
    edge, and one dict update costs less than ~30 attribute writes (issue 13)."""
    global _CONSTANT_CACHE
    key = (
        run_id,
        intensity,
        static,
        config.project_name,
        config.experiment_id,
        config.tracking_mode,
        config.pue,
        config.wue,
    )
    cached = _CONSTANT_CACHE
    if cached is not None and cached[0] == key:
        return cached[1]
    fields: dict[str, Any] = {
        "project_name": config.project_name,
        "run_id": run_id,
        "experiment_id": config.experiment_id,
        "country_name": intensity.country_name or "",
        "country_iso_code": intensity.country_iso_code or "",
        "region": intensity.region or "",
        "cloud_provider": intensity.cloud_provider or "",
        "cloud_region": intensity.cloud_region or "",
        "on_cloud": "Y" if intensity.cloud_provider else "N",
    }
    fields.update((k, v) for k, v in static.items() if k in STATIC_KEYS)
    fields.update(
        codecarbon_version=__version__,
        tracker_version=__version__,
        tracking_mode=config.tracking_mode,
        pue=config.pue,
        wue=config.wue,
        carbon_intensity_g_per_kwh=intensity.g_per_kwh,
        carbon_intensity_source=intensity.source,
    )
    _CONSTANT_CACHE = (key, fields)
    return fields


def gpu_utilization_percent(components: Sequence[Component]) -> float | None:
    """The GPUs' mean utilisation now (0-100), None without a GPU that reports one."""
    gpu_utils = [
        u for c in components if c.kind == "gpu" if (u := c.utilization_percent()) is not None
    ]
    return sum(gpu_utils) / len(gpu_utils) if gpu_utils else None


def _fill_utilization(
    record: EmissionsData,
    start: Snapshot,
    end: Snapshot,
    *,
    components: Sequence[Component],
    ram_usage: RamUsage,
    gpu_utilization: float | None = None,
    ram: tuple[float, float] | None = None,
) -> None:
    busy = end.cpu_times_s[0] - start.cpu_times_s[0]
    total_cpu = end.cpu_times_s[1] - start.cpu_times_s[1]
    record.cpu_utilization_percent = round(100.0 * busy / total_cpu, 2) if total_cpu > 0 else 0.0
    if gpu_utilization is None:
        gpu_utilization = gpu_utilization_percent(components)
    record.gpu_utilization_percent = gpu_utilization or 0.0
    record.ram_utilization_percent, record.ram_used_gb = (
        ram if ram is not None else ram_usage.read(end.monotonic_s)
    )


def fill_record(
    record: EmissionsData,
    start: Snapshot,
    end: Snapshot,
    *,
    config: TrackerConfig,
    run_id: str,
    intensity: IntensityResult,
    components: Sequence[Component],
    static: Mapping[str, Any],
    ram_usage: RamUsage,
    metadata: Mapping[str, Any],
    run_start: Snapshot | None,
    window_count: int,
    resumed: EmissionsData | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    figures_only: bool = False,
    gpu_utilization: float | None = None,
    ram: tuple[float, float] | None = None,
) -> Figures:
    """Fill ``record`` with the figures between ``start`` and ``end`` (plus ``resumed``'s totals:
    a resumed run's figures so far), and the run's facts; returns the figures.

    Energies in kWh, powers in W, emissions in kg CO2eq, water in L, durations in s, as the
    ``emissions.csv`` columns define (:func:`window_figures`). ``figures_only``: the figures
    (their uncertainties too), timestamp, identity, configuration, location and machine only;
    utilisations stay 0 and metadata empty (no component described, no utilisation read: an
    epoch end's totals, issue 13). ``gpu_utilization`` and ``ram`` (utilisation %, used GB): the
    GPUs' mean utilisation and RAM usage read earlier (at a window's close), else read now.
    """
    figures = window_figures(
        components,
        start,
        end,
        pue=config.pue,
        wue=config.wue,
        intensity=intensity,
        base=resumed,
    )
    record.timestamp = iso(end.wall_time)
    vars(record).update(constant_fields(config, run_id, intensity, static))
    figures.fill(record)
    if figures_only:
        return figures
    _fill_utilization(
        record,
        start,
        end,
        components=components,
        ram_usage=ram_usage,
        gpu_utilization=gpu_utilization,
        ram=ram,
    )
    all_metadata = dict(metadata)
    terms = window_uncertainty(components, start, end)
    all_metadata["components"] = describe_components(components, start, end, terms)
    all_metadata["uncertainty"] = dict(_uncertainty_summary(intensity, resumed is not None))
    all_metadata["run_start_timestamp"] = iso(run_start.wall_time) if run_start else ""
    all_metadata["window_count"] = window_count
    if static.get("job"):
        all_metadata["job"] = dict(static["job"])
    if static.get("container") is not None:
        all_metadata["container"] = static["container"].as_metadata(config.tracking_mode)
    if extra_metadata:
        all_metadata.update(extra_metadata)
    record.metadata = all_metadata
    return figures


def tracker_state(run_id: str, total: EmissionsData) -> dict[str, Any]:
    """A tracker's state_dict: the run's identity and ``total``'s cumulative figures, as plain
    JSON-able numbers and ids."""
    return {
        "version": STATE_VERSION,
        "run_id": run_id,
        **{key: getattr(total, name) for key, name in STATE_KEYS.items()},
        "window_count": int(total.metadata.get("window_count", 0)) if total.metadata else 0,
    }


def parse_tracker_state(state: Mapping[str, Any]) -> tuple[str, EmissionsData]:
    """(run_id, the resumed totals) of a state saved by :func:`tracker_state`.

    Raises:
        ValueError: ``state`` is not a tracker state_dict.
    """
    try:
        run_id = str(state["run_id"])
        resumed = totals_from_state(
            {key: float(state.get(key, 0.0)) for key in STATE_KEYS}, run_id=run_id
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"state: not a tracker state_dict ({e})") from None
    return run_id, resumed
