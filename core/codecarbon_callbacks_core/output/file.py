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
- Writers lock the file (``fcntl.flock`` on a side lock file), so several processes appending to
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
import contextlib
import csv
import dataclasses
import datetime
import hashlib
import io
import logging
import os
import re
import threading
import time
import typing
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output.base import BaseOutput
from codecarbon_callbacks_core.records import (
    CODECARBON_COLUMNS,
    RUN_CSV_COLUMNS,
    WINDOW_CSV_COLUMNS,
    EmissionsData,
    WindowRecord,
)

if TYPE_CHECKING:
    import pandas

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, still fsync'd
    fcntl = None  # type: ignore[assignment]

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

# -- cells ---------------------------------------------------------------------------------------

#: the columns whose type in the records is text: the only ones a formula guard touches
TEXT_COLUMNS: frozenset[str] = frozenset(
    name for name, hint in typing.get_type_hints(WindowRecord).items() if hint is str
)
#: first characters a spreadsheet runs as a formula (OWASP), and ``'``, so that the guard itself
#: round-trips
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_GUARD_PREFIX = re.compile(r"^'(?=[=+\-@\t\r'])")


def guard_cell(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would read it as a formula (or when it
    already begins with ``'``); :func:`unguard_cell` undoes it."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def unguard_cell(value: str) -> str:
    """The text :func:`guard_cell` was given: one leading ``'`` removed before a guarded start."""
    return (
        value[1:] if value.startswith("'") and value[1:2] and value[1] in _FORMULA_START else value
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock shared by every process writing ``path``."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_header(path: Path) -> tuple[str, ...] | None:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            first = f.readline()
    except FileNotFoundError:
        return None
    if not first.strip():
        return None
    return tuple(next(csv.reader([first])))


def _format_row(columns: Sequence[str], row: dict[str, Any], *, guard: bool = True) -> str:
    """One CSV line; with ``guard``, text cells that would start a formula get a leading ``'``."""
    if guard:
        row = {
            name: guard_cell(value) if name in TEXT_COLUMNS and isinstance(value, str) else value
            for name, value in row.items()
        }
    buffer = io.StringIO()
    # written with "\r\n" so that a cell holding a lone "\r" is quoted too (the csv module quotes
    # only the characters of its line terminator), then ended with our "\n"
    csv.DictWriter(
        buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\r\n"
    ).writerow(row)
    return buffer.getvalue()[:-2] + "\n"


def _header_line(columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    return buffer.getvalue()


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _encode(text: str) -> bytes:
    # a lone surrogate (a name decoded from odd bytes) becomes "?" rather than losing the row
    return text.encode("utf-8", errors="replace")


def _write_durably(fd: int, data: str) -> None:
    _write_all(fd, _encode(data))
    os.fsync(fd)


#: os.open flags: binary on Windows too (no newline translation)
_BINARY = getattr(os, "O_BINARY", 0)


def _ends_with_newline(fd: int, size: int) -> bool:
    if size == 0:
        return True
    os.lseek(fd, size - 1, os.SEEK_SET)  # appends still go to the end (O_APPEND)
    return os.read(fd, 1) == b"\n"


class CsvFile:
    """One CSV file with a fixed header, appended to in batches under a lock, fsync'd per batch.

    Args:
        path: the file; its folder is created when missing (again, if it was deleted).
        columns: our header.
        accept_codecarbon: a file with CodeCarbon's exact header is appended to in its columns.
    """

    def __init__(
        self, path: Path, columns: tuple[str, ...], *, accept_codecarbon: bool = False
    ) -> None:
        self.path = path
        self.columns = columns
        self.accept_codecarbon = accept_codecarbon

    def _columns_for_file(self) -> tuple[str, ...]:
        """The header to write with: ours, or CodeCarbon's for its own file; backs up others."""
        header = _read_header(self.path)
        if header is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _BINARY, 0o644)
            try:
                _write_durably(fd, _header_line(self.columns))
            finally:
                os.close(fd)
            return self.columns
        if header == self.columns:
            return self.columns
        if self.accept_codecarbon and header == CODECARBON_COLUMNS:
            return CODECARBON_COLUMNS
        backup = self.path.with_name(f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        n = 1
        while backup.exists():
            backup = self.path.with_name(
                f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.{n}.bak"
            )
            n += 1
        os.replace(self.path, backup)
        logger.warning(
            "%s has another header: kept as %s, starting a new file", self.path, backup.name
        )
        return self._columns_for_file()

    def append(self, record: EmissionsData) -> None:
        """Append one row (see :meth:`append_rows`)."""
        self.append_rows([record])

    def append_rows(self, records: Sequence[EmissionsData]) -> None:
        """Append ``records`` in order with one write and one fsync: all of them or none.

        The folder is created when missing, the header written when the file is new or empty,
        and the rows start on a fresh line. A write cut off midway (disk full, file size limit)
        is truncated back to where it started before the error is raised.

        Raises:
            OSError: the rows could not be written (none of them is left in the file).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            columns = self._columns_for_file()
            data = "".join(_format_row(columns, r.to_row(columns)) for r in records)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | _BINARY)
            try:
                start = os.fstat(fd).st_size
                if not _ends_with_newline(fd, start):
                    data = "\n" + data  # a last line without its newline stays whole, ours apart
                try:
                    _write_all(fd, _encode(data))
                    os.fsync(fd)
                    if os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                        # the file was deleted or replaced while we wrote: the rows are not in it
                        raise FileNotFoundError(f"{self.path} was removed while being written")
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                        os.fsync(fd)
                    raise
            finally:
                os.close(fd)

    def upsert(self, record: EmissionsData, key: str = "run_id") -> None:
        """Replace the row whose ``key`` matches, else append; atomic replace of the file.

        Raises:
            OSError: the file could not be written (it is left as it was).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            columns = self._columns_for_file()
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            new_line = _format_row(columns, record.to_row(columns))
            new_row = next(csv.DictReader(io.StringIO(_header_line(columns) + new_line)))
            lines = []
            replaced = False
            for row in rows:
                if not replaced and row.get(key) == new_row[key]:
                    lines.append(new_line)
                    replaced = True
                else:  # rows already in the file are written back as they are (guards kept)
                    lines.append(_format_row(columns, row, guard=False))
            if not replaced:
                lines.append(new_line)
            text = _header_line(columns) + "".join(lines)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _BINARY, 0o644)
            try:
                _write_durably(fd, text)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)


# -- the backlog and its writer ------------------------------------------------------------------


@dataclasses.dataclass
class _Job:
    target: CsvFile
    record: EmissionsData
    upsert: bool = False


def cache_dir() -> Path:
    """The package's folder in the user's cache: ``$XDG_CACHE_HOME/codecarbon-callbacks``, else
    ``~/.cache/codecarbon-callbacks`` (the XDG rule: a relative XDG_CACHE_HOME is ignored)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "codecarbon-callbacks"


def fallback_path(path: Path) -> Path:
    """Where rows that could not be written to ``path`` go at exit: a folder of the cache named
    after ``path``'s folder (readable, plus a short hash), and the same file name."""
    folder = os.path.abspath(path.parent)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", folder).strip("_")[-80:] or "root"
    digest = hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return cache_dir() / "unwritten" / f"{slug}-{digest}" / path.name


def fallback_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The fallback files (``*.csv``, in name order) holding rows that could not be written to
    files of ``folder`` (see :func:`fallback_path`); empty when there are none. ``folder`` need
    not exist any more."""
    where = fallback_path(Path(folder) / "emissions.csv").parent
    try:
        return sorted(p for p in where.glob("*.csv") if p.is_file())
    except OSError:
        return []


def restore_fallback(fallback: Path, folder: str | os.PathLike[str]) -> int:
    """Append the rows of the fallback file ``fallback`` to the file of the same name in
    ``folder`` (created, with the folder, when missing), in the fallback's order and as they
    were written, then delete the fallback file.

    The rows go in one write and one fsync under the file's lock, on a fresh line; a file with
    another header is kept as a ``.bak`` first, as when a tracker appends to it.

    Returns:
        The number of rows written back.

    Raises:
        OSError: the folder or its file cannot be written (the fallback file is left whole); or
            the rows were written but the fallback file cannot be deleted.
    """
    with open(fallback, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = tuple(reader.fieldnames or ())
        rows = list(reader)
    if rows and columns:
        target = CsvFile(Path(folder) / fallback.name, columns, accept_codecarbon=True)
        target.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(target.path):
            written_columns = target._columns_for_file()
            data = "".join(_format_row(written_columns, row, guard=False) for row in rows)
            fd = os.open(target.path, os.O_RDWR | os.O_APPEND | _BINARY)
            try:
                start = os.fstat(fd).st_size
                if not _ends_with_newline(fd, start):
                    data = "\n" + data
                try:
                    _write_durably(fd, data)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
    fallback.unlink()
    with contextlib.suppress(OSError):
        fallback.with_name(fallback.name + ".lock").unlink()
    with contextlib.suppress(OSError):
        fallback.parent.rmdir()  # only when empty
    return len(rows)


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
    """Writes run rows to ``output_file`` and window rows to ``windows_file`` in ``output_dir``.

    Both go through one in-memory backlog written by a background thread in batches, each
    batch fsync'd, so a training loop's window edges never wait on the disk. ``out`` (flush and
    stop) waits until the run row and the windows before it are on disk, or a write fails.
    A file that cannot be written keeps its rows in the backlog (see the module's notes).

    Args:
        output_dir: the folder (created, and created again if deleted during the run).
        output_file: the run file's name.
        on_csv_write: ``"append"`` a row per flush/stop, or ``"update"`` the run's own row.
        windows_file: the window file's name.
        background_windows: False writes every row on the calling thread.
        max_backlog_rows: rows held in memory at most while the files cannot be written.

    Raises:
        ValueError: ``on_csv_write`` or ``max_backlog_rows`` is invalid.
        OSError: ``output_dir`` cannot be created.

    Example:
        >>> out = FileOutput("runs", "emissions.csv")  # doctest: +SKIP
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str] = ".",
        output_file: str = "emissions.csv",
        *,
        on_csv_write: str = "append",
        windows_file: str = "emissions_windows.csv",
        background_windows: bool = True,
        max_backlog_rows: int = DEFAULT_MAX_BACKLOG_ROWS,
    ) -> None:
        if on_csv_write not in ("append", "update"):
            raise ValueError(f"on_csv_write must be 'append' or 'update', got {on_csv_write!r}")
        directory = Path(output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.on_csv_write = on_csv_write
        self.runs = CsvFile(directory / output_file, RUN_CSV_COLUMNS, accept_codecarbon=True)
        self.windows = CsvFile(directory / windows_file, WINDOW_CSV_COLUMNS)
        self._writer = _RowWriter(max_backlog_rows=max_backlog_rows, background=background_windows)

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

    def flush_windows(self, timeout_s: float = 10.0) -> bool:
        """Write every queued row now; True when all are on disk, False on a fault or timeout."""
        return self._writer.drain(timeout_s)

    def exit(self) -> None:
        """Write the backlog (at most :data:`EXIT_TIMEOUT_S`), end the writer thread; rows that
        still cannot be written go to the fallback file in the cache folder (a warning says
        where)."""
        self._writer.close(EXIT_TIMEOUT_S)


# -- reading -------------------------------------------------------------------------------------

#: columns read as text (the metadata JSON is parsed)
_TEXT_COLUMNS = TEXT_COLUMNS | {"metadata"}
_INT_COLUMNS = {"cpu_count", "gpu_count", "epoch"}
_TIME_COLUMNS = {"timestamp", "start_timestamp", "end_timestamp"}


#: an ISO 8601 timestamp that ends with its zone: ``Z``, ``+00:00``, ``-0500``, ``+05``
_ZONE_SUFFIX = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


def read_emissions(
    path: str | os.PathLike[str], *, tz: str | datetime.tzinfo | None = None
) -> pandas.DataFrame:
    """Read ``emissions.csv`` or ``emissions_windows.csv`` into a DataFrame with typed columns.

    Numbers are floats (counts and epochs nullable integers), ``metadata`` is parsed from JSON
    into dicts, and the time columns (``timestamp``, ``start_timestamp``, ``end_timestamp``)
    become datetimes:

    - Timestamps that carry a zone (ours are written in UTC, ``...+00:00``) keep their instant:
      without ``tz`` such a column is UTC (``datetime64[..., UTC]``).
    - Zone-less timestamps (CodeCarbon writes the local time of the machine that ran, with no
      zone) are left naive: no zone is guessed. A column that mixes both (a CodeCarbon file we
      appended to) is then of ``object`` dtype, naive and UTC ``Timestamp`` values side by side.
    - With ``tz`` (a zone name such as ``"Europe/Paris"``, a ``tzinfo``, or ``"local"`` for this
      machine's zone), zone-less timestamps are read as local times in that zone and zoned ones
      are converted to it, so every time column is one ``datetime64[..., tz]`` column. A local
      time that does not exist or is ambiguous in that zone (at a daylight-saving change)
      becomes ``NaT``.

    Empty cells are ``NaT``.

    Text cells that were written with a formula guard (a leading ``'`` before ``=``, ``+``,
    ``-``, ``@``, a tab, a carriage return or ``'``) lose exactly that ``'``, so every text reads
    back as it was given; numeric columns are parsed as they are.

    Args:
        path: the CSV file (ours, or one CodeCarbon wrote).
        tz: the zone of the zone-less timestamps, and the zone of the result (default: none).

    Raises:
        OSError: the file cannot be read.
        ValueError: a cell of a typed column cannot be parsed (a time or an integer column), or
            ``tz`` is not a time zone.

    Example:
        >>> runs = read_emissions("emissions.csv")  # doctest: +SKIP
        >>> runs = read_emissions("codecarbon/emissions.csv", tz="Europe/Paris")  # doctest: +SKIP
    """
    import json

    import pandas as pd

    zone = _resolve_tz(tz)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        values = frame[column]
        if column in TEXT_COLUMNS:  # the formula guard we write (see guard_cell) comes off
            values = values.map(unguard_cell)
            frame[column] = values
        if column in _TIME_COLUMNS:
            frame[column] = _read_times(values, zone)
        elif column == "metadata":
            frame[column] = values.map(lambda s: json.loads(s) if s else {})
        elif column in _INT_COLUMNS:
            frame[column] = pd.to_numeric(values.replace("", None)).astype("Int64")
        elif column not in _TEXT_COLUMNS:
            frame[column] = pd.to_numeric(values.replace("", None), errors="coerce").astype(float)
    return frame


def _resolve_tz(tz: str | datetime.tzinfo | None) -> str | datetime.tzinfo | None:
    """``"local"`` -> this machine's zone (daylight saving included); a zone name or tzinfo is
    checked as given.

    Raises:
        ValueError: ``tz`` is not a time zone.
    """
    import pandas as pd

    if tz is None:
        return None
    if isinstance(tz, str) and tz.lower() == "local":
        from dateutil.tz import tzlocal  # a pandas dependency

        return tzlocal()
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception as exc:  # noqa: BLE001 - KeyError, TypeError, pytz errors: all one answer
        raise ValueError(
            f"tz must be a time zone name (e.g. 'Europe/Paris', 'UTC'), 'local' or a tzinfo, "
            f"got {tz!r}"
        ) from exc
    return tz


def _read_times(values: pandas.Series, tz: str | datetime.tzinfo | None) -> pandas.Series:
    """A time column: zoned cells keep their instant, zone-less ones stay naive unless ``tz``."""
    import pandas as pd

    text = values.str.strip()
    present = text != ""
    zoned = present & text.str.contains(_ZONE_SUFFIX, regex=True)
    naive = present & ~zoned
    aware_times = pd.to_datetime(text[zoned], utc=True, format="ISO8601")
    naive_times = pd.to_datetime(text[naive], format="ISO8601")
    if tz is not None:
        localized = naive_times.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        parts = [aware_times.dt.tz_convert(tz), localized]
    elif not naive.any():
        parts = [aware_times]
    elif not zoned.any():
        parts = [naive_times]
    else:  # both kinds and no zone to reconcile them: each cell keeps its own kind
        result = pd.Series(pd.NaT, index=values.index, dtype=object)
        result[zoned] = list(aware_times)
        result[naive] = list(naive_times)
        return result
    combined = pd.concat([part for part in parts if len(part)] or parts[:1])
    return combined.reindex(values.index)
