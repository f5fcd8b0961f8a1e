"""API output: the run's deltas to the CodeCarbon API (``POST /runs``, ``POST /emissions``).

- No network at construction: the API run is created by the background sender with
  ``POST {api_endpoint}/runs`` before the first emission is sent. Its id is kept as
  :attr:`CodeCarbonAPIOutput.api_run_id`, added to later records' ``metadata["api_run_id"]``
  and remembered in the spool folder (``api_runs.json``), so a resumed run (same local run_id)
  goes on posting to the same API run. Our own ``run_id`` stays local.
- Each post is the delta the tracker hands this output (what changed since the totals this output
  last took; a resumed run's first delta holds only the resumed part), so live and flush/stop
  deltas never count anything twice. The API wants ``duration`` as an integer > 0 s. While the
  run goes on (live updates, and flush(), whose totals have status ``running``) a delta shorter
  than 1 s is deferred (:data:`~.base.DEFER_DELTA`: it comes back inside the next one) and the
  seconds posted are the whole seconds, the fraction carried into the next post. At stop() (any
  other status) the remainder is posted, rounded, as at least 1 s when energy or emissions are
  left, so the durations posted sum to the run's ``duration`` within 1 s.
  ``emissions_rate`` is the delta's emissions over its real duration (kg/s, as CodeCarbon sends
  it), not over the rounded one.
- Header ``x-api-token: <api_key>``; the key is never written anywhere (the spool keeps the body
  only; a re-send takes the key from the configuration).
- The API has no idempotency key. A request is retried only when it surely did not arrive
  (connection refused, DNS failure, connect timeout, 408/429/503). After a timeout once the
  request was sent (or 500/502/504), the record may be stored: it stays in the spool marked
  ``uncertain`` and is only re-sent by ``resend_spool(..., include_uncertain=True)``.
  Creating the run is retried after a timeout (a duplicate run would hold no emissions).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core._shared import write_json_atomic
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output._util import (
    describe_error,
    sanitize_url,
    url_secrets,
    warn_once,
)
from codecarbon_callbacks_core.output.base import DEFER_DELTA, BaseOutput, _DeferDelta
from codecarbon_callbacks_core.output.sender import (
    CallJob,
    Job,
    Outcome,
    Sender,
    get_sender,
    post_json,
)
from codecarbon_callbacks_core.output.spool import DEFAULT_MAX_AGE_S, DEFAULT_MAX_BYTES, Spool

if TYPE_CHECKING:
    from codecarbon_callbacks_core.output.spool import SpoolEntry
    from codecarbon_callbacks_core.records import EmissionsData

logger = logging.getLogger(__name__)

DEFAULT_API_ENDPOINT = "https://api.codecarbon.io"
#: CodeCarbon's client uses 2 s.
DEFAULT_API_TIMEOUT_S = 2.0
DEFAULT_EXIT_TIMEOUT_S = 3.0
RUNS_FILE = "api_runs.json"

_RETRY_STATUSES = (408, 425, 429, 503)

_runs_lock = threading.Lock()


class ApiRunStore:
    """``api_runs.json`` in the spool folder: local run_id -> the API's run id (so a resumed run,
    or a re-send after a restart, posts to the same API run)."""

    def __init__(self, spool: Spool, endpoint: str) -> None:
        self.path = os.path.join(spool.directory, RUNS_FILE)
        self.endpoint = sanitize_url(endpoint)
        self._spool = spool

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, local_run_id: str) -> dict[str, Any]:
        with _runs_lock:
            return dict(self._read().get(self.endpoint, {}).get(local_run_id, {}))

    def update(self, local_run_id: str, **changes: Any) -> None:
        with _runs_lock:
            data = self._read()
            runs = data.setdefault(self.endpoint, {})
            run = runs.setdefault(local_run_id, {})
            run.update(changes)
            now_s = time.time()
            run["updated_s"] = now_s
            # Bounded like the spool: runs not updated within spool_max_age_s are forgotten.
            for name in [
                n
                for n, r in runs.items()
                if now_s - float(r.get("updated_s", now_s)) > self._spool.max_age_s
            ]:
                del runs[name]
            write_json_atomic(self.path, data)


def run_body(record: EmissionsData, experiment_id: str) -> dict[str, Any]:
    """The body of ``POST /runs`` (CodeCarbon's RunCreate) from a record."""
    return {
        "timestamp": record.timestamp,
        "experiment_id": experiment_id,
        "os": record.os,
        "python_version": record.python_version,
        "codecarbon_version": record.codecarbon_version or record.tracker_version,
        "cpu_count": record.cpu_count,
        "cpu_model": record.cpu_model,
        "gpu_count": record.gpu_count,
        "gpu_model": record.gpu_model,
        "longitude": record.longitude,
        "latitude": record.latitude,
        "region": record.region or None,
        "provider": record.cloud_provider or None,
        "ram_total_size": record.ram_total_size,
        "tracking_mode": record.tracking_mode,
    }


def emission_body(total: EmissionsData, delta: EmissionsData, duration_s: int) -> dict[str, Any]:
    """The body of ``POST /emissions`` (CodeCarbon's EmissionCreate), ``run_id`` added at send.

    ``duration_s`` is the whole seconds posted; ``emissions_rate`` (kg CO2eq/s) divides the
    delta's emissions by the delta's real duration (``delta.duration``), as CodeCarbon does.
    """
    emissions = max(0.0, delta.emissions)
    real_duration_s = float(delta.duration or 0.0)
    return {
        "timestamp": total.timestamp,
        "duration": int(duration_s),
        "emissions_sum": emissions,
        "emissions_rate": emissions / real_duration_s if real_duration_s > 0 else 0.0,
        "cpu_power": max(0.0, float(total.cpu_power or 0.0)),
        "gpu_power": max(0.0, float(total.gpu_power or 0.0)),
        "ram_power": max(0.0, float(total.ram_power or 0.0)),
        "cpu_energy": max(0.0, delta.cpu_energy),
        "gpu_energy": max(0.0, delta.gpu_energy),
        "ram_energy": max(0.0, delta.ram_energy),
        "energy_consumed": max(0.0, delta.energy_consumed),
        "cpu_utilization_percent": float(total.cpu_utilization_percent or 0.0),
        "gpu_utilization_percent": float(total.gpu_utilization_percent or 0.0),
        "ram_utilization_percent": float(total.ram_utilization_percent or 0.0),
        "wue": float(total.wue or 0.0),
    }


class ApiEmissionJob(Job):
    """Create the API run if needed, then post one emission delta."""

    kind = "api"

    def __init__(
        self,
        endpoint: str,
        api_key: str | None,
        body: dict[str, Any],
        *,
        local_run_id: str,
        run: dict[str, Any],
        store: ApiRunStore,
        on_run_id: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint.rstrip("/")
        self.api_key = api_key
        self.body = body
        self.local_run_id = local_run_id
        self.run = run
        self.store = store
        self.on_run_id = on_run_id
        self.queue_key = f"api {sanitize_url(endpoint)}"
        self.label = f"CodeCarbon API {sanitize_url(endpoint)} run {local_run_id}"

    @classmethod
    def from_entry(
        cls,
        entry: SpoolEntry,
        spool: Spool,
        *,
        endpoint: str,
        api_key: str | None,
        owner: object | None = None,
        timeout_s: float = DEFAULT_API_TIMEOUT_S,
        on_run_id: Any = None,
    ) -> ApiEmissionJob:
        return cls(
            endpoint,
            api_key,
            entry.body,
            local_run_id=entry.extra.get("local_run_id", ""),
            run=entry.extra.get("run", {}),
            store=ApiRunStore(spool, endpoint),
            on_run_id=on_run_id,
            spool=spool,
            entry=entry,
            owner=owner,
            timeout_s=timeout_s,
        )

    def _secrets(self) -> list[str | None]:
        return [self.api_key, *url_secrets(self.endpoint)]

    def _headers(self) -> dict[str, str]:
        return {"x-api-token": self.api_key} if self.api_key else {}

    def _ensure_run(self, timeout_s: float) -> tuple[str | None, Outcome | None]:
        known = self.store.get(self.local_run_id).get("api_run_id")
        if known:
            return known, None
        result = post_json(
            f"{self.endpoint}/runs",
            self.run,
            headers=self._headers(),
            timeout_s=timeout_s,
            secrets=self._secrets(),
        )
        if result.invalid:
            self.last_error = result.error
            return None, Outcome.REJECTED
        if result.status is None:
            self.last_error = f"POST /runs: {result.error}"
            return None, Outcome.RETRY
        if 200 <= result.status < 300 and isinstance(result.body, dict) and result.body.get("id"):
            api_run_id = str(result.body["id"])
            self.store.update(self.local_run_id, api_run_id=api_run_id)
            if self.on_run_id is not None:
                self.on_run_id(api_run_id)
            return api_run_id, None
        self.last_error = f"POST /runs: HTTP {result.status}"
        if result.status in _RETRY_STATUSES or result.status >= 500:
            return None, Outcome.RETRY
        return None, Outcome.REJECTED

    def attempt(self, timeout_s: float) -> Outcome:
        api_run_id, failed = self._ensure_run(timeout_s)
        if failed is not None or api_run_id is None:
            return failed or Outcome.RETRY
        body = dict(self.body, run_id=api_run_id)
        result = post_json(
            f"{self.endpoint}/emissions",
            body,
            headers=self._headers(),
            timeout_s=timeout_s,
            secrets=self._secrets(),
        )
        if result.invalid:
            self.last_error = result.error
            return Outcome.REJECTED
        if result.status is None:
            self.last_error = f"POST /emissions: {result.error}"
            return Outcome.RETRY if result.not_sent else Outcome.UNCERTAIN
        if 200 <= result.status < 300:
            return Outcome.DELIVERED
        self.last_error = f"POST /emissions: HTTP {result.status}"
        if result.status in _RETRY_STATUSES:
            return Outcome.RETRY
        if result.status >= 500:
            return Outcome.UNCERTAIN
        return Outcome.REJECTED


class CodeCarbonAPIOutput(BaseOutput):
    """Posts the run's deltas to the CodeCarbon API, off the training thread.

    The positional parameters are CodeCarbon's ``CodeCarbonAPIOutput(endpoint_url,
    experiment_id, api_key, conf)``; ``conf`` is accepted and ignored (the run's description
    comes from the records).

    Args:
        endpoint_url: the API's base URL (CodeCarbon's default ``https://api.codecarbon.io``,
            :data:`DEFAULT_API_ENDPOINT`); kept as ``api_endpoint`` and ``endpoint_url``.
        experiment_id: the API experiment (UUID) the run belongs to.
        api_key: the project token, sent as ``x-api-token``; never stored.
        conf: ignored (CodeCarbon compatibility; None by default, where CodeCarbon requires it).
        output_dir: where the spool lives.
        timeout_s: timeout of each request (CodeCarbon's client uses 2 s).
        exit_timeout_s: the most exit() waits for the last deliveries.
        spool_max_bytes, spool_max_age_s: bounds of the spool.
        sender: the background sender (default: the process-wide one).

    Example:
        >>> out = CodeCarbonAPIOutput("http://localhost:8008",
        ...     experiment_id="5b0fa12a-3dd7-45bb-9766-cc326314d9f1", api_key="cpt_...",
        ...     output_dir="runs")
    """

    def __init__(
        self,
        endpoint_url: str,
        experiment_id: str,
        api_key: str | None,
        conf: Any = None,
        *,
        output_dir: str | os.PathLike[str] = ".",
        timeout_s: float = DEFAULT_API_TIMEOUT_S,
        exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        spool_max_age_s: float = DEFAULT_MAX_AGE_S,
        sender: Sender | None = None,
    ) -> None:
        if not isinstance(endpoint_url, str) or not endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                f"endpoint_url must be an http(s) URL, got {sanitize_url(str(endpoint_url))!r}"
            )
        if not experiment_id:
            raise ValueError(
                "experiment_id is required by the CodeCarbon API output (a UUID from "
                "`codecarbon config` or the dashboard)"
            )
        try:
            uuid.UUID(str(experiment_id))
        except ValueError:
            raise ValueError(
                f"experiment_id must be a UUID for the CodeCarbon API, got {experiment_id!r}"
            ) from None
        if not api_key:
            warn_once(
                "api-no-key",
                "CodeCarbon API output without api_key: the API will refuse "
                "the run (403 Missing project token)",
                log=logger,
            )
        self.api_endpoint = endpoint_url.rstrip("/")
        self.endpoint_url = self.api_endpoint  # CodeCarbon's attribute name
        self.__api_key = api_key  # name-mangled: not in vars() dumps
        self.experiment_id = str(experiment_id)
        self.timeout_s = float(timeout_s)
        self.exit_timeout_s = float(exit_timeout_s)
        self.spool = Spool(output_dir, max_bytes=spool_max_bytes, max_age_s=spool_max_age_s)
        self.store = ApiRunStore(self.spool, self.api_endpoint)
        self._sender = sender
        self._started = False
        self._lock = threading.Lock()
        #: The id of the run on the API (None until the API created it).
        self.api_run_id: str | None = None
        #: per local run: seconds of its deltas not yet posted (rounding to whole seconds)
        self._duration_carry_s: dict[str, float] = {}

    def __repr__(self) -> str:
        return (
            f"CodeCarbonAPIOutput(api_endpoint={sanitize_url(self.api_endpoint)!r}, "
            f"experiment_id={self.experiment_id!r}, api_key=***)"
        )

    @property
    def sender(self) -> Sender:
        # Not cached: after a fork the child gets a fresh process-wide sender.
        return self._sender if self._sender is not None else get_sender()

    def _on_run_id(self, api_run_id: str) -> None:
        self.api_run_id = api_run_id

    def _ensure_started(self) -> None:
        """On first use: queue what earlier runs left in the spool (read on the sender thread)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        label = f"api {sanitize_url(self.api_endpoint)}"
        self.sender.submit(
            CallJob(
                self._resend_spooled,
                queue_key=label,
                label=f"{label}: reading the spool",
                owner=self,
            )
        )

    def _resend_spooled(self) -> None:
        try:
            for entry in self.spool.claim("api", self.api_endpoint, skip=self.sender.known_paths()):
                self.sender.submit(
                    ApiEmissionJob.from_entry(
                        entry,
                        self.spool,
                        endpoint=self.api_endpoint,
                        api_key=self.__api_key,
                        owner=self,
                        timeout_s=self.timeout_s,
                        on_run_id=self._on_run_id,
                    )
                )
        except Exception as exc:  # noqa: BLE001 - never raise into training
            warn_once(
                "api-spool-read",
                "CodeCarbon API: could not read the spool %s: %s",
                self.spool.directory,
                describe_error(exc, [self.__api_key]),
                log=logger,
            )

    def _post(self, total: EmissionsData, delta: EmissionsData, final: bool) -> _DeferDelta | None:
        self._ensure_started()
        local_run_id = total.run_id
        with self._lock:
            state = self.store.get(local_run_id)
            if state.get("api_run_id") and self.api_run_id is None:
                self.api_run_id = state["api_run_id"]
            carry_s = self._duration_carry_s.pop(local_run_id, 0.0)
            seconds = float(delta.duration or 0.0) + carry_s
            if not final:
                # Whole seconds only, the fraction carried (>= 0): what is posted never runs
                # ahead of the run, so stop() can always settle within 1 s.
                duration_s = int(seconds)
                if duration_s < 1:
                    self._duration_carry_s[local_run_id] = carry_s
                    return DEFER_DELTA  # the API wants >= 1 s: it comes back in the next delta
                self._duration_carry_s[local_run_id] = seconds - duration_s
            else:
                duration_s = round(seconds)
                if duration_s < 1:
                    if delta.energy_consumed <= 0 and delta.emissions <= 0:
                        return None  # nothing left to post
                    duration_s = 1  # the API wants >= 1 s
            body = emission_body(total, delta, duration_s)
            extra: dict[str, Any] = {
                "local_run_id": local_run_id,
                "run": run_body(total, self.experiment_id),
            }
            try:
                entry: SpoolEntry | None = self.spool.put(
                    "api", self.api_endpoint, body, extra=extra
                )
            except OSError as exc:
                warn_once(
                    "api-spool-write",
                    "CodeCarbon API: could not write the spool in %s "
                    "(%s); the delta is sent without a durable copy",
                    self.spool.directory,
                    describe_error(exc),
                    log=logger,
                )
                entry = None
        if self.api_run_id:
            total.metadata["api_run_id"] = self.api_run_id
        job = ApiEmissionJob(
            self.api_endpoint,
            self.__api_key,
            body,
            local_run_id=local_run_id,
            run=extra["run"],
            store=self.store,
            on_run_id=self._on_run_id,
            spool=self.spool if entry else None,
            entry=entry,
            owner=self,
            timeout_s=self.timeout_s,
        )
        self.sender.submit(job)
        return None

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> _DeferDelta | None:
        return self._post(total, delta, final=False)

    def out(self, total: EmissionsData, delta: EmissionsData) -> _DeferDelta | None:
        # flush() and stop() both call out(): only stop() hands a final status.
        return self._post(total, delta, final=total.status != "running")

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait (bounded) for this output's pending deltas; True when all were settled."""
        return self.sender.drain(self, self.exit_timeout_s if timeout_s is None else timeout_s)

    def exit(self) -> None:
        if not self._started:
            return
        if not self.flush():
            warn_once(
                "api-exit-pending",
                "CodeCarbon API %s: %d delta(s) not delivered at exit; they stay in %s and "
                "are re-sent by the next tracker with this output_dir and endpoint (or "
                "resend_spool())",
                sanitize_url(self.api_endpoint),
                self.sender.pending(self),
                self.spool.directory,
                log=logger,
                category=CodeCarbonCallbacksWarning,
            )
