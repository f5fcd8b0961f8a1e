"""The one background sender of the network outputs: queues, retries with backoff, bounded exit.

It knows jobs only as :class:`Job` (attempt, settle); the outputs define their own kinds, and
:mod:`.resend` rebuilds spooled ones. Network outputs never send on the training thread. They
hand a :class:`Job` to the process-wide :class:`Sender` (a daemon thread started on first use,
restarted after ``fork``), which sends the jobs of each endpoint in order. When an endpoint
fails, its queue waits with exponential backoff (``backoff_initial_s`` doubling up to
``backoff_max_s``, with jitter) and tries again; other endpoints go on. Record jobs are in the
durable spool before they are queued, so a job the process could not deliver is re-sent by the
next tracker that uses the same output_dir.

``drain(owner, timeout_s)`` is what an output's ``exit()`` calls: it gives the owner's pending
jobs one last chance, with each request's timeout cut to what is left, and returns when they are
done or the time is up; it never waits longer than ``timeout_s`` (a request already in flight to
an endpoint that hangs is left to finish in the background).

How a failed request is classified (:class:`Outcome`):

- ``RETRY``: it surely did not arrive (connection refused, DNS failure, connect timeout) or the
  server says it did not process it (408, 429, 503); for the webhook, whose receivers drop
  duplicates by ``record_id``, also timeouts and other 5xx.
- ``UNCERTAIN``: it may have arrived (read timeout, connection reset after sending, 500/502/504)
  and the endpoint cannot drop duplicates (the CodeCarbon API): kept in the spool, marked.
- ``REJECTED``: the endpoint refused it (other 4xx, redirects): dropped with a warning.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.output._util import describe_error, warn_once

if TYPE_CHECKING:
    from codecarbon_callbacks_core.output.spool import Spool, SpoolEntry

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_BACKOFF_INITIAL_S = 1.0
DEFAULT_BACKOFF_MAX_S = 60.0
#: Drains that start within this window share its end: the webhook, API and Prometheus outputs
#: of one stop() wait for the network at most this long all together.
SHARED_EXIT_WINDOW_S = 5.0
#: A drain starting this soon after the previous one ended belongs to the same stop().
_BURST_GAP_S = 0.5
#: Even past the shared window, a drain gives a responsive endpoint this long.
_MIN_LAST_ATTEMPT_S = 0.25


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    UNCERTAIN = "uncertain"
    REJECTED = "rejected"


# --------------------------------------------------------------------------- HTTP


@dataclass
class HttpResult:
    """What one POST gave: a status (None when no response) and whether it surely did not arrive."""

    status: int | None
    body: Any = None
    not_sent: bool = False
    invalid: bool = False
    error: str = ""


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                stack.append(arg)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _surely_not_sent(exc: BaseException) -> bool:
    """True when the request never left: refused, DNS failure, connect timeout, TLS handshake."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(
        exc,
        (
            requests.exceptions.ConnectTimeout,
            requests.exceptions.SSLError,
            requests.exceptions.ProxyError,
        ),
    ):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        return any(isinstance(e, (NewConnectionError, ConnectionRefusedError)) for e in _chain(exc))
    return False


def post_json(
    url: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    secrets: Iterable[str | None] = (),
    auth: tuple[str, str] | None = None,
) -> HttpResult:
    """POST ``body`` as JSON on a fresh connection; never raises. Errors are secret-free."""
    import requests

    all_headers = {"Content-Type": "application/json", "Connection": "close"}
    all_headers.update(headers or {})
    timeout = max(0.05, float(timeout_s))
    try:
        response = requests.post(
            url,
            json=body,
            headers=all_headers,
            timeout=(timeout, timeout),
            allow_redirects=False,
            auth=auth,
        )
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        ValueError,
    ) as exc:
        return HttpResult(None, invalid=True, error=describe_error(exc, secrets))
    except Exception as exc:  # noqa: BLE001 - anything else is a maybe-sent too
        return HttpResult(None, not_sent=_surely_not_sent(exc), error=describe_error(exc, secrets))
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = response.text[:500]
    return HttpResult(response.status_code, body=parsed)


# --------------------------------------------------------------------------- jobs


