"""CodeCarbon's task file and header check, for :class:`~.file.FileOutput`.

- ``emissions_<experiment_name>_<run_id>.csv`` in the output folder: one row per task, in
  CodeCarbon's ``TaskEmissionsData`` columns, rewritten whole at each call (CodeCarbon does the
  same; the rows of all tasks are also in ``emissions_windows.csv``, which is appended to).
- ``has_valid_headers``: CodeCarbon's test of whether a run file can be appended to as it is.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from codecarbon_callbacks_core.output.csv_file import guard_cell
from codecarbon_callbacks_core.records import (
    CODECARBON_COLUMNS,
    TASK_CSV_COLUMNS,
    EmissionsData,
    TaskEmissionsData,
)

if TYPE_CHECKING:
    from codecarbon_callbacks_core.output.csv_file import CsvFile


def task_file_path(output_dir: str | os.PathLike[str], experiment_name: str, run_id: str) -> Path:
    """CodeCarbon's task file: ``<output_dir>/emissions_<experiment_name>_<run_id>.csv``."""
    return Path(output_dir) / f"emissions_{experiment_name}_{run_id}.csv"


def write_task_file(
    output_dir: str | os.PathLike[str],
    data: Sequence[EmissionsData | TaskEmissionsData],
    experiment_name: str,
) -> Path | None:
    """Write the tasks ``data`` (one run's) to its task file; returns its path (None when
    ``data`` is empty).

    Raises:
        OSError: the file could not be written (the caller's guard reports it).
    """
    if not data:
        return None
    rows = [
        item if isinstance(item, TaskEmissionsData) else TaskEmissionsData.from_record(item)
        for item in data
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TASK_CSV_COLUMNS)
    for row in rows:
        values = row.values
        writer.writerow(
            [
                guard_cell(value) if isinstance(value, str) else ("" if value is None else value)
                for value in (values[name] for name in TASK_CSV_COLUMNS)
            ]
        )
    path = task_file_path(output_dir, experiment_name, rows[0].run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, path)  # readers see the old file or the new, whole
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def has_valid_headers(runs: CsvFile, headers: Sequence[str] | None = None) -> bool:
    """Whether ``headers`` (default: the run file's first row) can take our rows as they are:
    no header (a missing or empty file), ours, or CodeCarbon 3.3's (in any order)."""
    if headers is None:
        try:
            with open(runs.path, newline="", encoding="utf-8") as handle:
                headers = next(csv.reader(handle), None)
        except FileNotFoundError:
            return True
        if headers is None:
            return True
    found = sorted(headers)
    return found == sorted(runs.columns) or (
        runs.accept_codecarbon and found == sorted(CODECARBON_COLUMNS)
    )


__all__ = ["has_valid_headers", "task_file_path", "write_task_file"]
