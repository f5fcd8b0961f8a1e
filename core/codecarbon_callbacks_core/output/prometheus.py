"""PROMETHEUS output: the run's latest totals pushed to a Pushgateway.

Pushed on every live update and on flush/stop, from the background sender (never the training
thread), with a registry of our own (never prometheus_client's global one). Nothing is spooled
(Prometheus metrics are state): a push that fails is tried again in the background with the
run's latest totals (a newer push replaces the one waiting), and its warning says so.

Metrics (units in the names; ``*_total`` are counters, the rest gauges):

========================================  ==========================================
``codecarbon_energy_consumed_kwh_total``  energy of the run so far, all components (kWh)
``codecarbon_component_energy_kwh_total`` the same per ``component`` (cpu, gpu, ram)
``codecarbon_emissions_kg_total``         emissions of the run so far (kg CO2eq)
``codecarbon_water_consumed_liters_total`` water of the run so far (L)
``codecarbon_component_power_watts``      latest power per ``component`` (W)
``codecarbon_emissions_rate_kg_per_second`` emissions / duration (kg/s)
``codecarbon_run_duration_seconds``       duration of the run so far (s)
``codecarbon_carbon_intensity_g_per_kwh`` carbon intensity used (gCO2eq/kWh)
``codecarbon_last_push_timestamp_seconds`` when these values were pushed (Unix time)
``codecarbon_run_info``                   1, with the run's descriptive labels
========================================  ==========================================

Labels: ``project_name``, ``experiment_id`` and, from the run's metadata when present,
``framework`` and ``task_family`` (low cardinality only). The Pushgateway group is
``job=<job>`` (default ``codecarbon``) with grouping key ``run_id=<run_id>``, so every series
carries ``run_id`` too: one group, hence one set of series, per run, as batch-job metrics are.
Trade-off: the number of series grows with the number of runs (delete them with
``prometheus_delete_on_exit=True`` once Prometheus has scraped them, or let the Pushgateway's
admin API wipe old groups); in exchange runs never overwrite one another and a run's totals stay
queryable after it ended. ``codecarbon_run_info`` adds ``status``, ``country_iso_code`` and the
measurement methods.

Basic auth: ``PROMETHEUS_USERNAME`` / ``PROMETHEUS_PASSWORD`` from the environment, read at push
time, never stored or logged.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.output._util import (
    describe_error,
    require_module,
    sanitize_url,
    url_secrets,
    warn_once,
)
from codecarbon_callbacks_core.output.base import BaseOutput
from codecarbon_callbacks_core.output.sender import Job, Outcome, Sender, get_sender

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData

logger = logging.getLogger(__name__)

DEFAULT_JOB = "codecarbon"
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_EXIT_TIMEOUT_S = 3.0
BASE_LABELS = ("project_name", "experiment_id", "framework", "task_family")
_METADATA_LABELS = ("framework", "task_family")


def _label_values(total: EmissionsData) -> dict[str, str]:
    metadata = total.metadata if isinstance(total.metadata, dict) else {}
    values = {"project_name": total.project_name or "", "experiment_id": total.experiment_id or ""}
    raw_task = metadata.get("boamps_task")
    task: dict[str, Any] = raw_task if isinstance(raw_task, dict) else {}
    values["framework"] = str(metadata.get("framework") or "")
    values["task_family"] = str(metadata.get("task_family") or task.get("taskFamily") or "")
    return values


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(number) else number


class RunCollector:
    """A prometheus_client collector over one snapshot of the run's totals."""

    def __init__(self, total: EmissionsData, pushed_at_s: float) -> None:
        self.total = total
        self.pushed_at_s = pushed_at_s

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        t = self.total
        labels = _label_values(t)
        names = list(labels)
        values = [labels[n] for n in names]

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, max(0.0, _number(value)))
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, _number(value))
            return family

        yield counter(
            "codecarbon_energy_consumed_kwh",
            "Energy used by the run so far, CPU + GPU + RAM (kWh)",
            t.energy_consumed,
        )
        energy = CounterMetricFamily(
            "codecarbon_component_energy_kwh",
            "Energy used by the run so far, per component (kWh)",
            labels=[*names, "component"],
        )
        power = GaugeMetricFamily(
            "codecarbon_component_power_watts",
            "Latest power per component (W)",
            labels=[*names, "component"],
        )
        for component in ("cpu", "gpu", "ram"):
            energy.add_metric(
                [*values, component], max(0.0, _number(getattr(t, f"{component}_energy")))
            )
            power.add_metric([*values, component], _number(getattr(t, f"{component}_power")))
        yield energy
        yield power
        yield counter(
            "codecarbon_emissions_kg", "Emissions of the run so far (kg CO2eq)", t.emissions
        )
        yield counter(
            "codecarbon_water_consumed_liters",
            "Water consumed by the run so far (L)",
            t.water_consumed,
        )
        yield gauge(
            "codecarbon_emissions_rate_kg_per_second",
            "Emissions divided by duration (kg CO2eq/s)",
            t.emissions_rate,
        )
        yield gauge("codecarbon_run_duration_seconds", "Duration of the run so far (s)", t.duration)
        yield gauge(
            "codecarbon_carbon_intensity_g_per_kwh",
            "Carbon intensity of the electricity used (gCO2eq/kWh)",
            t.carbon_intensity_g_per_kwh,
        )
        yield gauge(
            "codecarbon_last_push_timestamp_seconds",
            "When these values were pushed (Unix time, s)",
            self.pushed_at_s,
        )
        info_labels = {
            "status": t.status or "",
            "country_iso_code": t.country_iso_code or "",
            "cpu_method": t.cpu_method or "",
            "gpu_method": t.gpu_method or "",
            "ram_method": t.ram_method or "",
            "tracker_version": t.tracker_version or "",
        }
        info = GaugeMetricFamily(
            "codecarbon_run_info",
            "Descriptive labels of the run (value always 1)",
            labels=[*names, *info_labels],
        )
        info.add_metric([*values, *info_labels.values()], 1.0)
        yield info