class Job:
    """One thing to deliver. Subclasses implement ``attempt``; ``settle`` keeps the spool true."""

    kind = "job"
    #: the queue it belongs to: jobs of one queue go in order, share their backoff
    queue_key: str = ""
    #: what the job is for, to name it in warnings (secret-free)
    label: str = ""
    #: a state job (e.g. a Prometheus push) is dropped when a newer one of its queue waits
    state: bool = False

    def __init__(
        self,
        *,
        spool: Spool | None = None,
        entry: SpoolEntry | None = None,
        owner: object | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.spool = spool
        self.entry = entry
        self.owner = owner
        self.timeout_s = timeout_s
        self.last_error = ""

    def attempt(self, timeout_s: float) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def settle(self, outcome: Outcome) -> None:
        """Reflect ``outcome`` in the spool: remove when done, mark uncertain, count attempts."""
        if self.spool is None or self.entry is None:
            return
        try:
            if outcome in (Outcome.DELIVERED, Outcome.REJECTED):
                self.spool.remove(self.entry)
            else:
                self.entry.attempts += 1
                self.entry.last_error = self.last_error
                self.entry.uncertain = outcome is Outcome.UNCERTAIN
                self.spool.update(self.entry)
        except OSError as exc:
            warn_once(
                "spool-update-failed",
                "could not update spool entry %s: %s",
                self.entry.path,
                describe_error(exc),
                log=logger,
            )

    @property
    def spool_path(self) -> str | None:
        return self.entry.path if self.entry is not None else None

    def retry_note(self) -> str:
        """What happens to this job after a failed attempt, for the warning (no secrets).

        A job with a spool entry is kept there; one without (a spool write failed) lives in
        this process only. Jobs that are never spooled (state pushes) say what they do instead.
        """
        if self.entry is not None:
            return "kept in the spool, retrying in the background"
        return "retrying in the background while this process runs (no spool copy)"


class CallJob(Job):
    """Runs a function on the sender thread (e.g. reading the spool off the training thread).

    The function must not raise (it is called once; an exception counts as done).
    """

    kind = "call"

    def __init__(self, fn: Any, *, queue_key: str, label: str, owner: object | None) -> None:
        super().__init__(owner=owner)
        self.fn = fn
        self.queue_key = queue_key
        self.label = label

    def attempt(self, timeout_s: float) -> Outcome:
        try:
            self.fn()
        except Exception as exc:  # noqa: BLE001 - reported, never retried
            self.last_error = describe_error(exc)
            logger.debug("%s failed: %s", self.label, self.last_error)
        return Outcome.DELIVERED


# --------------------------------------------------------------------------- sender


@dataclass
class _Queue:
    key: str
    jobs: deque[Job] = field(default_factory=deque)
    failures: int = 0
    next_at: float = 0.0
    last_failure_at: float = 0.0


class Sender:
    """The background sender: one daemon thread, one ordered queue per endpoint.

    Args:
        backoff_initial_s: the first wait after a failure; doubles at each failure.
        backoff_max_s: the longest wait between two tries of an endpoint.
    """

    def __init__(
        self,
        *,
        backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
    ) -> None:
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._in_flight: Job | None = None
        self._thread: threading.Thread | None = None
        #: owners being drained -> deadline (monotonic)
        self._draining: dict[int, float] = {}
        self._exit_window_end = float("-inf")
        self._last_drain_end = float("-inf")
        self._stopped = False
        self.delivered = 0

    # -- public

    def submit(self, job: Job) -> None:
        """Queue ``job``; starts the thread if needed. Never blocks on the network."""
        with self._cond:
            queue = self._queues.setdefault(job.queue_key, _Queue(job.queue_key))
            queue.jobs.append(job)
            self._ensure_thread()
            self._cond.notify_all()

    def replace_pending(self, job: Job) -> None:
        """Queue ``job`` in place of its owner's not-yet-started jobs (state outputs)."""
        with self._cond:
            queue = self._queues.setdefault(job.queue_key, _Queue(job.queue_key))
            queue.jobs = deque(
                j for j in queue.jobs if j is self._in_flight or j.owner is not job.owner
            )
            queue.jobs.append(job)
            self._ensure_thread()
            self._cond.notify_all()

    def known_paths(self) -> set[str]:
        """Spool paths of the jobs queued or in flight in this process."""
        with self._cond:
            return {j.spool_path for q in self._queues.values() for j in q.jobs if j.spool_path}

    def pending(self, owner: object | None = None) -> int:
        with self._cond:
            return self._pending_locked(owner)

    def drain(self, owner: object | None, timeout_s: float) -> bool:
        """Give ``owner``'s pending jobs a last attempt; True when none is left. Bounded.

        Returns as soon as every queue holding the owner's jobs is empty of them or has failed
        again since the drain began (no point waiting for an endpoint that is down), and at the
        latest after ``timeout_s``, or at the end of the shared exit window
        (:data:`SHARED_EXIT_WINDOW_S`) that drains started shortly before opened.
        """
        started = time.monotonic()
        with self._cond:
            # Exits in a row (one stop() with several network outputs) share one window.
            in_burst = bool(self._draining) or started - self._last_drain_end < _BURST_GAP_S
            if not in_burst:
                self._exit_window_end = started + SHARED_EXIT_WINDOW_S
            deadline = min(
                started + max(0.0, timeout_s),
                max(self._exit_window_end, started + _MIN_LAST_ATTEMPT_S),
            )
            self._draining[id(owner)] = deadline
            for queue in self._queues.values():
                if any(j.owner is owner for j in queue.jobs):
                    queue.next_at = 0.0
            self._cond.notify_all()
            try:
                while True:
                    waiting = [
                        q
                        for q in self._queues.values()
                        if any(owner is None or j.owner is owner for j in q.jobs)
                    ]
                    if not waiting:
                        return True
                    if all(q.last_failure_at >= started for q in waiting):
                        return False
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._last_drain_end = time.monotonic()
                if self._draining.get(id(owner)) == deadline:
                    del self._draining[id(owner)]

    def forget(self, owner: object) -> int:
        """Drop ``owner``'s queued jobs from memory (they stay in the spool). Returns how many."""
        with self._cond:
            count = 0
            for queue in self._queues.values():
                keep = deque(j for j in queue.jobs if j.owner is not owner or j is self._in_flight)
                count += len(queue.jobs) - len(keep)
                queue.jobs = keep
            return count

    # -- internals

    def _pending_locked(self, owner: object | None) -> int:
        return sum(
            1 for q in self._queues.values() for j in q.jobs if owner is None or j.owner is owner
        )

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="codecarbon-callbacks-sender", daemon=True
            )
            self._thread.start()

    def _backoff(self, failures: int) -> float:
        # doublings capped: 2 ** failures overflows a float after ~1,000 failures (a long outage)
        doublings = min(max(0, failures - 1), 64)
        base = min(self.backoff_max_s, self.backoff_initial_s * (2**doublings))
        return base * random.uniform(0.8, 1.2)

    def _next_job(self) -> Job | None:
        """The head job of the first due queue (lock held), or None after waiting a bit.

        Queues holding jobs of an output that is exiting go first: its last attempt must not
        wait behind retries to other endpoints.
        """
        now = time.monotonic()
        soonest: float | None = None
        due: Job | None = None
        for queue in self._queues.values():
            if not queue.jobs:
                continue
            if queue.next_at <= now:
                if self._draining and any(id(j.owner) in self._draining for j in queue.jobs):
                    return queue.jobs[0]
                due = due or queue.jobs[0]
                continue
            soonest = queue.next_at if soonest is None else min(soonest, queue.next_at)
        if due is not None:
            return due
        wait = 5.0 if soonest is None else max(0.0, min(5.0, soonest - now))
        self._cond.wait(wait)
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                job = self._next_job()
                if job is None:
                    continue
                self._in_flight = job
                drain_deadline = self._draining.get(id(job.owner))
                drain_left = (drain_deadline - time.monotonic()) if drain_deadline else 0.0
            timeout_s = job.timeout_s
            if drain_left > 0:
                timeout_s = max(0.1, min(timeout_s, drain_left))
            logger.debug("attempt: %s (timeout %.2f s)", job.label, timeout_s)
            try:
                outcome = job.attempt(timeout_s)
            except Exception as exc:  # a bug in a job must not kill the sender
                job.last_error = describe_error(exc)
                outcome = Outcome.RETRY
                logger.debug("delivery job %s raised", job.label, exc_info=True)
            try:
                job.settle(outcome)
            except Exception:  # pragma: no cover - settle guards its own I/O
                logger.debug("settle failed", exc_info=True)
            logger.debug("outcome: %s -> %s", job.label, outcome.value)
            self._report(job, outcome)
            with self._cond:
                self._in_flight = None
                queue = self._queues.get(job.queue_key)
                if queue is not None:
                    if outcome is Outcome.RETRY:
                        queue.failures += 1
                        queue.last_failure_at = time.monotonic()
                        queue.next_at = queue.last_failure_at + self._backoff(queue.failures)
                        newer = any(
                            j is not job and j.state and j.owner is job.owner for j in queue.jobs
                        )
                        if job.state and newer and job in queue.jobs:
                            queue.jobs.remove(job)  # superseded: the newer state goes next
                    else:
                        if job in queue.jobs:
                            queue.jobs.remove(job)
                        queue.failures = 0
                        queue.next_at = 0.0
                        if outcome is Outcome.DELIVERED:
                            self.delivered += 1
                self._cond.notify_all()

    def _report(self, job: Job, outcome: Outcome) -> None:
        if outcome is Outcome.DELIVERED:
            logger.debug("delivered %s", job.label)
        elif outcome is Outcome.RETRY:
            warn_once(
                f"retry-{job.queue_key}",
                "%s: could not deliver (%s); %s",
                job.label,
                job.last_error,
                job.retry_note(),
                log=logger,
            )
        elif outcome is Outcome.UNCERTAIN:
            warn_once(
                f"uncertain-{job.queue_key}",
                "%s: the request may have arrived (%s); the API cannot drop duplicates, so "
                "it is kept in the spool marked uncertain and not re-sent automatically "
                "(resend_spool(..., include_uncertain=True) sends it)",
                job.label,
                job.last_error,
                log=logger,
            )
        else:
            warn_once(
                f"rejected-{job.queue_key}",
                "%s: the endpoint refused the record (%s); dropped",
                job.label,
                job.last_error,
                log=logger,
            )


_sender: Sender | None = None
_sender_lock = threading.Lock()


def get_sender() -> Sender:
    """The process-wide sender."""
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = Sender()
        return _sender


def _reset_after_fork() -> None:
    global _sender, _sender_lock
    _sender = None
    _sender_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


__all__ = ["HttpResult", "Job", "Outcome", "Sender", "get_sender", "post_json"]
