"""The Prometheus series of one run: CodeCarbon 3.3.2's, and ours named by Prometheus's rules.

Two families of series, both in every push and on the scrape endpoint:

**CodeCarbon's** (``codecarbon/output_methods/metrics/prometheus.py`` and ``metric_docs.py`` in
CodeCarbon 3.3.2), same names, types, help texts and delta semantics, so that dashboards and
alerts built on CodeCarbon keep working. Gauges hold what was measured since the previous push
(CodeCarbon's ``delta``), in CodeCarbon's units (s, kg, kg/s, W, kWh):

================================  =======  =====================================================
``codecarbon_duration``           gauge    s since the previous push
``codecarbon_emissions``          gauge    kg CO2eq since the previous push
``codecarbon_emissions_rate``     gauge    emissions / duration of that delta (kg/s)
``codecarbon_{cpu,gpu,ram}_power`` gauge   latest power (W)
``codecarbon_{cpu,gpu,ram}_energy`` gauge  kWh since the previous push
``codecarbon_energy_consumed``    gauge    their sum (kWh)
``codecarbon_energy_total``       counter  kWh since the start of the run
================================  =======  =====================================================

They carry CodeCarbon's 14 labels (:data:`CODECARBON_LABELS`), filled (CodeCarbon 3.3.2 fills
``project_name`` only).

**Conforming** series (Prometheus's naming guidance: base units in the name, ``_total`` for
counters), with small label sets (``project_name``, ``experiment_id``):

================================================  =======  =====================================
``codecarbon_energy_joules_total``                counter  J of the run so far, CPU + GPU + RAM
``codecarbon_{cpu,gpu,ram}_energy_joules_total``  counter  J of the run so far, per component
``codecarbon_emissions_grams_total``              counter  g CO2eq of the run so far
``codecarbon_water_consumed_liters_total``        counter  L of the run so far
``codecarbon_{cpu,gpu,ram}_power_watts``          gauge    latest power (W)
``codecarbon_emissions_rate_grams_per_second``    gauge    run's emissions / duration (g/s)
``codecarbon_run_duration_seconds``               gauge    duration of the run so far (s)
``codecarbon_carbon_intensity_g_per_kwh``         gauge    carbon intensity used (gCO2eq/kWh)
``codecarbon_last_push_timestamp_seconds``        gauge    when these values were pushed (Unix)
``codecarbon_run_info``                           info     1, with the run's descriptive labels
================================================  =======  =====================================
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from codecarbon_callbacks_core.records import EmissionsData

J_PER_KWH = 3.6e6
G_PER_KG = 1000.0
COMPONENTS = ("cpu", "gpu", "ram")

#: CodeCarbon 3.3.2's labels, in its order (``labelnames`` in its prometheus.py)
CODECARBON_LABELS = (
    "project_name",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "codecarbon_version",
    "cpu_model",
    "cpu_count",
    "gpu_model",
    "gpu_count",
    "tracking_mode",
    "ram_total_size",
)

#: CodeCarbon 3.3.2's gauges: (name, help text, field of its ``delta``), in its order
CODECARBON_GAUGES = (
    ("codecarbon_duration", "Duration from last measure (s)", "duration"),
    ("codecarbon_emissions", "Emissions as CO₂-equivalents [CO₂eq] (kg)", "emissions"),
    ("codecarbon_emissions_rate", "Emissions divided per duration (Kg/s)", "emissions_rate"),
    ("codecarbon_cpu_power", "CPU power (W)", "cpu_power"),
    ("codecarbon_gpu_power", "GPU power (W)", "gpu_power"),
    ("codecarbon_ram_power", "RAM power (W)", "ram_power"),
    ("codecarbon_cpu_energy", "Energy used per CPU since last reading (kWh)", "cpu_energy"),
    ("codecarbon_gpu_energy", "Energy used per GPU since last reading (kWh)", "gpu_energy"),
    ("codecarbon_ram_energy", "Energy used per RAM since last reading (kWh)", "ram_energy"),
    (
        "codecarbon_energy_consumed",
        "Sum of cpu_energy, gpu_energy and ram_energy (kWh)",
        "energy_consumed",
    ),
)
#: CodeCarbon's one counter (prometheus_client exposes it as ``codecarbon_energy_total``)
CODECARBON_COUNTER = (
    "codecarbon_energy",
    "Accumulated cpu_energy, gpu_energy and ram_energy (kWh) since the start of the run",
)

#: labels of the conforming series (besides ``run_id``)
BASE_LABELS = ("project_name", "experiment_id")


def number(value: Any) -> float:
    """``value`` as a float; 0.0 for None, NaN or anything not a number."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(result) else result


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def codecarbon_labels(total: EmissionsData) -> dict[str, str]:
    """CodeCarbon's 14 labels, filled from the run (empty strings where unknown, as CodeCarbon)."""
    return {name: _text(getattr(total, name, "")) for name in CODECARBON_LABELS}