def _auth_handler(url: str, method: str, timeout: float | None, headers: list, data: bytes):
    from prometheus_client.exposition import basic_auth_handler, default_handler

    username = os.environ.get("PROMETHEUS_USERNAME")
    password = os.environ.get("PROMETHEUS_PASSWORD")
    if username and password:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)
    return default_handler(url, method, timeout, headers, data)


def _classify(exc: BaseException) -> Outcome:
    from urllib.error import HTTPError

    if isinstance(exc, HTTPError):
        return Outcome.RETRY if exc.code in (408, 429) or exc.code >= 500 else Outcome.REJECTED
    if isinstance(exc, ValueError):  # bad URL
        return Outcome.REJECTED
    return Outcome.RETRY


def _secrets(url: str = "") -> list[str | None]:
    return [os.environ.get("PROMETHEUS_PASSWORD"), *url_secrets(url)]


class PushJob(Job):
    """Push the latest totals (a state job: a newer push replaces a pending one)."""

    kind = "prometheus"
    state = True

    def __init__(self, output: PrometheusOutput, total: EmissionsData, **kwargs: Any) -> None:
        super().__init__(owner=output, timeout_s=output.timeout_s, **kwargs)
        self.output = output
        self.total = total
        self.queue_key = f"prometheus {output.gateway_label}"
        self.label = f"Prometheus push to {output.gateway_label}"

    def attempt(self, timeout_s: float) -> Outcome:
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import push_to_gateway

        registry = CollectorRegistry(auto_describe=False)
        registry.register(RunCollector(self.total, time.time()))
        try:
            push_to_gateway(
                self.output.prometheus_url,
                job=self.output.job,
                registry=registry,
                grouping_key=self.output.grouping_key(self.total),
                timeout=timeout_s,
                handler=_auth_handler,
            )
        except Exception as exc:  # noqa: BLE001 - classified, never raised
            self.last_error = describe_error(exc, _secrets(self.output.prometheus_url))
            return _classify(exc)
        self.output.pushes += 1
        return Outcome.DELIVERED

    def retry_note(self) -> str:
        # Prometheus metrics are state: nothing is spooled, the latest totals go again.
        return (
            "not spooled (Prometheus keeps state, not records): the run's latest totals are "
            "pushed again in the background"
        )


