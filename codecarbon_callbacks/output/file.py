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

import contextlib
import csv
import io
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from codecarbon_callbacks.core.records import (
    CODECARBON_COLUMNS,
    RUN_CSV_COLUMNS,
    WINDOW_CSV_COLUMNS,
    EmissionsData,
    WindowRecord,
)
from codecarbon_callbacks.output.base import BaseOutput

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


class FileOutput(BaseOutput):
    """Writes run rows to ``output_file`` and window rows to ``windows_file`` in ``output_dir``.

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
    ) -> None:
        if on_csv_write not in ("append", "update"):
            raise ValueError(f"on_csv_write must be 'append' or 'update', got {on_csv_write!r}")
        directory = Path(output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.on_csv_write = on_csv_write
        self.runs = CsvFile(directory / output_file, RUN_CSV_COLUMNS, accept_codecarbon=True)
        self.windows = CsvFile(directory / windows_file, WINDOW_CSV_COLUMNS)

    @property
    def save_file_path(self) -> str:
        """CodeCarbon's attribute name for the run file's path."""
        return str(self.runs.path)

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        if self.on_csv_write == "update":
            self.runs.upsert(total)
        else:
            self.runs.append(total)

    def window_out(self, record: WindowRecord) -> None:
        self.windows.append(record)


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


def read_emissions(path: str | os.PathLike[str]) -> pandas.DataFrame:
    """Read ``emissions.csv`` or ``emissions_windows.csv`` into a DataFrame with typed columns.

    Numbers are floats (counts and epochs nullable integers), timestamps are UTC datetimes, and
    ``metadata`` is parsed from JSON into dicts.
    """
    import json

    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        values = frame[column]
        if column in _TIME_COLUMNS:
            frame[column] = pd.to_datetime(values.replace("", None), utc=True, format="ISO8601")
        elif column == "metadata":
            frame[column] = values.map(lambda s: json.loads(s) if s else {})
        elif column in _INT_COLUMNS:
            frame[column] = pd.to_numeric(values.replace("", None)).astype("Int64")
        elif column not in _TEXT_COLUMNS:
            frame[column] = pd.to_numeric(values.replace("", None), errors="coerce").astype(float)
    return frame
