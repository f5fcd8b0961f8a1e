"""The durable spool of the record outputs (HTTP webhook, CodeCarbon API).

Every record a record output sends is first written here (write-ahead), then removed once the
endpoint has it, so nothing is lost when the endpoint is down, slow or the process dies. The spool
lives in ``<output_dir>/.codecarbon_spool/``, one JSON file per record:

``<kind>-<created_ns>-<record_id>@<owner>.json`` where ``owner`` is ``<pid>-<process start ms>``
of the process that currently delivers it. A process takes over an entry whose owner is dead (or
on another host... see below) by renaming the file to its own owner name: a rename is atomic, so
two processes never both take the same entry.

What is stored: the JSON body to send, the endpoint without credentials or query
(``sanitize_url``), the record id, attempts and whether an earlier attempt may have arrived
(``uncertain``). Never a secret: the API key, tokens and passwords come from the configuration of
the tracker (or the arguments of :func:`~.resend.resend_spool`) at send time.

Bounds: ``max_bytes`` (default 10 MiB) and ``max_age_s`` (default 7 days); the oldest entries go
first, with a warning that says how many were dropped.

Entries are re-sent by the next tracker that uses the same ``output_dir`` and endpoint, or on
demand with :func:`~.resend.resend_spool`. This module is storage only: it never sends. API
entries marked ``uncertain`` (a request timed out after it was sent: the API has no idempotency
key, so it may have been stored) are kept but not re-sent unless ``include_uncertain=True``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from codecarbon_callbacks_core._shared import write_json_atomic
from codecarbon_callbacks_core.output._util import describe_error, sanitize_url, warn_once

logger = logging.getLogger(__name__)

SPOOL_DIRNAME = ".codecarbon_spool"
SPOOL_VERSION = 1
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
#: put() checks the bounds at most this often (a check lists the folder).
PRUNE_INTERVAL_S = 2.0

_NAME_RE = re.compile(
    r"^(?P<kind>[a-z]+)-(?P<created_ns>\d+)-(?P<record_id>[0-9A-Za-z_.:-]+?)@(?P<owner>[0-9a-f-]+)\.json$"
)

_process_start_ms: int | None = None


#: An entry owned by a process on another host (shared output_dir) is taken over when it has
#: not been touched for this long (a live sender rewrites it at every attempt).
FOREIGN_OWNER_LEASE_S = 15 * 60.0


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


_owner_cache: tuple[int, str] | None = None


def _my_owner() -> str:
    """``<host crc32>-<pid>-<process start ms>`` (hex): unique even when pids are reused."""
    global _process_start_ms, _owner_cache
    pid = os.getpid()
    if _owner_cache is not None and _owner_cache[0] == pid:
        return _owner_cache[1]
    start = _process_create_ms(pid)
    if start is None:
        if _process_start_ms is None:
            _process_start_ms = int(time.time() * 1000)
        start = _process_start_ms
    owner = f"{_host_tag()}-{pid:x}-{start:x}"
    _owner_cache = (pid, owner)
    return owner


def _process_create_ms(pid: int) -> int | None:
    try:
        import psutil

        return int(psutil.Process(pid).create_time() * 1000)
    except Exception:  # noqa: BLE001 - psutil missing or process gone
        return None


def _owner_alive(owner: str, path: str) -> bool:
    if owner == _my_owner():
        return True
    try:
        host, pid_hex, start_hex = owner.split("-")
        pid, start = int(pid_hex, 16), int(start_hex, 16)
    except ValueError:
        return False
    if host != _host_tag():
        try:
            return time.time() - os.path.getmtime(path) < FOREIGN_OWNER_LEASE_S
        except OSError:
            return False
    created = _process_create_ms(pid)
    # Same pid and the same start time (to the 10 ms psutil gives on Linux): the owner still runs.
    return created is not None and abs(created - start) <= 20


@dataclass
class SpoolEntry:
    """One spooled record. ``body`` is what is sent; ``endpoint`` is sanitised."""

    path: str
    kind: str
    endpoint: str
    record_id: str
    created_s: float
    body: dict[str, Any]
    attempts: int = 0
    uncertain: bool = False
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        match = _NAME_RE.match(os.path.basename(self.path))
        return match.group("owner") if match else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "spool_version": SPOOL_VERSION,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "record_id": self.record_id,
            "created_s": self.created_s,
            "attempts": self.attempts,
            "uncertain": self.uncertain,
            "last_error": self.last_error,
            "extra": self.extra,
            "body": self.body,
        }


class Spool:
    """The spool folder of one ``output_dir``.

    Args:
        output_dir: the tracker's output_dir; the spool is ``output_dir/.codecarbon_spool``.
        max_bytes: the most the spool may hold; oldest entries are dropped beyond it.
        max_age_s: entries older than this are dropped.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
    ) -> None:
        if max_bytes is None or int(max_bytes) <= 0:
            raise ValueError(
                f"spool_max_bytes must be a positive number of bytes, got {max_bytes!r}"
            )
        if max_age_s is None or float(max_age_s) <= 0:
            raise ValueError(
                f"spool_max_age_s must be a positive number of seconds, got {max_age_s!r}"
            )
        self.output_dir = os.fspath(output_dir)
        self.directory = os.path.join(self.output_dir, SPOOL_DIRNAME)
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_s)
        self._lock = threading.Lock()
        self._last_prune_s = float("-inf")

    # ------------------------------------------------------------------ writing

    def _write(self, path: str, data: dict[str, Any]) -> None:
        write_json_atomic(
            path, data, fsync=True, separators=(",", ":"), allow_nan=False, default=str
        )

    def put(
        self,
        kind: str,
        endpoint: str,
        body: dict[str, Any],
        *,
        record_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> SpoolEntry:
        """Write a new entry owned by this process (raises OSError when the disk refuses)."""
        record_id = record_id or str(uuid.uuid4())
        created_ns = time.time_ns()
        name = f"{kind}-{created_ns}-{record_id}@{_my_owner()}.json"
        entry = SpoolEntry(
            path=os.path.join(self.directory, name),
            kind=kind,
            endpoint=sanitize_url(endpoint),
            record_id=record_id,
            created_s=created_ns / 1e9,
            body=body,
            extra=dict(extra or {}),
        )
        with self._lock:
            self._write(entry.path, entry.to_json())
            due = time.monotonic() - self._last_prune_s >= PRUNE_INTERVAL_S
        if due:
            self.prune()
        return entry

    def update(self, entry: SpoolEntry) -> None:
        """Rewrite ``entry`` (attempts, uncertain, last_error) in place; skip it if gone."""
        with self._lock:
            if os.path.exists(entry.path):
                self._write(entry.path, entry.to_json())

    def remove(self, entry: SpoolEntry) -> None:
        """Delete a delivered (or rejected) entry."""
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ reading

    def _names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.directory) if n.endswith(".json"))
        except FileNotFoundError:
            return []

    def _load(self, name: str) -> SpoolEntry | None:
        path = os.path.join(self.directory, name)
        match = _NAME_RE.match(name)
        if match is None:
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if data.get("spool_version") != SPOOL_VERSION:
                warn_once(
                    f"spool-version-{name}",
                    "spool entry %s has an unknown version; kept, not sent",
                    path,
                    log=logger,
                )
                return None
            return SpoolEntry(
                path=path,
                kind=data["kind"],
                endpoint=data["endpoint"],
                record_id=data["record_id"],
                created_s=float(data["created_s"]),
                body=data["body"],
                attempts=int(data.get("attempts", 0)),
                uncertain=bool(data.get("uncertain", False)),
                last_error=str(data.get("last_error", "")),
                extra=dict(data.get("extra") or {}),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warn_once(
                f"spool-corrupt-{name}",
                "spool entry %s is unreadable (%s); it is left in place and skipped",
                path,
                describe_error(exc),
                log=logger,
            )
            return None

    def entries(self, kind: str | None = None, endpoint: str | None = None) -> list[SpoolEntry]:
        """All readable entries (oldest first), optionally of one kind and endpoint."""
        wanted = sanitize_url(endpoint) if endpoint else None
        out = []
        for name in self._names():
            match = _NAME_RE.match(name)
            if match is None or (kind and match.group("kind") != kind):
                continue
            entry = self._load(name)
            if entry is None or (wanted and entry.endpoint != wanted):
                continue
            out.append(entry)
        return out

    def unreadable(self) -> list[str]:
        """Paths of the entry files that cannot be read (corrupt JSON, missing fields, a spool
        version this code does not know); they are left in place, never sent nor removed."""
        found = []
        for name in self._names():
            if _NAME_RE.match(name) is None:
                continue  # not an entry: api_runs.json, a temporary file being written
            path = os.path.join(self.directory, name)
            if self._load(name) is None and os.path.exists(path):
                found.append(path)
        return found

    def claim(
        self,
        kind: str,
        endpoint: str,
        *,
        skip: set[str] | None = None,
        include_uncertain: bool = False,
        include_own: bool = False,
    ) -> list[SpoolEntry]:
        """Take over the entries of ``kind``/``endpoint`` whose owner process is gone: rename
        each to our owner name; oldest first.

        Entries of this process are left alone (its sender has them) unless ``include_own``
        (on-demand re-send), and even then those in ``skip`` (queued in the sender) are.
        """
        self.prune()
        skip = skip or set()
        mine = _my_owner()
        claimed = []
        for entry in self.entries(kind, endpoint):
            if entry.path in skip or (entry.uncertain and not include_uncertain):
                continue
            owner = entry.owner
            if owner == mine and not include_own:
                continue
            if owner != mine and _owner_alive(owner, entry.path):
                continue
            match = _NAME_RE.match(os.path.basename(entry.path))
            assert match is not None
            new_name = (
                f"{match.group('kind')}-{match.group('created_ns')}-{entry.record_id}@{mine}.json"
            )
            new_path = os.path.join(self.directory, new_name)
            if new_path != entry.path:
                try:
                    os.rename(entry.path, new_path)
                except FileNotFoundError:  # another process took it first
                    continue
                entry.path = new_path
            claimed.append(entry)
        return claimed

    # ------------------------------------------------------------------ bounds

    def prune(self, now_s: float | None = None) -> int:
        """Drop entries past ``max_age_s``, then the oldest while over ``max_bytes``."""
        now_s = time.time() if now_s is None else now_s
        self._last_prune_s = time.monotonic()
        sized: list[tuple[int, str, int]] = []
        dropped_age = dropped_size = 0
        for name in self._names():
            match = _NAME_RE.match(name)
            if match is None:
                continue
            path = os.path.join(self.directory, name)
            created_ns = int(match.group("created_ns"))
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            if now_s - created_ns / 1e9 > self.max_age_s:
                try:
                    os.unlink(path)
                    dropped_age += 1
                except OSError:
                    pass
                continue
            sized.append((created_ns, path, size))
        total = sum(size for _, _, size in sized)
        for _, path, size in sorted(sized):
            if total <= self.max_bytes:
                break
            try:
                os.unlink(path)
                dropped_size += 1
                total -= size
            except OSError:
                pass
        if dropped_age or dropped_size:
            warn_once(
                "spool-pruned",
                "spool %s: dropped %d undelivered record(s) older than %.0f s and %d beyond its "
                "size bound of %d bytes (set spool_max_age_s / spool_max_bytes to keep more)",
                self.directory,
                dropped_age,
                self.max_age_s,
                dropped_size,
                self.max_bytes,
                log=logger,
            )
        return dropped_age + dropped_size

    def size_bytes(self) -> int:
        total = 0
        for name in self._names():
            try:
                total += os.path.getsize(os.path.join(self.directory, name))
            except OSError:
                pass
        return total


__all__ = ["SPOOL_DIRNAME", "Spool", "SpoolEntry"]