class DeleteJob(Job):
    """Delete the run's group from the Pushgateway (``prometheus_delete_on_exit``)."""

    kind = "prometheus"

    def __init__(self, output: PrometheusOutput, grouping_key: dict[str, str]) -> None:
        super().__init__(owner=output, timeout_s=output.timeout_s)
        self.output = output
        self.key = grouping_key
        self.queue_key = f"prometheus {output.gateway_label}"
        self.label = f"Prometheus delete on {output.gateway_label}"

    def attempt(self, timeout_s: float) -> Outcome:
        from prometheus_client.exposition import delete_from_gateway

        try:
            delete_from_gateway(
                self.output.prometheus_url,
                job=self.output.job,
                grouping_key=self.key,
                timeout=timeout_s,
                handler=_auth_handler,
            )
        except Exception as exc:  # noqa: BLE001 - classified, never raised
            self.last_error = describe_error(exc, _secrets(self.output.prometheus_url))
            return _classify(exc)
        return Outcome.DELIVERED

    def retry_note(self) -> str:
        return "tried again in the background until exit() gives up (not spooled)"


class PrometheusOutput(BaseOutput):
    """Pushes the run's totals to a Prometheus Pushgateway.

    Args:
        prometheus_url: the Pushgateway (``host:port`` or URL), e.g. ``localhost:9091``.
        job_name: the Pushgateway job label (CodeCarbon's name for it).
        delete_on_exit: delete the run's group at exit (after the final push).
        timeout_s: timeout of each push.
        exit_timeout_s: the most exit() waits for the final push (and delete).
        sender: the background sender (default: the process-wide one).

    Example:
        >>> out = PrometheusOutput("localhost:9091")
        >>> # EmissionsTracker(output_methods=["prometheus"], prometheus_url="localhost:9091")
    """

    def __init__(
        self,
        prometheus_url: str = "localhost:9091",
        job_name: str = DEFAULT_JOB,
        *,
        delete_on_exit: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
        sender: Sender | None = None,
    ) -> None:
        require_module("prometheus_client", "prometheus", "the PROMETHEUS output")
        if not isinstance(prometheus_url, str) or not prometheus_url.strip():
            raise ValueError(
                f"prometheus_url must be a Pushgateway address such as "
                f"'localhost:9091' or 'http://host:9091', got {prometheus_url!r}"
            )
        if not job_name:
            raise ValueError("job_name must be a non-empty Pushgateway job name")
        self.prometheus_url = prometheus_url.strip()
        self.job = job_name
        self.delete_on_exit = bool(delete_on_exit)
        self.timeout_s = float(timeout_s)
        self.exit_timeout_s = float(exit_timeout_s)
        self._sender = sender
        self._lock = threading.Lock()
        self._last_key: dict[str, str] | None = None
        self.pushes = 0

    @property
    def gateway_label(self) -> str:
        url = self.prometheus_url
        return sanitize_url(url if "://" in url else f"http://{url}")

    @property
    def sender(self) -> Sender:
        # Not cached: after a fork the child gets a fresh process-wide sender.
        return self._sender if self._sender is not None else get_sender()

    def grouping_key(self, total: EmissionsData) -> dict[str, str]:
        """The Pushgateway grouping key of a run (besides ``job``)."""
        return {"run_id": total.run_id or "unknown"}

    def _push(self, total: EmissionsData) -> None:
        with self._lock:
            self._last_key = self.grouping_key(total)
        self.sender.replace_pending(PushJob(self, total))

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._push(total)

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._push(total)

    def exit(self) -> None:
        if self._last_key is None:
            return
        deadline = time.monotonic() + self.exit_timeout_s
        pushed = self.sender.drain(self, self.exit_timeout_s)
        if not pushed:
            warn_once(
                "prometheus-exit",
                "Prometheus: the final push to %s did not complete "
                "within %.1f s; the gateway keeps the previous values",
                self.gateway_label,
                self.exit_timeout_s,
                log=logger,
            )
        if self.delete_on_exit:
            self.sender.forget(self)
            self.sender.submit(DeleteJob(self, dict(self._last_key)))
            if not self.sender.drain(self, max(0.1, deadline - time.monotonic())):
                self.sender.forget(self)
