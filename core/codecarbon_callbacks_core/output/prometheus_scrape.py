"""An optional scrape endpoint: prometheus_client's own HTTP server, for users with no Pushgateway.

One server per address in a process, shared by every run that asks for it; each run's series
carry its ``run_id``. The server is a daemon thread started on first use; it serves the runs'
latest snapshots for as long as the process lives (a run is removed only by
``prometheus_delete_on_exit``), so Prometheus can still scrape a finished run's final values.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from codecarbon_callbacks_core.output._util import warn_once

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from codecarbon_callbacks_core.output.prometheus_metrics import RunCollector

logger = logging.getLogger(__name__)


def parse_scrape_address(address: str | int) -> tuple[str, int]:
    """``"host:port"``, ``":port"``, ``"port"`` or an int -> (host, port); host default 0.0.0.0.

    Raises:
        ValueError: naming ``prometheus_scrape_address`` when the port is not 0-65535.
    """
    text = str(address).strip()
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - what prometheus_client and exporters do
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(
            f"prometheus_scrape_address must be 'host:port', ':port' or a port number, "
            f"got {address!r}"
        )
    return host, port


class _RunsCollector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, RunCollector] = {}

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            runs = list(self.runs.values())
        # one family per name with every run's samples (a name must appear once per exposition)
        families: dict[str, Metric] = {}
        for run in runs:
            for family in run.collect():
                merged = families.setdefault(family.name, family)
                if merged is not family:
                    merged.samples.extend(family.samples)
        yield from families.values()


class ScrapeEndpoint:
    """prometheus_client's HTTP server on ``(host, port)`` over the runs' latest snapshots."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        self.collector = _RunsCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)  # type: ignore[arg-type]
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        self.host, self.port = host, int(self.server.server_address[1])
        self.pid = os.getpid()

    def set(self, run_id: str, snapshot: RunCollector) -> None:
        with self.collector.lock:
            self.collector.runs[run_id] = snapshot

    def remove(self, run_id: str) -> None:
        with self.collector.lock:
            self.collector.runs.pop(run_id, None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


_endpoints: dict[tuple[str, int], ScrapeEndpoint] = {}
_endpoints_lock = threading.Lock()


def get_endpoint(host: str, port: int) -> ScrapeEndpoint | None:
    """The process's endpoint on ``(host, port)``, started on first use; None if it cannot bind.

    A port already taken (or any other start failure) is warned about once, never raised: the
    run goes on, pushing to the Pushgateway if one is configured.
    """
    with _endpoints_lock:
        endpoint = _endpoints.get((host, port))
        if endpoint is not None and endpoint.pid == os.getpid():
            return endpoint
        try:
            endpoint = ScrapeEndpoint(host, port)
        except Exception as exc:  # noqa: BLE001 - an output failure never raises into training
            warn_once(
                f"prometheus-scrape-{host}:{port}",
                "Prometheus: cannot serve the scrape endpoint on %s:%s (%s); "
                "no scrape endpoint for this process",
                host,
                port,
                exc,
                log=logger,
            )
            return None
        _endpoints[(host, port)] = endpoint
        if port == 0:  # an ephemeral port: also known under the port it got
            _endpoints[(host, endpoint.port)] = endpoint
        return endpoint


def close_endpoints() -> None:
    """Stop every scrape endpoint of this process (tests; a process normally keeps them)."""
    with _endpoints_lock:
        endpoints = {id(e): e for e in _endpoints.values() if e.pid == os.getpid()}
        _endpoints.clear()
    for endpoint in endpoints.values():
        endpoint.close()
