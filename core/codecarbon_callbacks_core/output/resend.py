"""Re-sending what the spool holds: spooled entries rebuilt into jobs of their own kind.

The one place that knows every kind of spooled record (``webhook``, ``api``) and the sender
together: :mod:`.spool` is storage only and :mod:`.sender` knows jobs only in general. Used by the
webhook and API outputs for the entries a previous process left, by ``resend_spool()`` (a core-only
user's way to deliver them), and by the ``codecarbon-callbacks resend`` command.

An endpoint given here selects the entries spooled for it (compared without credentials or
query); it never redirects entries meant for another endpoint. Credentials in it (a webhook URL's
``user:password@`` or query token, the API key) are used for the requests only: the spool stores
the endpoint without them, and messages name it the same way.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass

from codecarbon_callbacks_core.output._util import sanitize_url
from codecarbon_callbacks_core.output.api import ApiEmissionJob
from codecarbon_callbacks_core.output.sender import DEFAULT_TIMEOUT_S, Job, Outcome, get_sender
from codecarbon_callbacks_core.output.spool import Spool, SpoolEntry
from codecarbon_callbacks_core.output.webhook import WebhookJob

logger = logging.getLogger(__name__)

#: HTTP statuses that refuse the credentials, not the record: the record is kept, never dropped.
AUTH_STATUSES = (401, 403)
#: How the jobs write an HTTP status in ``last_error`` ("HTTP 401", "POST /runs: HTTP 403").
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")

_COUNT_KEYS = ("delivered", "failed", "uncertain", "rejected", "unauthorized")


@dataclass
class ResendResult:
    """What one re-send to one endpoint did, in records.

    Attributes:
        kind: ``webhook`` or ``api``.
        endpoint: the endpoint, without credentials or query (safe to print).
        delivered: accepted by the endpoint; removed from the spool.
        failed: not delivered (endpoint down, 5xx...); kept for later.
        uncertain: may have arrived (API only); kept, marked, re-sent only on demand.
        rejected: refused by the endpoint (4xx other than 401/403); removed.
        unauthorized: the endpoint refused the credentials (HTTP 401/403), or the records after
            such a refusal, not tried; all kept in the spool.
        auth_status: the refusing status (401 or 403), 0 when none.
        last_error: the last error, secret-free.
    """

    kind: str
    endpoint: str
    delivered: int = 0
    failed: int = 0
    uncertain: int = 0
    rejected: int = 0
    unauthorized: int = 0
    auth_status: int = 0
    last_error: str = ""

    def counts(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in _COUNT_KEYS}


def job_from_entry(
    entry: SpoolEntry,
    spool: Spool,
    *,
    endpoint: str,
    api_key: str | None = None,
    owner: object | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Job:
    """Rebuild the job of a spooled entry; ``endpoint`` and ``api_key`` come from the config."""
    if entry.kind == "webhook":
        return WebhookJob(
            endpoint, entry.body, spool=spool, entry=entry, owner=owner, timeout_s=timeout_s
        )
    if entry.kind == "api":
        return ApiEmissionJob.from_entry(
            entry, spool, endpoint=endpoint, api_key=api_key, owner=owner, timeout_s=timeout_s
        )
    raise ValueError(f"unknown spool entry kind {entry.kind!r}")


def _auth_status(job: Job) -> int:
    match = _HTTP_STATUS.search(job.last_error)
    status = int(match.group(1)) if match else 0
    return status if status in AUTH_STATUSES else 0


def _keep(spool: Spool, entry: SpoolEntry, error: str) -> None:
    """Count the attempt and keep the entry as it is (its ``uncertain`` mark included)."""
    entry.attempts += 1
    entry.last_error = error
    try:
        spool.update(entry)
    except OSError as exc:  # the entry stays as it was: nothing is lost
        logger.debug("could not update spool entry %s: %s", entry.path, exc)


def resend_endpoint(
    spool: Spool,
    kind: str,
    endpoint: str,
    *,
    api_key: str | None = None,
    include_uncertain: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ResendResult:
    """Send now the entries of ``kind`` spooled for ``endpoint``, each once; blocks.

    ``endpoint`` selects the entries spooled for it (compared without credentials or query) and
    is the URL posted to, credentials included; it never redirects entries spooled for another
    endpoint. After an HTTP 401 or 403 the remaining entries are not tried: every one of them
    is kept in the spool (counted ``unauthorized``), never dropped.

    Args:
        spool: the spool to read.
        kind: ``webhook`` or ``api``.
        endpoint: the webhook URL or the CodeCarbon API URL, with its credentials if any.
        api_key: the API token (x-api-token) for ``api`` entries.
        include_uncertain: also re-send API entries whose earlier attempt may have arrived.
        timeout_s: the timeout of each request, seconds.

    Returns:
        The counts, with the endpoint named without credentials.
    """
    result = ResendResult(kind, sanitize_url(endpoint))
    in_flight = get_sender().known_paths()
    claimed = spool.claim(
        kind, endpoint, include_uncertain=include_uncertain, include_own=True, skip=in_flight
    )
    for entry in claimed:
        if result.auth_status:  # the same credentials would be refused again
            result.unauthorized += 1
            continue
        job = job_from_entry(entry, spool, endpoint=endpoint, api_key=api_key, timeout_s=timeout_s)
        outcome = job.attempt(timeout_s)
        if job.last_error:
            result.last_error = job.last_error
        status = _auth_status(job) if outcome is Outcome.REJECTED else 0
        if status:
            result.auth_status = status
            result.unauthorized += 1
            _keep(spool, entry, job.last_error)
            continue
        job.settle(outcome)
        key = {
            Outcome.DELIVERED: "delivered",
            Outcome.RETRY: "failed",
            Outcome.UNCERTAIN: "uncertain",
            Outcome.REJECTED: "rejected",
        }[outcome]
        setattr(result, key, getattr(result, key) + 1)
    return result


def left_by_endpoint(spool: Spool, targets: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Readable entries spooled for an endpoint not in ``targets`` ((kind, url) pairs), by
    (kind, endpoint without credentials)."""
    wanted = {(kind, sanitize_url(url)) for kind, url in targets}
    left = Counter((e.kind, e.endpoint) for e in spool.entries())
    return {key: n for key, n in sorted(left.items()) if key not in wanted}


