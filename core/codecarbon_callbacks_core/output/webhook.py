"""HTTP webhook output: each record as a JSON POST to ``emissions_endpoint``.

Like CodeCarbon's ``HTTPOutput``, the run's record is posted on flush/stop (the body has
CodeCarbon's field names at the top level). Ours adds:

- ``schema_version`` (:data:`WEBHOOK_SCHEMA_VERSION`) and ``record_id`` (a UUID that stays the
  same across retries and re-sends: a receiver drops a record whose id it has seen), and
  ``record_type`` (``run`` or ``window``);
- with ``webhook_windows=True``, every closed window (epoch, phase, task...) too;
- delivery in the background with retries, and a durable spool for what could not be delivered
  (see :mod:`codecarbon_callbacks_core.output.sender` and
  :mod:`~codecarbon_callbacks_core.output.spool`).

Any 2xx answer counts as delivered (CodeCarbon's receivers answer 201).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output._util import (
    describe_error,
    record_to_dict,
    sanitize_url,
    url_secrets,
    warn_once,
)
from codecarbon_callbacks_core.output.base import BaseOutput
from codecarbon_callbacks_core.output.sender import (
    DEFAULT_TIMEOUT_S,
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
    from codecarbon_callbacks_core.records import EmissionsData, WindowRecord

logger = logging.getLogger(__name__)

WEBHOOK_SCHEMA_VERSION = "codecarbon_callbacks.webhook.v1"
#: How long exit() waits for the last deliveries (stop() never waits longer on the network).
DEFAULT_EXIT_TIMEOUT_S = 3.0


class WebhookJob(Job):
    """POST one webhook record; any answer but 2xx/4xx, or no answer, is retried."""

    kind = "webhook"

    def __init__(self, url: str, payload: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.payload = payload
        self.queue_key = f"webhook {sanitize_url(url)}"
        self.label = f"webhook {sanitize_url(url)} record {payload.get('record_id')}"

    def attempt(self, timeout_s: float) -> Outcome:
        result = post_json(
            self.url, self.payload, timeout_s=timeout_s, secrets=url_secrets(self.url)
        )
        if result.invalid:
            self.last_error = result.error
            return Outcome.REJECTED
        if result.status is None:
            # No answer: safe to resend either way, receivers drop duplicates by record_id.
            self.last_error = result.error
            return Outcome.RETRY
        if 200 <= result.status < 300:
            return Outcome.DELIVERED
        self.last_error = f"HTTP {result.status}"
        if result.status in (408, 425, 429) or result.status >= 500:
            return Outcome.RETRY
        return Outcome.REJECTED


class WebhookOutput(BaseOutput):
    """Posts records to an HTTP endpoint, reliably and off the training thread.

    Args:
        endpoint_url: the URL to POST to (CodeCarbon's ``emissions_endpoint``).
        output_dir: where the spool lives (``output_dir/.codecarbon_spool``).
        windows: also post every closed window (``webhook_windows``).
        timeout_s: timeout of each request.
        exit_timeout_s: the most exit() waits for the last deliveries.
        spool_max_bytes, spool_max_age_s: bounds of the spool.
        sender: the background sender (default: the process-wide one).

    Example:
        >>> out = WebhookOutput("http://localhost:8000/emissions", output_dir="runs")
        >>> # EmissionsTracker(output_handlers=[out]) or emissions_endpoint=... in the tracker
    """

    def __init__(
        self,
        endpoint_url: str,
        output_dir: str | os.PathLike[str] = ".",
        *,
        windows: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        spool_max_age_s: float = DEFAULT_MAX_AGE_S,
        sender: Sender | None = None,
    ) -> None:
        if not isinstance(endpoint_url, str) or urlsplit(endpoint_url).scheme not in (
            "http",
            "https",
        ):
            raise ValueError(
                f"emissions_endpoint must be an http:// or https:// URL, got "
                f"{sanitize_url(str(endpoint_url))!r}"
            )
        self.endpoint_url = endpoint_url
        self.windows = bool(windows)
        self.timeout_s = float(timeout_s)
        self.exit_timeout_s = float(exit_timeout_s)
        self.spool = Spool(output_dir, max_bytes=spool_max_bytes, max_age_s=spool_max_age_s)
        self._sender = sender
        self._started = False
        self._start_lock = threading.Lock()

    @property
    def sender(self) -> Sender:
        # Not cached: after a fork the child gets a fresh process-wide sender.
        return self._sender if self._sender is not None else get_sender()

    def _ensure_started(self) -> None:
        """On first use: queue what earlier runs left in the spool (read on the sender thread)."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        label = f"webhook {sanitize_url(self.endpoint_url)}"
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
            for entry in self.spool.claim(
                "webhook", self.endpoint_url, skip=self.sender.known_paths()
            ):
                self.sender.submit(self._job_for(entry))
        except Exception as exc:  # noqa: BLE001 - never raise into training
            warn_once(
                "webhook-spool-read",
                "webhook: could not read the spool %s: %s",
                self.spool.directory,
                describe_error(exc, url_secrets(self.endpoint_url)),
                log=logger,
            )

    def _job_for(self, entry: SpoolEntry) -> Job:
        return WebhookJob(
            self.endpoint_url,
            entry.body,
            spool=self.spool,
            entry=entry,
            owner=self,
            timeout_s=self.timeout_s,
        )

    def payload(self, record: EmissionsData, record_type: str) -> dict[str, Any]:
        """The JSON body: schema_version, record_id, record_type, then the record's fields."""
        return {
            "schema_version": WEBHOOK_SCHEMA_VERSION,
            "record_id": str(uuid.uuid4()),
            "record_type": record_type,
            **record_to_dict(record),
        }

    def _send(self, record: EmissionsData, record_type: str) -> None:
        self._ensure_started()
        payload = self.payload(record, record_type)
        try:
            entry = self.spool.put(
                "webhook", self.endpoint_url, payload, record_id=payload["record_id"]
            )
            job: Job = self._job_for(entry)
        except Exception as exc:  # noqa: BLE001 - disk full: deliver from memory
            warn_once(
                "webhook-spool-write",
                "webhook: could not write the spool in %s (%s); "
                "the record is sent without a durable copy",
                self.spool.directory,
                describe_error(exc),
                log=logger,
            )
            job = WebhookJob(self.endpoint_url, payload, owner=self, timeout_s=self.timeout_s)
        self.sender.submit(job)

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._send(total, "run")

    def window_out(self, record: WindowRecord) -> None:
        if self.windows:
            self._send(record, "window")

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait (bounded) until this output's records are delivered; True when all are."""
        return self.sender.drain(self, self.exit_timeout_s if timeout_s is None else timeout_s)

    def exit(self) -> None:
        if not self._started:
            return
        if not self.flush():
            left = self.sender.pending(self)
            warn_once(
                "webhook-exit-pending",
                "webhook %s: %d record(s) not delivered at exit; they stay in %s and are "
                "re-sent by the next tracker with this output_dir and endpoint (or "
                "resend_spool())",
                sanitize_url(self.endpoint_url),
                left,
                self.spool.directory,
                log=logger,
                category=CodeCarbonCallbacksWarning,
            )
