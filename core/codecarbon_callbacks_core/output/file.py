"""CSV output: ``emissions.csv`` (runs) and ``emissions_windows.csv`` (epochs, phases, tasks).

The run file has CodeCarbon 3.3's columns in its order, then a fixed set of ours and one
``metadata`` JSON column, so the header never changes with configuration or hardware.

- A file whose header is ours is appended to.
- A file CodeCarbon wrote (its exact header) is appended to in its own columns, so a user who
  switches keeps one file.
- A file with any other header is renamed to ``<name>.<timestamp>.bak`` and a new one started:
  never overwritten.
- Writers lock the file (``fcntl.flock`` on a side lock file), so several processes appending to
  one file never interleave rows; every row is flushed and fsync'd when written.
- ``on_csv_write="update"`` replaces the run's row (same run_id) instead of appending.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import datetime
import io
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def _format_row(columns: tuple[str, ...], row: dict[str, Any]) -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n").writerow(row)
    return buffer.getvalue()


def _header_line(columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    return buffer.getvalue()


def _write_durably(fd: int, data: str) -> None:
    payload = data.encode("utf-8")
    while payload:
        written = os.write(fd, payload)
        payload = payload[written:]
    os.fsync(fd)


class CsvFile:
    """One CSV file with a fixed header, written row by row under a lock, fsync'd."""

    def __init__(self, path: Path, columns: tuple[str, ...], *, accept_codecarbon: bool = False) -> None:
        self.path = path
        self.columns = columns
        self.accept_codecarbon = accept_codecarbon

    def _columns_for_file(self) -> tuple[str, ...]:
        """The header to write with: ours, or CodeCarbon's for its own file; backs up others."""
        header = _read_header(self.path)
        if header is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
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
            backup = self.path.with_name(f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.{n}.bak")
            n += 1
        os.replace(self.path, backup)
        logger.warning(
            "%s has another header: kept as %s, starting a new file", self.path, backup.name
        )
        return self._columns_for_file()

    def append(self, record: EmissionsData) -> None:
        with _locked(self.path):
            columns = self._columns_for_file()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                _write_durably(fd, _format_row(columns, record.to_row(columns)))
            finally:
                os.close(fd)

    def upsert(self, record: EmissionsData, key: str = "run_id") -> None:
        """Replace the row whose ``key`` matches, else append; atomic replace of the file."""
        with _locked(self.path):
            columns = self._columns_for_file()
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            new_row = {k: str(v) for k, v in record.to_row(columns).items()}
            for i, row in enumerate(rows):
                if row.get(key) == new_row[key]:
                    rows[i] = new_row
                    break
            else:
                rows.append(new_row)
            text = _header_line(columns) + "".join(_format_row(columns, r) for r in rows)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_durably(fd, text)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)


class _RowWriter:
    """A daemon thread that appends window rows (write + fsync) off the training thread.

    Window edges come every epoch and phase; an fsync costs ~0.3 ms here and far more on network
    file systems, so the training thread only queues the record. Rows are still written and
    fsync'd one by one, in order; ``drain()`` waits for the queue (the tracker's stop() and
    process exit do), so nothing queued is lost short of a hard kill.
    """

    def __init__(self, target: CsvFile) -> None:
        self.target = target
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def put(self, record: EmissionsData) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="codecarbon-callbacks-csv", daemon=True
                )
                self._thread.start()
                _WRITERS.add(self)
        self._queue.put(record)

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued row is on disk; False if that took longer than the timeout."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self.target.append(item)
            except Exception as e:  # an output never raises into training: log and go on
                logger.warning("could not write a row to %s: %s", self.target.path, e)


_WRITERS: weakref.WeakSet[_RowWriter] = weakref.WeakSet()


@atexit.register
def _drain_writers_at_exit() -> None:
    for writer in list(_WRITERS):
        writer.drain(timeout_s=5.0)


class FileOutput(BaseOutput):
    """Writes run rows to ``output_file`` and window rows to ``windows_file`` in ``output_dir``.

    Run rows are written on the calling thread (flush/stop); window rows by a background writer,
    so a training loop's window edges never wait on the disk. Every row is fsync'd.

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
    ) -> None:
        if on_csv_write not in ("append", "update"):
            raise ValueError(f"on_csv_write must be 'append' or 'update', got {on_csv_write!r}")
        directory = Path(output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.on_csv_write = on_csv_write
        self.runs = CsvFile(directory / output_file, RUN_CSV_COLUMNS, accept_codecarbon=True)
        self.windows = CsvFile(directory / windows_file, WINDOW_CSV_COLUMNS)
        self._writer = _RowWriter(self.windows) if background_windows else None

    @property
    def save_file_path(self) -> str:
        """CodeCarbon's attribute name for the run file's path."""
        return str(self.runs.path)

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self.flush_windows()  # the windows a run row sums are on disk before it
        if self.on_csv_write == "update":
            self.runs.upsert(total)
        else:
            self.runs.append(total)

    def window_out(self, record: WindowRecord) -> None:
        if self._writer is not None:
            self._writer.put(record)
        else:
            self.windows.append(record)

    def flush_windows(self, timeout_s: float = 10.0) -> bool:
        """Wait until queued window rows are written; False on timeout."""
        if self._writer is None:
            return True
        return self._writer.drain(timeout_s)

    def exit(self) -> None:
        if not self.flush_windows():
            logger.warning("window rows for %s still queued after 10 s", self.windows.path)


# -- reading -------------------------------------------------------------------------------------

_TEXT_COLUMNS = {
    "timestamp", "project_name", "run_id", "experiment_id", "country_name", "country_iso_code",
    "region", "cloud_provider", "cloud_region", "os", "python_version", "codecarbon_version",
    "cpu_model", "gpu_model", "tracking_mode", "on_cloud", "status", "cpu_method", "gpu_method",
    "ram_method", "carbon_intensity_source", "tracker_version", "metadata", "window_id", "kind",
    "name", "phase", "start_timestamp", "end_timestamp",
}
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