def resend_spool(
    output_dir: str | os.PathLike[str] = ".",
    *,
    emissions_endpoint: str | None = None,
    api_endpoint: str | None = None,
    api_key: str | None = None,
    include_uncertain: bool = False,
    timeout_s: float = 5.0,
) -> dict[str, int]:
    """Send now what the spool of ``output_dir`` holds for the given endpoints; blocks.

    Webhook entries spooled for ``emissions_endpoint`` go to it, CodeCarbon API entries spooled
    for ``api_endpoint`` go to it with ``api_key``. An endpoint selects entries, compared
    without credentials or query; it never redirects entries spooled for another endpoint:
    those are left, counted in ``other_endpoints`` and named in a warning. Entries owned by
    another running process are left alone. Each entry is tried once. Credentials (a URL's
    ``user:password@`` or query, ``api_key``) are used for the requests, never stored or logged.
    HTTP 401 and 403 keep the records (``unauthorized``), never drop them.

    Args:
        output_dir: the tracker's output_dir.
        emissions_endpoint: the webhook URL the records were meant for, with its credentials.
        api_endpoint: the CodeCarbon API URL the records were meant for.
        api_key: the API token (x-api-token).
        include_uncertain: also re-send API records whose earlier attempt timed out after being
            sent (they may be stored twice).
        timeout_s: the timeout of each request, seconds.

    Returns:
        Counts of records: ``delivered`` (removed), ``failed`` (kept for later), ``uncertain``
        (kept, not re-sent automatically), ``rejected`` (the endpoint refused them; removed),
        ``unauthorized`` (HTTP 401/403: kept; give the credentials), ``other_endpoints`` (kept:
        spooled for endpoints not given) and ``unreadable`` (spool files that cannot be read;
        left in place).

    Example:
        >>> resend_spool("runs/", emissions_endpoint="http://localhost:8000/e")  # doctest: +SKIP
        {'delivered': 3, 'failed': 0, 'uncertain': 0, 'rejected': 0, 'unauthorized': 0,
         'other_endpoints': 0, 'unreadable': 0}
    """
    spool = Spool(output_dir)
    counts = dict.fromkeys(_COUNT_KEYS, 0)
    targets = []
    if emissions_endpoint:
        targets.append(("webhook", emissions_endpoint))
    if api_endpoint:
        targets.append(("api", api_endpoint))
    for kind, endpoint in targets:
        result = resend_endpoint(
            spool,
            kind,
            endpoint,
            api_key=api_key,
            include_uncertain=include_uncertain,
            timeout_s=timeout_s,
        )
        for key, value in result.counts().items():
            counts[key] += value
        if result.unauthorized:
            _warn_unauthorized(kind, result, spool)
    left = left_by_endpoint(spool, targets)
    counts["other_endpoints"] = sum(left.values())
    if left:
        logger.warning(
            "%d record(s) in %s are spooled for endpoints not given, left in place: %s",
            counts["other_endpoints"],
            spool.directory,
            ", ".join(f"{kind} {endpoint} ({n})" for (kind, endpoint), n in left.items()),
        )
    counts["unreadable"] = len(spool.unreadable())
    return counts


def _warn_unauthorized(kind: str, result: ResendResult, spool: Spool) -> None:
    """Say that ``kind``'s endpoint refused the credentials, and how to pass them."""
    how = "the URL with its credentials as emissions_endpoint" if kind == "webhook" else "api_key"
    logger.warning(
        "%s %s refused the credentials (HTTP %d): %d record(s) kept in %s; pass %s "
        "(used for the request, never stored)",
        kind,
        result.endpoint,
        result.auth_status,
        result.unauthorized,
        spool.directory,
        how,
    )


__all__ = [
    "AUTH_STATUSES",
    "ResendResult",
    "job_from_entry",
    "left_by_endpoint",
    "resend_endpoint",
    "resend_spool",
]
