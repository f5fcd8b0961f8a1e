"""LOGFIRE output: ``codecarbon_*`` metrics (and a log per window) through the Logfire SDK.

Never triggers Logfire's interactive login or network set-up: if the user has configured logfire
(``logfire.configure(...)`` before the tracker starts), it is used as it is; otherwise it is
configured with ``send_to_logfire='if-token-present'`` and no console output, so without a
``LOGFIRE_TOKEN`` nothing leaves the process. Delivery and retries are the OpenTelemetry
exporter's.

Metrics (real units, attributes ``project_name``, ``experiment_id``, ``run_id`` and, when the
run's metadata has them, ``framework`` and ``task_family``):

==================================  =========  =========================================
``codecarbon_energy_consumed``      kWh        counter: energy, CPU + GPU + RAM
``codecarbon_component_energy``     kWh        counter, attribute ``component``
``codecarbon_emissions``            kg         counter: kg CO2eq
``codecarbon_duration``             s          counter: measured time
``codecarbon_component_power``      W          gauge, attribute ``component``
``codecarbon_emissions_rate``       kg/s       gauge: emissions / duration of the update
``codecarbon_{cpu,gpu,ram}_power``  W          gauge (CodeCarbon 3.3.2's Logfire names)
``codecarbon_{cpu,gpu,ram}_energy`` kWh        gauge: energy of the update (CodeCarbon's)
``codecarbon_carbon_intensity``     g/kWh      gauge: gCO2eq/kWh
``codecarbon_window_energy``        kWh        histogram of closed windows, attributes
                                               ``kind`` and ``phase``
``hw.energy``                       J          counter per hardware instance (each CPU
                                               package, each GPU, RAM): ``hw.id`` (the
                                               component's name, e.g. ``cpu:package-0``,
                                               ``gpu:1``, ``ram``), ``hw.type`` (``cpu``,
                                               ``gpu``, ``memory``), ``hw.name`` (model)
``hw.power``                        W          gauge, the same attributes
``hw.host.energy``                  J          counter, CPU + GPU + RAM, ``hw.id="host"``
``hw.host.power``                   W          gauge, the same
==================================  =========  =========================================

The ``hw.*`` series follow OpenTelemetry's hardware semantic conventions: the host's total is
only in ``hw.host.*``, never in ``hw.energy``, so summing ``hw.energy`` never counts it twice.
The instances come from the run record's ``metadata["components"]`` (each component's
cumulative ``energy_kwh`` over the tracker's run): this output keeps each instance's last value,
per run, and adds the difference. A component's ``hw.power`` is its kind's power shared by its
share of the kind's energy in the update. In a distributed run's combined record ``hw.id`` is
prefixed with the machine and the rank (``<machine>/rank<r>/gpu:0``). A record without component
descriptions gets one series per kind, ``hw.id`` = ``hw.type``.

Counters add the delta the tracker hands this output (the change since the totals this output
last took), so live and flush/stop updates never count twice, and a resumed run does not add
again what it resumed from. Each closed window is also logged
(``codecarbon window ...``) with its figures as attributes.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.output._util import (
    core_install_hint,
    describe_error,
    require_module,
    warn_once,
)
from codecarbon_callbacks_core.output.base import BaseOutput
from codecarbon_callbacks_core.records import ADDITIVE_FIELDS

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData, WindowRecord

logger = logging.getLogger(__name__)

#: the additive fields with a counter (water has none)
_COUNTED = tuple(name for name in ADDITIVE_FIELDS if name != "water_consumed")
DEFAULT_EXIT_TIMEOUT_S = 2.0
J_PER_KWH = 3.6e6
#: our component kind -> the OpenTelemetry ``hw.type``
_HW_TYPES = {"cpu": "cpu", "gpu": "gpu", "ram": "memory"}


def hardware_instances(record: EmissionsData) -> list[tuple[str, str, str, float]] | None:
    """``(hw.id, our kind, model, cumulative kWh)`` for each component the record describes
    (``metadata["components"]``), or None when it describes none (then one series per kind).

    ``hw.id`` is the component's name, prefixed with ``<machine>/rank<r>/`` where the
    description carries them (a distributed run's combined record).
    """
    metadata = record.metadata if isinstance(record.metadata, dict) else {}
    described = metadata.get("components")
    if not isinstance(described, list) or not described:
        return None
    instances = []
    for item in described:
        if not isinstance(item, dict) or "energy_kwh" not in item or "name" not in item:
            return None  # a figures-only record: no instance is described
        if item.get("kind") not in _HW_TYPES:
            continue
        prefix = "".join(
            f"{label}{item[key]}/"
            for key, label in (("machine", ""), ("rank", "rank"))
            if item.get(key) is not None
        )
        instances.append(
            (
                f"{prefix}{item['name']}",
                str(item["kind"]),
                str(item.get("model") or ""),
                float(item["energy_kwh"] or 0.0),
            )
        )
    return instances


def logfire_is_configured(instance: Any) -> bool:
    """Whether ``logfire.configure()`` was called (by the user or a test fixture)."""
    config = getattr(instance, "config", None)
    initialized = getattr(config, "_initialized", None)
    # An SDK without the flag: assume the user configured it rather than override them.
    return True if initialized is None else bool(initialized)


def _instruments(instance: Any) -> dict[str, Any]:
    """The Logfire metric instruments this output records into, by key, made on ``instance``
    (a ``logfire.Logfire``): CodeCarbon's names and the OpenTelemetry hardware conventions."""
    m: dict[str, Any] = {}
    m["energy_consumed"] = instance.metric_counter(
        "codecarbon_energy_consumed",
        unit="kWh",
        description="Energy consumed by the run, CPU + GPU + RAM",
    )
    m["component_energy"] = instance.metric_counter(
        "codecarbon_component_energy",
        unit="kWh",
        description="Energy consumed by the run, per component",
    )
    m["emissions"] = instance.metric_counter(
        "codecarbon_emissions", unit="kg", description="Emissions of the run, kg CO2eq"
    )
    m["duration"] = instance.metric_counter(
        "codecarbon_duration", unit="s", description="Measured duration of the run"
    )
    m["component_power"] = instance.metric_gauge(
        "codecarbon_component_power", unit="W", description="Latest power per component"
    )
    m["emissions_rate"] = instance.metric_gauge(
        "codecarbon_emissions_rate",
        unit="kg/s",
        description="Emissions divided by duration, kg CO2eq/s",
    )
    m["carbon_intensity"] = instance.metric_gauge(
        "codecarbon_carbon_intensity",
        unit="g/kWh",
        description="Carbon intensity of the electricity used, gCO2eq/kWh",
    )
    # CodeCarbon 3.3.2's Logfire names: per-component gauges (power; energy of the delta)
    for component, upper in (("cpu", "CPU"), ("gpu", "GPU"), ("ram", "RAM")):
        m[f"{component}_power"] = instance.metric_gauge(
            f"codecarbon_{component}_power", unit="W", description=f"{upper} power"
        )
        m[f"{component}_energy"] = instance.metric_gauge(
            f"codecarbon_{component}_energy",
            unit="kWh",
            description=f"Energy used per {upper} since the previous update",
        )
    # OpenTelemetry hardware semantic conventions: components and the host apart, so
    # that they are never summed together
    m["hw_energy"] = instance.metric_counter(
        "hw.energy", unit="J", description="Energy consumed by the component"
    )
    m["hw_power"] = instance.metric_gauge(
        "hw.power", unit="W", description="Instantaneous power consumed by the component"
    )
    m["hw_host_energy"] = instance.metric_counter(
        "hw.host.energy",
        unit="J",
        description="Energy consumed by the host's measured components (CPU + GPU + RAM)",
    )
    m["hw_host_power"] = instance.metric_gauge(
        "hw.host.power",
        unit="W",
        description="Power of the host's measured components (CPU + GPU + RAM)",
    )
    m["window_energy"] = instance.metric_histogram(
        "codecarbon_window_energy",
        unit="kWh",
        description="Energy of closed windows (epochs, phases, tasks)",
    )
    return m


class LogfireOutput(BaseOutput):
    """Sends the run's energy, emissions and power as Logfire (OpenTelemetry) metrics.

    Args:
        logfire_instance: a ``logfire.Logfire`` to use; default the global ``logfire``.
        windows: log each closed window and record it in ``codecarbon_window_energy``.
        exit_timeout_s: the most exit() waits for the exporter's flush.

    Example:
        >>> import logfire
        >>> logfire.configure(send_to_logfire="if-token-present")  # doctest: +SKIP
        >>> # EmissionsTracker(output_methods=["logfire"])
    """

    def __init__(
        self,
        logfire_instance: Any = None,
        *,
        windows: bool = True,
        exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
    ) -> None:
        if logfire_instance is None:
            require_module("logfire", "logfire", "the LOGFIRE output")
        self._instance = logfire_instance
        self.windows = windows
        self.exit_timeout_s = float(exit_timeout_s)
        self._lock = threading.Lock()
        self._ready = False
        self._failed = False
        self._configured_by_us = False
        self._metrics: dict[str, Any] = {}
        #: (run_id, the run segment's start) -> hw.id -> the cumulative kWh last sent
        self._hw_sent: dict[tuple[str, str], dict[str, float]] = {}
        #: the same key -> hw.id -> its last share of its kind's power (kept while an update
        #: adds no energy)
        self._hw_share: dict[tuple[str, str], dict[str, float]] = {}

    # ------------------------------------------------------------------ set-up

    def _setup(self) -> bool:
        if self._ready or self._failed:
            return self._ready
        try:
            import logfire

            instance = self._instance or logfire.DEFAULT_LOGFIRE_INSTANCE
            if not logfire_is_configured(instance):
                # No login, no prompt, no console: data leaves only if LOGFIRE_TOKEN is set.
                logfire.configure(send_to_logfire="if-token-present", console=False)
                self._configured_by_us = True
            self._instance = instance
            self._metrics.update(_instruments(instance))
            self._ready = True
        except Exception as exc:  # noqa: BLE001 - never raise into training
            self._failed = True
            warn_once(
                "logfire-setup",
                "LOGFIRE output disabled: %s (%s)",
                describe_error(exc),
                core_install_hint("logfire"),
                log=logger,
            )
        return self._ready

    # ------------------------------------------------------------------ records

    @staticmethod
    def attributes(record: EmissionsData) -> dict[str, str]:
        metadata = record.metadata if isinstance(record.metadata, dict) else {}
        raw_task = metadata.get("boamps_task")
        task: dict[str, Any] = raw_task if isinstance(raw_task, dict) else {}
        attrs = {
            "project_name": record.project_name,
            "experiment_id": record.experiment_id,
            "run_id": record.run_id,
        }
        framework = metadata.get("framework")
        task_family = metadata.get("task_family") or task.get("taskFamily")
        if framework:
            attrs["framework"] = str(framework)
        if task_family:
            attrs["task_family"] = str(task_family)
        return attrs

    def _record_totals(self, total: EmissionsData, delta: EmissionsData) -> None:
        if not self._setup():
            return
        try:
            change = {name: float(getattr(delta, name) or 0.0) for name in _COUNTED}
            attrs = self.attributes(total)
            m = self._metrics
            if change["energy_consumed"] > 0:
                m["energy_consumed"].add(change["energy_consumed"], attrs)
            for component in ("cpu", "gpu", "ram"):
                value = change[f"{component}_energy"]
                if value > 0:
                    m["component_energy"].add(value, {**attrs, "component": component})
                m["component_power"].set(
                    float(getattr(total, f"{component}_power") or 0.0),
                    {**attrs, "component": component},
                )
            self._record_codecarbon_and_hw(total, delta, change, attrs)
            if change["emissions"] > 0:
                m["emissions"].add(change["emissions"], attrs)
            if change["duration"] > 0:
                m["duration"].add(change["duration"], attrs)
            # CodeCarbon's: the rate of this update's delta
            rate = change["emissions"] / change["duration"] if change["duration"] > 0 else 0.0
            m["emissions_rate"].set(rate, attrs)
            if total.carbon_intensity_g_per_kwh:
                m["carbon_intensity"].set(float(total.carbon_intensity_g_per_kwh), attrs)
        except Exception as exc:  # noqa: BLE001 - never raise into training
            warn_once(
                "logfire-record",
                "LOGFIRE output could not record metrics: %s",
                describe_error(exc),
                log=logger,
            )

    def _record_codecarbon_and_hw(
        self,
        total: EmissionsData,
        delta: EmissionsData,
        change: dict[str, float],
        attrs: dict[str, str],
    ) -> None:
        m = self._metrics
        host_power = 0.0
        for component in _HW_TYPES:
            power = float(getattr(total, f"{component}_power") or 0.0)
            host_power += power
            m[f"{component}_power"].set(power, attrs)
            m[f"{component}_energy"].set(change[f"{component}_energy"], attrs)
        instances = hardware_instances(total)
        if instances is None:
            self._record_hw_per_kind(total, change, attrs)
        else:
            self._record_hw_instances(total, instances, attrs)
        host = {**attrs, "hw.id": "host"}
        if change["energy_consumed"] > 0:
            m["hw_host_energy"].add(change["energy_consumed"] * J_PER_KWH, host)
        m["hw_host_power"].set(host_power, host)

    def _record_hw_per_kind(
        self, total: EmissionsData, change: dict[str, float], attrs: dict[str, str]
    ) -> None:
        """No component described: one ``hw.*`` series per kind, ``hw.id`` = ``hw.type``."""
        m = self._metrics
        for component, hw_type in _HW_TYPES.items():
            hw = {**attrs, "hw.id": hw_type, "hw.type": hw_type}
            model = getattr(total, f"{component}_model", "") if component != "ram" else ""
            if model:
                hw["hw.name"] = str(model)
            joules = change[f"{component}_energy"] * J_PER_KWH
            if joules > 0:
                m["hw_energy"].add(joules, hw)
            m["hw_power"].set(float(getattr(total, f"{component}_power") or 0.0), hw)

    def _record_hw_instances(
        self,
        total: EmissionsData,
        instances: list[tuple[str, str, str, float]],
        attrs: dict[str, str],
    ) -> None:
        """One ``hw.*`` series per component: the change of its cumulative energy since the
        value this output last sent for this run (a new segment of the run starts from 0)."""
        metadata = total.metadata if isinstance(total.metadata, dict) else {}
        key = (total.run_id, str(metadata.get("run_start_timestamp") or ""))
        with self._lock:
            sent = self._hw_sent.setdefault(key, {})
            changes = {
                hw_id: max(0.0, kwh - sent.get(hw_id, 0.0)) for hw_id, _, _, kwh in instances
            }
            sent.update({hw_id: kwh for hw_id, _, _, kwh in instances})
            shares = self._hw_share.setdefault(key, {})
        per_kind = dict.fromkeys(_HW_TYPES, 0.0)
        count = dict.fromkeys(_HW_TYPES, 0)
        for hw_id, kind, _, _ in instances:
            per_kind[kind] += changes[hw_id]
            count[kind] += 1
        m = self._metrics
        for hw_id, kind, model, _ in instances:
            hw = {**attrs, "hw.id": hw_id, "hw.type": _HW_TYPES[kind]}
            if model:
                hw["hw.name"] = model
            if changes[hw_id] > 0:
                m["hw_energy"].add(changes[hw_id] * J_PER_KWH, hw)
            # the kind's power, shared by the instances' energy in this update (an update
            # without energy keeps the last shares; equal shares before any)
            kind_power = float(getattr(total, f"{kind}_power") or 0.0)
            if per_kind[kind] > 0:
                share = shares[hw_id] = changes[hw_id] / per_kind[kind]
            else:
                share = shares.get(hw_id, 1.0 / count[kind])
            m["hw_power"].set(kind_power * share, hw)

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._record_totals(total, delta)

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._record_totals(total, delta)

    def window_out(self, record: WindowRecord) -> None:
        if not self.windows or not self._setup():
            return
        try:
            attrs = self.attributes(record)
            self._metrics["window_energy"].record(
                max(0.0, float(record.energy_consumed or 0.0)),
                {**attrs, "kind": record.kind, "phase": record.phase},
            )
            fields = {
                "window_id": record.window_id,
                "kind": record.kind,
                "window_name": record.name,
                "epoch": record.epoch,
                "phase": record.phase,
                "status": record.status,
                "duration_s": record.duration,
                "energy_consumed_kwh": record.energy_consumed,
                "cpu_energy_kwh": record.cpu_energy,
                "gpu_energy_kwh": record.gpu_energy,
                "ram_energy_kwh": record.ram_energy,
                "emissions_kg": record.emissions,
                "start_timestamp": record.start_timestamp,
                "end_timestamp": record.end_timestamp,
                **attrs,
            }
            self._instance.info(
                "codecarbon window {kind} {window_name}: {energy_consumed_kwh} kWh",
                _tags=["codecarbon"],
                **fields,
            )
        except Exception as exc:  # noqa: BLE001 - never raise into training
            warn_once(
                "logfire-window",
                "LOGFIRE output could not record a window: %s",
                describe_error(exc),
                log=logger,
            )

    def exit(self) -> None:
        with self._lock:
            self._hw_sent.clear()  # the run is over: a later start() is a new segment
            self._hw_share.clear()
        if not self._ready or self._instance is None:
            return
        # Bounded: the exporter flushes in a daemon thread; we wait at most exit_timeout_s.
        instance = self._instance
        timeout_ms = int(self.exit_timeout_s * 1000)
        flusher = threading.Thread(
            target=lambda: _safe_flush(instance, timeout_ms),
            name="codecarbon-logfire-flush",
            daemon=True,
        )
        flusher.start()
        flusher.join(self.exit_timeout_s + 0.2)


def _safe_flush(instance: Any, timeout_ms: int) -> None:
    try:
        instance.force_flush(timeout_millis=timeout_ms)
    except Exception:
        logger.debug("logfire force_flush failed", exc_info=True)
