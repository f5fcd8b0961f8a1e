"""PROMETHEUS output: the run's series pushed to a Pushgateway and/or served for scraping.

Pushed on every live update and on flush/stop, from the background sender (never the training
thread), with a registry of our own (never prometheus_client's global one). Nothing is spooled
(Prometheus metrics are state): a push that fails is tried again in the background with the
run's latest values (a newer push replaces the one waiting), and its warning says so.

The series (see :mod:`.prometheus_metrics`): CodeCarbon 3.3.2's exactly (names, types, help,
its 14 labels, filled, and its delta semantics: a gauge holds what was measured since the
previous push the gateway accepted), and beside them ours, named by Prometheus's conventions
(``codecarbon_*_energy_joules_total``, ``codecarbon_emissions_grams_total``, power in watts,
``codecarbon_run_info``).

The Pushgateway group is ``job=<job>`` (a tracker's: ``<project_name>_<experiment_name>``, by
default ``codecarbon_base``; an output built by hand: ``codecarbon``; both as CodeCarbon) with
grouping key
``run_id=<run_id>`` (CodeCarbon groups by job only, so concurrent runs overwrite each other):
every series carries ``run_id`` too. Trade-off: the number of series grows with the number of
runs (delete them with ``prometheus_delete_on_exit=True`` once Prometheus has scraped them, or
let the Pushgateway's admin API wipe old groups).

Scrape endpoint (``scrape_address``): prometheus_client's own HTTP server in this process, the
same series with a ``run_id`` label (:mod:`.prometheus_scrape`).

Basic auth: ``PROMETHEUS_USERNAME`` / ``PROMETHEUS_PASSWORD`` from the environment, read at push
time, never stored or logged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
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
from codecarbon_callbacks_core.output.prometheus_metrics import (
    BASE_LABELS,
    CODECARBON_LABELS,
    RunCollector,
)
from codecarbon_callbacks_core.output.sender import Job, Outcome, Sender, get_sender
from codecarbon_callbacks_core.records import ADDITIVE_FIELDS

if TYPE_CHECKING:
    from codecarbon_callbacks_core.output.prometheus_scrape import ScrapeEndpoint
    from codecarbon_callbacks_core.records import EmissionsData

logger = logging.getLogger(__name__)

DEFAULT_JOB = "codecarbon"


def prometheus_job_name(project_name: str, experiment_name: str) -> str:
    """The Pushgateway job a tracker pushes to: CodeCarbon 3.3.2's
    ``f"{project_name}_{experiment_name}"`` with every character outside ``[a-zA-Z0-9_-]`` made
    ``_`` (``codecarbon_base`` by default), so that dashboards and alerts keep matching.

    Source: ``codecarbon/emissions_tracker.py`` (3.3.2), where the tracker builds its
    ``PrometheusOutput``; ``PrometheusOutput``'s own default job, ``codecarbon``, applies only
    when the output is built by hand.
    """
    return re.sub(r"[^a-zA-Z0-9_-]", "_", f"{project_name}_{experiment_name}")


DEFAULT_TIMEOUT_S = 5.0
DEFAULT_EXIT_TIMEOUT_S = 3.0

__all__ = ["BASE_LABELS", "CODECARBON_LABELS", "PrometheusOutput", "RunCollector"]


def add_deltas(first: EmissionsData, second: EmissionsData) -> EmissionsData:
    """Two consecutive deltas as one: additive fields summed, the rest from ``second``."""
    merged = dataclasses.replace(second, metadata=dict(second.metadata))
    for name in ADDITIVE_FIELDS:
        setattr(merged, name, (getattr(first, name) or 0.0) + (getattr(second, name) or 0.0))
    merged.emissions_rate = merged.emissions / merged.duration if merged.duration > 0 else 0.0
    return merged


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
    """Push the run's latest values (a state job: a newer push replaces a pending one).

    CodeCarbon's gauges hold the deltas not yet accepted by the gateway, summed: a push that
    failed or was replaced before it went out loses nothing, the next one carries it.
    """

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

        url = self.output.prometheus_url or ""
        version, delta = self.output.unpushed_delta()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RunCollector(self.total, delta, time.time()))  # type: ignore[arg-type]
        try:
            push_to_gateway(
                url,
                job=self.output.job,
                registry=registry,
                grouping_key=self.output.grouping_key(self.total),
                timeout=timeout_s,
                handler=_auth_handler,
            )
        except Exception as exc:  # noqa: BLE001 - classified, never raised
            self.last_error = describe_error(exc, _secrets(url))
            return _classify(exc)
        self.output.pushed(version, delta)
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
                self.output.prometheus_url or "",
                job=self.output.job,
                grouping_key=self.key,
                timeout=timeout_s,
                handler=_auth_handler,
            )
        except Exception as exc:  # noqa: BLE001 - classified, never raised
            self.last_error = describe_error(exc, _secrets(self.output.prometheus_url or ""))
            return _classify(exc)
        return Outcome.DELIVERED

    def retry_note(self) -> str:
        return "tried again in the background until exit() gives up (not spooled)"


class PrometheusOutput(BaseOutput):
    """Pushes the run's series to a Prometheus Pushgateway and/or serves them for scraping.

    Args:
        prometheus_url: the Pushgateway (``host:port`` or URL), e.g. ``localhost:9091``; None:
            no push (with ``scrape_address``, for users without a Pushgateway).
        job_name: the Pushgateway job label (CodeCarbon's name for it).
        delete_on_exit: delete the run's group at exit (after the final push), and remove the
            run from the scrape endpoint.
        timeout_s: timeout of each push (s).
        exit_timeout_s: the most exit() waits for the final push (and delete) (s).
        sender: the background sender (default: the process-wide one).
        scrape_address: serve the series on ``"host:port"`` (``":9464"`` or ``9464``: all
            interfaces) through prometheus_client's HTTP server, at ``/metrics``; None: no
            endpoint. A port that cannot be bound is warned about once, never raised.

    Raises:
        ValueError: an empty ``prometheus_url`` or ``job_name``, a bad ``scrape_address``, or
            neither a Pushgateway nor a scrape address.

    Example:
        >>> out = PrometheusOutput("localhost:9091")
        >>> # EmissionsTracker(output_methods=["prometheus"], prometheus_url="localhost:9091")
    """

    def __init__(
        self,
        prometheus_url: str | None = "localhost:9091",
        job_name: str = DEFAULT_JOB,
        *,
        delete_on_exit: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
        sender: Sender | None = None,
        scrape_address: str | int | None = None,
    ) -> None:
        require_module("prometheus_client", "prometheus", "the PROMETHEUS output")
        if prometheus_url is not None and (
            not isinstance(prometheus_url, str) or not prometheus_url.strip()
        ):
            raise ValueError(
                f"prometheus_url must be a Pushgateway address such as "
                f"'localhost:9091' or 'http://host:9091', got {prometheus_url!r}"
            )
        if not job_name:
            raise ValueError("job_name must be a non-empty Pushgateway job name")
        self.scrape_host: str | None = None
        self.scrape_port: int | None = None
        if scrape_address is not None:
            from codecarbon_callbacks_core.output.prometheus_scrape import parse_scrape_address

            self.scrape_host, self.scrape_port = parse_scrape_address(scrape_address)
        elif prometheus_url is None:
            raise ValueError("prometheus_url is None and no scrape_address: nowhere to send to")
        self.prometheus_url = prometheus_url.strip() if prometheus_url is not None else None
        self.job = job_name
        self.delete_on_exit = bool(delete_on_exit)
        self.timeout_s = float(timeout_s)
        self.exit_timeout_s = float(exit_timeout_s)
        self._sender = sender
        self._lock = threading.Lock()
        self._last_key: dict[str, str] | None = None
        # the deltas the gateway has not accepted yet, summed (O(1) however long it is down)
        self._unpushed: EmissionsData | None = None
        self._unpushed_version = 0
        self._endpoint: ScrapeEndpoint | None = None
        self._served: set[str] = set()
        self.pushes = 0
        if self.scrape_host is not None and self.scrape_port is not None:
            # bound now, not at the first update: scrapeable (and a port conflict reported)
            # from the start of the run, whatever measure_power_secs x api_call_interval is
            from codecarbon_callbacks_core.output.prometheus_scrape import get_endpoint

            self._endpoint = get_endpoint(self.scrape_host, self.scrape_port)

    @property
    def gateway_label(self) -> str:
        url = self.prometheus_url or ""
        return sanitize_url(url if "://" in url else f"http://{url}")

    @property
    def sender(self) -> Sender:
        # Not cached: after a fork the child gets a fresh process-wide sender.
        return self._sender if self._sender is not None else get_sender()

    @property
    def endpoint(self) -> ScrapeEndpoint | None:
        """The scrape endpoint serving this run (None: none asked for, or it could not start)."""
        return self._endpoint

    def grouping_key(self, total: EmissionsData) -> dict[str, str]:
        """The Pushgateway grouping key of a run (besides ``job``)."""
        return {"run_id": total.run_id or "unknown"}

    def unpushed_delta(self) -> tuple[int, EmissionsData | None]:
        """(a version, the sum of the deltas the gateway has not accepted yet)."""
        with self._lock:
            return self._unpushed_version, self._unpushed

    def pushed(self, version: int, sent: EmissionsData | None) -> None:
        """The gateway accepted a push carrying ``sent``, :meth:`unpushed_delta` at ``version``."""
        with self._lock:
            self.pushes += 1
            if version == self._unpushed_version:
                self._unpushed = None
            elif sent is not None and self._unpushed is not None:
                # deltas came in while the push was in flight: keep only those
                self._unpushed = self._unpushed.compute_delta_emission(sent)

    def _serve(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        if self.scrape_port is None or self.scrape_host is None:
            return
        if self._endpoint is None:
            from codecarbon_callbacks_core.output.prometheus_scrape import get_endpoint

            self._endpoint = get_endpoint(self.scrape_host, self.scrape_port)
        if self._endpoint is not None:
            run_id = total.run_id or "unknown"
            self._served.add(run_id)
            self._endpoint.set(run_id, RunCollector(total, delta, time.time(), run_id_label=True))

    def _push(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        self._serve(total, delta)
        if self.prometheus_url is None:
            return
        with self._lock:
            self._last_key = self.grouping_key(total)
            new = delta if delta is not None else total
            self._unpushed = new if self._unpushed is None else add_deltas(self._unpushed, new)
            self._unpushed_version += 1
        self.sender.replace_pending(PushJob(self, total))

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._push(total, delta)

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._push(total, delta)

    def exit(self) -> None:
        if self._endpoint is not None and self.delete_on_exit:
            for run_id in self._served:
                self._endpoint.remove(run_id)
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
