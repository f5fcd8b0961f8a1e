"""CSV output: ``emissions.csv`` (runs) and ``emissions_windows.csv`` (epochs, phases, tasks).

The run file has CodeCarbon 3.3's columns in its order, then a fixed set of ours and one
``metadata`` JSON column, so the header never changes with configuration or hardware.

- A file whose header is ours is appended to.
- A file CodeCarbon wrote (its exact header) is appended to in its own columns, so a user who
  switches keeps one file.
- A file with any other header is renamed to ``<name>.<timestamp>.bak`` and a new one started:
  never overwritten.
- Appending always starts on a fresh line, whatever the file ends with (a file edited by hand or
  written by another tool may lack its last newline).
- Writers lock the data file itself (no side ``*.lock`` file), so several processes appending to
  one file never interleave rows.
- ``on_csv_write="update"`` replaces the run's row (same run_id) instead of appending.
- A text cell that a spreadsheet would run as a formula (it begins with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return) is written with a leading ``'`` (OWASP's advice against CSV
  injection); so is a text that already begins with ``'``. :func:`read_emissions` removes exactly
  that prefix. Numeric columns are never changed.

Run rows and window rows take one path: a bounded in-memory backlog, written by one background
thread per output in batches (one write and one ``fsync`` per file per batch):

- A row that cannot be written (folder deleted, disk full, read-only file system, file locked)
  stays in the backlog, in order, and is retried (every 0.5-5 s, and at once when a run row is
  written or the output stops); the folder is created again when it is missing. A write cut off
  midway is truncated back to the last complete row, so no fragment and no duplicate stays in
  the file. Each fault episode gives one :class:`~codecarbon_callbacks_core.errors.
  CodeCarbonCallbacksWarning`.
- The backlog holds at most ``max_backlog_rows`` rows. Beyond that the oldest row is dropped, a
  warning says so once per episode, and the next row written to that file carries the number of
  rows dropped before it in its metadata (``"csv_rows_dropped"``).
- ``exit()`` (the tracker's stop()) and interpreter exit write the backlog, within a bound; rows
  that still cannot be written go to a fallback file with the same columns under the user's
  cache folder (``$XDG_CACHE_HOME/codecarbon-callbacks/unwritten/...``, else
  ``~/.cache/...``), and a warning names it.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output.base import BaseOutput
from codecarbon_callbacks_core.output.csv_file import (
    TEXT_COLUMNS,
    CsvFile,
    cache_dir,
    fallback_files,
    fallback_path,
    guard_cell,
    restore_fallback,
    unguard_cell,
)
from codecarbon_callbacks_core.output.csv_read import read_emissions
from codecarbon_callbacks_core.output.csv_tasks import has_valid_headers, write_task_file
from codecarbon_callbacks_core.records import (
    RUN_CSV_COLUMNS,
    WINDOW_CSV_COLUMNS,
    EmissionsData,
    WindowRecord,
)

logger = logging.getLogger(__name__)

#: rows held in memory at most while the file cannot be written (per output, both files)
DEFAULT_MAX_BACKLOG_ROWS = 10_000
#: rows written (and fsync'd) at once at most
BATCH_MAX_ROWS = 2_000
#: how long exit() and interpreter exit wait for the backlog before the fallback file, in s
EXIT_TIMEOUT_S = 5.0
#: a writer thread with nothing to write ends after this long, in s (started again when needed)
IDLE_THREAD_S = 10.0
#: the key of the metadata entry that counts the rows dropped before a row (backlog full)
ROWS_DROPPED_KEY = "csv_rows_dropped"

# -- the backlog and its writer ------------------------------------------------------------------


@dataclasses.dataclass
class _Job:
    target: CsvFile
    record: EmissionsData
    upsert: bool = False


class _RowWriter:
    """The backlog of one output's rows (run and window rows, in order) and the daemon thread
    that writes it in batches.

    ``put`` never blocks on the disk; ``drain`` waits (bounded) until the backlog is written or a
    write after the request failed; ``close`` drains, ends the thread and sends what is left to
    the fallback file.
    """

    def __init__(
        self, *, max_backlog_rows: int = DEFAULT_MAX_BACKLOG_ROWS, background: bool = True
    ) -> None:
        if max_backlog_rows < 1:
            raise ValueError(f"max_backlog_rows must be at least 1, got {max_backlog_rows!r}")
        self.max_backlog_rows = max_backlog_rows
        self.background = background
        self._cond = threading.Condition()
        self._io_lock = threading.Lock()
        self._pending: deque[_Job] = deque()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closing = False
        self._urgent = False
        #: attempts started, and the number of the last one that failed (drain compares them)
        self._attempts = 0
        self._last_failed = 0
        #: the fault episode in progress: when it began (wall clock), the number of episodes
        self._fault_since: float | None = None
        self._episodes = 0
        self._retry_at = 0.0
        self._retry_delay_s = 0.5
        self._dropped: dict[Path, int] = {}
        self._bound_warned_episode = -1
        self._seen: set[tuple[str, str]] = set()
        _WRITERS.add(self)

    # -- producer side ---------------------------------------------------------------------------

    def put(self, target: CsvFile, record: EmissionsData, *, upsert: bool = False) -> None:
        """Queue a row; never blocks on the disk. A full backlog drops its oldest row."""
        dropped: _Job | None = None
        with self._cond:
            if self._pid != os.getpid():
                self._after_fork()
            if len(self._pending) + self._in_flight >= self.max_backlog_rows:
                job = _Job(target, record, upsert)
                dropped = self._pending.popleft() if self._pending else job
                self._dropped[dropped.target.path] = self._dropped.get(dropped.target.path, 0) + 1
                if dropped is not job:
                    self._pending.append(job)
                warn_bound = self._bound_warned_episode != self._episodes
                self._bound_warned_episode = self._episodes
            else:
                self._pending.append(_Job(target, record, upsert))
                warn_bound = False
            self._closing = False
            if self.background:
                self._ensure_thread()
                self._cond.notify_all()
        if dropped is not None and warn_bound:
            warn_once(
                f"csv-backlog-full:{id(self)}:{self._episodes}",
                "%d CSV rows are waiting to be written (the most kept in memory): the oldest are "
                "dropped from now on; the next row written to %s counts them in its metadata (%s)",
                self.max_backlog_rows,
                dropped.target.path,
                ROWS_DROPPED_KEY,
                log=logger,
                seen=self._seen,
                category=CodeCarbonCallbacksWarning,
            )
        if not self.background and (
            self._fault_since is None or time.monotonic() >= self._retry_at
        ):
            self._write_until_done_or_failed()

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="codecarbon-callbacks-csv", daemon=True
            )
            self._thread.start()

    def _after_fork(self) -> None:
        """In a forked child: the parent's rows are the parent's to write; start afresh."""
        self._pid = os.getpid()
        self._pending.clear()
        self._in_flight = 0
        self._thread = None
        self._dropped.clear()
        self._fault_since = None

    @property
    def backlog(self) -> int:
        """Rows not yet on disk."""
        with self._cond:
            return len(self._pending) + self._in_flight

    @property
    def in_fault(self) -> bool:
        """Whether the last write failed (a fault episode is in progress)."""
        return self._fault_since is not None

    # -- writing ---------------------------------------------------------------------------------

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            idle_until = time.monotonic() + IDLE_THREAD_S
            with self._cond:
                while True:
                    if self._thread is not me:
                        return  # replaced (after a fork) or closed
                    if self._pending and (
                        self._fault_since is None
                        or self._urgent
                        or time.monotonic() >= self._retry_at
                    ):
                        break
                    idle = not self._pending and not self._in_flight
                    if (self._closing and (idle or self._fault_since is not None)) or (
                        idle and time.monotonic() >= idle_until
                    ):  # closed, or idle for a while (an output nobody closes): the thread ends
                        self._thread = None
                        self._cond.notify_all()
                        return
                    if idle:
                        wait = max(0.0, idle_until - time.monotonic())
                    else:
                        wait = max(0.0, self._retry_at - time.monotonic())
                    self._cond.wait(wait)
                self._urgent = False
            self._attempt()

    def _write_until_done_or_failed(self) -> bool:
        """Write on the calling thread until the backlog is empty (True) or a write fails."""
        while self.backlog:
            if not self._attempt():
                return False
        return True

    def _attempt(self) -> bool:
        """Write the next batch (consecutive appends to one file, or one upsert); True unless
        the write failed (the batch then goes back to the head of the backlog)."""
        with self._io_lock:
            with self._cond:
                if not self._pending:
                    return True
                first = self._pending.popleft()
                batch = [first]
                if not first.upsert:
                    while (
                        self._pending
                        and len(batch) < BATCH_MAX_ROWS
                        and self._pending[0].target is first.target
                        and not self._pending[0].upsert
                    ):
                        batch.append(self._pending.popleft())
                self._in_flight = len(batch)
                self._attempts += 1
                attempt = self._attempts
                target = first.target
                dropped_before = self._dropped.get(target.path, 0)
            records = [job.record for job in batch]
            if dropped_before:
                records[0] = _with_dropped(records[0], dropped_before)
            try:
                if first.upsert:
                    target.upsert(records[0])
                else:
                    target.append_rows(records)
            except OSError as exc:
                self._failed(batch, attempt, exc)
                return False
            except Exception as exc:  # a row that can never be written must not block the rest
                self._unwritable(batch, exc)
                return True
            self._succeeded(target, dropped_before)
            return True

    def _succeeded(self, target: CsvFile, dropped_before: int) -> None:
        with self._cond:
            self._in_flight = 0
            if dropped_before:
                self._dropped[target.path] -= dropped_before
            since = self._fault_since
            self._fault_since = None
            self._retry_delay_s = 0.5
            self._cond.notify_all()
        if since is not None:
            logger.warning(
                "%s can be written again after %.1f s: the rows held meanwhile are being written",
                target.path,
                time.time() - since,
            )

    def _failed(self, batch: list[_Job], attempt: int, exc: OSError) -> None:
        with self._cond:
            self._in_flight = 0
            self._pending.extendleft(reversed(batch))
            self._last_failed = attempt
            new_episode = self._fault_since is None
            if new_episode:
                self._fault_since = time.time()
                self._episodes += 1
            else:
                self._retry_delay_s = min(5.0, self._retry_delay_s * 2)
            self._retry_at = time.monotonic() + self._retry_delay_s
            held = len(self._pending)
            episode, since = self._episodes, self._fault_since
            closing = self._closing
            self._cond.notify_all()
        if new_episode:
            warn_once(
                f"csv-fault:{id(self)}:{episode}",
                "could not write %s (%s: %s) since %s: %d row(s) kept in memory (at most %d), "
                "written in order once possible",
                batch[0].target.path,
                type(exc).__name__,
                exc.strerror or exc,
                time.strftime("%H:%M:%S", time.localtime(since)),
                held,
                self.max_backlog_rows,
                log=logger,
                seen=self._seen,
                category=CodeCarbonCallbacksWarning,
            )
        else:
            logger.debug("still cannot write %s: %s", batch[0].target.path, exc)
        if closing:
            self.to_fallback()  # close() gave up waiting for this write: nothing is left behind

    def _unwritable(self, batch: list[_Job], exc: Exception) -> None:
        with self._cond:
            self._in_flight = 0
            path = batch[0].target.path
            self._dropped[path] = self._dropped.get(path, 0) + len(batch)
            self._cond.notify_all()
        warn_once(
            f"csv-unwritable:{id(self)}:{path}",
            "%d row(s) for %s cannot be formatted and are dropped (%s: %s)",
            len(batch),
            path,
            type(exc).__name__,
            exc,
            log=logger,
            seen=self._seen,
            level=logging.ERROR,
            category=CodeCarbonCallbacksWarning,
        )

    # -- waiting, closing ------------------------------------------------------------------------

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Write the backlog now; True when it is all on disk, False when a write made after
        this call failed (the fault holds) or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._pid != os.getpid():
                self._after_fork()
            if not self._pending and not self._in_flight:
                return True
            first_attempt = self._attempts + 1
            self._urgent = True
            thread = self._thread
            self._cond.notify_all()
        if not self.background or thread is None or not thread.is_alive():
            return self._write_until_done_or_failed()
        with self._cond:
            while self._pending or self._in_flight:
                if self._last_failed >= first_attempt:
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._urgent = True
                self._cond.wait(remaining)
            return True

    def close(self, timeout_s: float = EXIT_TIMEOUT_S) -> bool:
        """Drain (bounded), end the thread, and send rows that still cannot be written to the
        fallback file; True when every row went to its own file."""
        deadline = time.monotonic() + timeout_s
        written = self.drain(timeout_s)
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, min(1.0, deadline - time.monotonic())))  # no lock held
        if not written:
            self.to_fallback()
        return written

    def to_fallback(self) -> None:
        """Write every row still held to the fallback file of its file (a warning names it)."""
        with self._cond:
            jobs = list(self._pending)
            self._pending.clear()
            dropped = dict(self._dropped)
            self._dropped.clear()
        by_path: dict[Path, list[EmissionsData]] = {}
        originals: dict[Path, CsvFile] = {}
        for job in jobs:
            by_path.setdefault(job.target.path, []).append(job.record)
            originals[job.target.path] = job.target
        for path, records in by_path.items():
            if dropped.get(path):
                records[0] = _with_dropped(records[0], dropped.pop(path))
            target = fallback_path(path)
            try:
                CsvFile(target, originals[path].columns).append_rows(records)
            except OSError as exc:
                logger.error(
                    "%d row(s) for %s are lost: neither it nor the fallback %s can be written (%s)",
                    len(records),
                    path,
                    target,
                    exc,
                )
                warn_once(
                    f"csv-lost:{id(self)}:{path}",
                    "%d row(s) for %s are lost: neither it nor %s can be written",
                    len(records),
                    path,
                    target,
                    log=logger,
                    seen=self._seen,
                    category=CodeCarbonCallbacksWarning,
                )
                continue
            warn_once(
                f"csv-fallback:{id(self)}:{path}:{target}:{time.monotonic()}",
                "%d row(s) could not be written to %s: they are in %s (same columns; read it "
                "with read_emissions)",
                len(records),
                path,
                target,
                log=logger,
                seen=self._seen,
                category=CodeCarbonCallbacksWarning,
            )
        for path, count in dropped.items():
            if count:
                logger.error("%d row(s) for %s were dropped (backlog full)", count, path)


def _with_dropped(record: EmissionsData, count: int) -> EmissionsData:
    """A copy of ``record`` whose metadata counts the rows dropped before it."""
    metadata = dict(record.metadata)
    metadata[ROWS_DROPPED_KEY] = int(metadata.get(ROWS_DROPPED_KEY, 0)) + count
    return dataclasses.replace(record, metadata=metadata)


_WRITERS: weakref.WeakSet[_RowWriter] = weakref.WeakSet()


@atexit.register
def _close_writers_at_exit() -> None:
    """Interpreter exit: every backlog written, or sent to its fallback file."""
    for writer in list(_WRITERS):
        try:
            if writer.backlog:
                writer.close(EXIT_TIMEOUT_S)
        except Exception as exc:  # at exit, never raise
            logger.debug("could not close a CSV writer at exit: %s", exc)


def _reinit_after_fork() -> None:
    for writer in list(_WRITERS):
        writer._cond = threading.Condition()
        writer._io_lock = threading.Lock()
        writer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


class FileOutput(BaseOutput):
    """Writes run rows to ``output_file_name`` and window rows to ``windows_file`` in
    ``output_dir``; CodeCarbon's ``FileOutput(output_file_name, output_dir, on_csv_write)``.

    Both go through one in-memory backlog written by a background thread in batches, each
    batch fsync'd, so a training loop's window edges never wait on the disk. ``out`` (flush and
    stop) waits until the run row and the windows before it are on disk, or a write fails.
    A file that cannot be written keeps its rows in the backlog (see the module's notes).
    ``task_out`` writes CodeCarbon's task file ``emissions_<experiment_name>_<run_id>.csv``.

    Args:
        output_file_name: the run file's name (a plain name, no folders).
        output_dir: the folder (created if missing, and created again if deleted during the
            run, where CodeCarbon raises OSError).
        on_csv_write: ``"append"`` a row per flush/stop, or ``"update"`` the run's own row
            (CodeCarbon's rule: the run's row is replaced and moved to the end; when the file
            already holds several rows of the run, the new one is appended).
        windows_file: the window file's name.
        background_windows: False writes every row on the calling thread.
        max_backlog_rows: rows held in memory at most while the files cannot be written.

    Raises:
        ValueError: ``on_csv_write`` or ``max_backlog_rows`` is invalid.
        OSError: ``output_dir`` cannot be created.

    Example:
        >>> out = FileOutput("emissions.csv", "runs")  # doctest: +SKIP
    """

    def __init__(
        self,
        output_file_name: str,
        output_dir: str | os.PathLike[str],
        on_csv_write: str = "append",
        *,
        windows_file: str = "emissions_windows.csv",
        background_windows: bool = True,
        max_backlog_rows: int = DEFAULT_MAX_BACKLOG_ROWS,
    ) -> None:
        if on_csv_write not in ("append", "update"):
            raise ValueError(f"on_csv_write must be 'append' or 'update', got {on_csv_write!r}")
        directory = Path(output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        #: CodeCarbon's attributes
        self.output_file_name = os.fspath(output_file_name)
        self.output_dir = os.fspath(output_dir)
        self.on_csv_write = on_csv_write
        self.runs = CsvFile(
            directory / self.output_file_name, RUN_CSV_COLUMNS, accept_codecarbon=True
        )
        self.windows = CsvFile(directory / windows_file, WINDOW_CSV_COLUMNS)
        self._writer = _RowWriter(max_backlog_rows=max_backlog_rows, background=background_windows)

    def has_valid_headers(self, data: EmissionsData, headers: list[str] | None = None) -> bool:
        """Whether the run file's header (or ``headers``) can take ``data``'s rows as they are.

        True for a missing or empty file, for our header and for CodeCarbon 3.3's exact header
        (in any order); any other header is backed up by the next write. ``data`` is accepted
        for CodeCarbon's signature: our records always have the same columns.
        """
        return has_valid_headers(self.runs, headers)

    @property
    def save_file_path(self) -> str:
        """CodeCarbon's attribute name for the run file's path."""
        return str(self.runs.path)

    @property
    def backlog(self) -> int:
        """Rows (run and window) not yet on disk."""
        return self._writer.backlog

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        """Queue the run row after the windows it sums, and wait (at most 10 s) until it is on
        disk or a write fails (the row then stays in the backlog)."""
        self._writer.put(self.runs, total, upsert=self.on_csv_write == "update")
        self._writer.drain(10.0)

    def window_out(self, record: WindowRecord) -> None:
        self._writer.put(self.windows, record)

    def task_out(self, data: list[EmissionsData], experiment_name: str) -> None:
        """CodeCarbon's task file: ``emissions_<experiment_name>_<run_id>.csv`` in
        ``output_dir``, one row per task in CodeCarbon's ``TaskEmissionsData`` columns,
        rewritten each time (as CodeCarbon does)."""
        write_task_file(self.output_dir, data, experiment_name)

    def flush_windows(self, timeout_s: float = 10.0) -> bool:
        """Write every queued row now; True when all are on disk, False on a fault or timeout."""
        return self._writer.drain(timeout_s)

    def exit(self) -> None:
        """Write the backlog (at most :data:`EXIT_TIMEOUT_S`), end the writer thread; rows that
        still cannot be written go to the fallback file in the cache folder (a warning says
        where)."""
        self._writer.close(EXIT_TIMEOUT_S)


__all__ = [
    "DEFAULT_MAX_BACKLOG_ROWS",
    "ROWS_DROPPED_KEY",
    "TEXT_COLUMNS",
    "CsvFile",
    "FileOutput",
    "cache_dir",
    "fallback_files",
    "fallback_path",
    "guard_cell",
    "read_emissions",
    "restore_fallback",
    "unguard_cell",
]
