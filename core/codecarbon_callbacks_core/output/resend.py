"""Re-sending what the spool holds: spooled entries rebuilt into jobs of their own kind.

The one place that knows every kind of spooled record (``webhook``, ``api``) and the sender
together: :mod:`.spool` is storage only and :mod:`.sender` knows jobs only in general. Used by the
webhook and API outputs for the entries a previous process left, by ``resend_spool()`` (a core-only
user's way to deliver them), and by the ``codecarbon-callbacks resend`` command.
"""

from __future__ import annotations

import os

from codecarbon_callbacks_core.output.api import ApiEmissionJob
from codecarbon_callbacks_core.output.sender import DEFAULT_TIMEOUT_S, Job, Outcome, get_sender
from codecarbon_callbacks_core.output.spool import Spool, SpoolEntry
from codecarbon_callbacks_core.output.webhook import WebhookJob


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

    Webhook entries go to ``emissions_endpoint``, CodeCarbon API entries to ``api_endpoint``
    with ``api_key`` (never stored in the spool). Entries of other endpoints, and entries owned
    by another running process, are left alone. Each entry is tried once.

    Args:
        output_dir: the tracker's output_dir.
        emissions_endpoint: the webhook URL the records were meant for.
        api_endpoint: the CodeCarbon API URL the records were meant for.
        api_key: the API token (x-api-token).
        include_uncertain: also re-send API records whose earlier attempt timed out after being
            sent (they may be stored twice).
        timeout_s: the timeout of each request.

    Returns:
        Counts: ``delivered``, ``failed`` (kept for later), ``uncertain`` (kept, not re-sent
        automatically), ``rejected`` (the endpoint refused them; removed).

    Example:
        >>> resend_spool("runs/", emissions_endpoint="http://localhost:8000/e")  # doctest: +SKIP
        {'delivered': 3, 'failed': 0, 'uncertain': 0, 'rejected': 0}
    """
    spool = Spool(output_dir)
    counts = {"delivered": 0, "failed": 0, "uncertain": 0, "rejected": 0}
    targets = []
    if emissions_endpoint:
        targets.append(("webhook", emissions_endpoint))
    if api_endpoint:
        targets.append(("api", api_endpoint))
    for kind, endpoint in targets:
        in_flight = get_sender().known_paths()
        for entry in spool.claim(
            kind, endpoint, include_uncertain=include_uncertain, include_own=True, skip=in_flight
        ):
            job = job_from_entry(entry, spool, endpoint=endpoint, api_key=api_key)
            outcome = job.attempt(timeout_s)
            job.settle(outcome)
            key = {
                Outcome.DELIVERED: "delivered",
                Outcome.RETRY: "failed",
                Outcome.UNCERTAIN: "uncertain",
                Outcome.REJECTED: "rejected",
            }[outcome]
            counts[key] += 1
    return counts


__all__ = ["job_from_entry", "resend_spool"]