def run_info_labels(total: EmissionsData) -> dict[str, str]:
    """The run's descriptive labels, carried once by ``codecarbon_run_info``: CodeCarbon's
    (but ``project_name``), ours, and the job's identity (:data:`~codecarbon_callbacks_core.
    jobinfo.JOB_KEYS`, from ``metadata["job"]``; empty strings where absent)."""
    from codecarbon_callbacks_core.jobinfo import JOB_KEYS

    metadata = total.metadata if isinstance(total.metadata, dict) else {}
    raw_task = metadata.get("boamps_task")
    task: dict[str, Any] = raw_task if isinstance(raw_task, dict) else {}
    labels = {name: value for name, value in codecarbon_labels(total).items()}
    del labels["project_name"]  # already a base label
    labels.update(
        framework=_text(metadata.get("framework") or ""),
        task_family=_text(metadata.get("task_family") or task.get("taskFamily") or ""),
        status=_text(total.status),
        cpu_method=_text(total.cpu_method),
        gpu_method=_text(total.gpu_method),
        ram_method=_text(total.ram_method),
        carbon_intensity_source=_text(total.carbon_intensity_source),
        tracker_version=_text(total.tracker_version),
    )
    raw_job = metadata.get("job")
    job: dict[str, Any] = raw_job if isinstance(raw_job, dict) else {}
    labels.update({key: _text(job.get(key) or "") for key in JOB_KEYS})
    return labels


class RunCollector:
    """A prometheus_client collector over one snapshot of a run.

    Args:
        total: the run's totals (energies in kWh, emissions in kg, as the records hold them).
        delta: what was measured since the previous push (CodeCarbon's gauges); None: ``total``.
        pushed_at_s: Unix time of the push (s).
        run_id_label: add ``run_id`` to every series (the scrape endpoint; a Pushgateway adds it
            from the grouping key instead).
    """

    def __init__(
        self,
        total: EmissionsData,
        delta: EmissionsData | None,
        pushed_at_s: float,
        *,
        run_id_label: bool = False,
    ) -> None:
        self.total = total
        self.delta = delta if delta is not None else total
        self.pushed_at_s = pushed_at_s
        self.run_id_label = run_id_label

    def _extra(self) -> dict[str, str]:
        return {"run_id": self.total.run_id or "unknown"} if self.run_id_label else {}

    def collect(self) -> Iterator[Metric]:
        yield from self.codecarbon_series()
        yield from self.conforming_series()

    def codecarbon_series(self) -> Iterator[Metric]:
        """CodeCarbon 3.3.2's gauges (the delta) and its counter (the run's total), in kWh."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = {**codecarbon_labels(self.total), **self._extra()}
        names, values = list(labels), list(labels.values())
        for name, doc, field_name in CODECARBON_GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=names)
            gauge.add_metric(values, number(getattr(self.delta, field_name)))
            yield gauge
        counter = CounterMetricFamily(*CODECARBON_COUNTER, labels=names)
        counter.add_metric(values, max(0.0, number(self.total.energy_consumed)))
        yield counter

    def conforming_series(self) -> Iterator[Metric]:
        """Our series in base units (J, g, L, W, s) with small label sets."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        t = self.total
        labels = {
            "project_name": t.project_name or "",
            "experiment_id": t.experiment_id or "",
            **self._extra(),
        }
        names, values = list(labels), list(labels.values())

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, max(0.0, value))
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        yield counter(
            "codecarbon_energy_joules",
            "Energy used by the run so far, CPU + GPU + RAM (J)",
            number(t.energy_consumed) * J_PER_KWH,
        )
        for component in COMPONENTS:
            upper = component.upper()
            yield counter(
                f"codecarbon_{component}_energy_joules",
                f"Energy used by the run's {upper} so far (J)",
                number(getattr(t, f"{component}_energy")) * J_PER_KWH,
            )
        for component in COMPONENTS:
            yield gauge(
                f"codecarbon_{component}_power_watts",
                f"Latest {component.upper()} power (W)",
                number(getattr(t, f"{component}_power")),
            )
        yield counter(
            "codecarbon_emissions_grams",
            "Emissions of the run so far (g CO2eq)",
            number(t.emissions) * G_PER_KG,
        )
        yield counter(
            "codecarbon_water_consumed_liters",
            "Water consumed by the run so far (L)",
            number(t.water_consumed),
        )
        yield gauge(
            "codecarbon_emissions_rate_grams_per_second",
            "Emissions of the run divided by its duration (g CO2eq/s)",
            number(t.emissions_rate) * G_PER_KG,
        )
        yield gauge(
            "codecarbon_run_duration_seconds", "Duration of the run so far (s)", number(t.duration)
        )
        yield gauge(
            "codecarbon_carbon_intensity_g_per_kwh",
            "Carbon intensity of the electricity used (gCO2eq/kWh)",
            number(t.carbon_intensity_g_per_kwh),
        )
        yield gauge(
            "codecarbon_last_push_timestamp_seconds",
            "When these values were pushed (Unix time, s)",
            self.pushed_at_s,
        )
        info = InfoMetricFamily("codecarbon_run", "Descriptive labels of the run", labels=names)
        info.add_metric(values, run_info_labels(t))
        yield info
