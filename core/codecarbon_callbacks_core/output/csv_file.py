"""The CSV files themselves: one file's header, rows and lock, and where rows go that could not be
written (the fallback files under the user's cache folder).

- A file whose header is ours is appended to; a file CodeCarbon wrote (its exact header) is
  appended to in its own columns; a file with any other header is renamed to
  ``<name>.<timestamp>.bak`` and a new one started: never overwritten.
- Appending always starts on a fresh line, whatever the file ends with.
- Writers lock the data file itself (``fcntl.flock`` on POSIX, a byte-range lock through
  ``msvcrt`` on Windows), so several processes appending to one file never interleave rows and
  the folder holds the reports only: no side ``*.lock`` file.
- A text cell that a spreadsheet would run as a formula is written with a leading ``'`` (OWASP's
  advice against CSV injection); :func:`unguard_cell` removes exactly that prefix.

The backlog that writes rows in batches, and ``FileOutput``, are in
:mod:`codecarbon_callbacks_core.output.file`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import re
import shutil
import time
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.records import (
    CODECARBON_COLUMNS,
    EmissionsData,
    WindowRecord,
)

if TYPE_CHECKING:
    pass

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

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


#: where the Windows lock sits: one byte far past any CSV's end, so that the lock (mandatory on
#: Windows) never blocks the writes it guards, which go through other descriptors
_WINDOWS_LOCK_OFFSET = 0x7FFFFFFE


def _lock_fd(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    elif msvcrt is not None:  # pragma: no cover - Windows
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]
                return
            except OSError:  # LK_LOCK gives up after 10 s: another writer still holds it
                continue


def _unlock_fd(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:  # pragma: no cover - Windows
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    """An exclusive lock on ``path`` itself, shared by every process writing it; yields the
    locked descriptor (open read-write, at no particular position).

    The file is created empty when missing (the caller then writes its header). A writer that
    waited while another replaced or removed the file (an upsert, a header backup) locks the file
    now at ``path`` instead, so that no two writers ever hold locks on different files. Nothing
    but ``path`` is created.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _BINARY, 0o644)
        try:
            _lock_fd(fd)
            try:
                if _same_file(fd, path):
                    yield fd
                    return
            finally:
                _unlock_fd(fd)
        finally:
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


def _start_file(fd: int, columns: Sequence[str]) -> None:
    """Empty the file open at ``fd`` and write ``columns`` as its header, durably."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    _write_durably(fd, _header_line(columns))


def _copy_durably(source: Path, target: Path) -> None:
    """Copy ``source`` to the new file ``target`` and fsync it (the backup exists whole before
    ``source`` is started again)."""
    shutil.copyfile(source, target)
    fd = os.open(target, os.O_RDONLY | _BINARY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    def _columns_for_file(self, fd: int) -> tuple[str, ...]:
        """The header to write with: ours, or CodeCarbon's for its own file; backs up others.

        ``fd`` is the locked descriptor of :attr:`path` (see :func:`_locked`): a new or empty
        file gets our header through it, and a file with another header is copied to a
        ``.bak`` and started again in place, so that the lock stays on the file at ``path``.
        """
        header = _read_header(self.path)
        if header is None:
            _start_file(fd, self.columns)
            return self.columns
        if header == self.columns:
            return self.columns
        if self.accept_codecarbon and sorted(header) == sorted(CODECARBON_COLUMNS):
            return header  # CodeCarbon's columns, in the file's order (CodeCarbon's rule)
        backup = self.path.with_name(f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        n = 1
        while backup.exists():
            backup = self.path.with_name(
                f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.{n}.bak"
            )
            n += 1
        _copy_durably(self.path, backup)
        _start_file(fd, self.columns)
        logger.warning(
            "%s has another header: kept as %s, starting a new file", self.path, backup.name
        )
        return self.columns

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
        with _locked(self.path) as lock_fd:
            columns = self._columns_for_file(lock_fd)
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
        """Drop the row whose ``key`` matches and append the new one (all rows kept when several
        match, as CodeCarbon does); atomic replace of the file.

        Raises:
            OSError: the file could not be written (it is left as it was).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path) as lock_fd:
            columns = self._columns_for_file(lock_fd)
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            new_line = _format_row(columns, record.to_row(columns))
            new_row = next(csv.DictReader(io.StringIO(_header_line(columns) + new_line)))
            # CodeCarbon's rule: the run's row is dropped and the new one appended; when the
            # file already holds several rows of the run, they are kept and the new one appended
            matches = sum(1 for row in rows if row.get(key) == new_row[key])
            if matches > 1:
                logger.warning(
                    "%s holds %d rows with %s %s: appending instead of updating",
                    self.path,
                    matches,
                    key,
                    new_row[key],
                )
            # rows already in the file are written back as they are (guards kept)
            lines = [
                _format_row(columns, row, guard=False)
                for row in rows
                if matches > 1 or row.get(key) != new_row[key]
            ]
            lines.append(new_line)
            text = _header_line(columns) + "".join(lines)
            if fcntl is None:  # pragma: no cover - Windows cannot replace a file held open
                os.ftruncate(lock_fd, 0)
                os.lseek(lock_fd, 0, os.SEEK_SET)
                _write_durably(lock_fd, text)
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _BINARY, 0o644)
            try:
                _write_durably(fd, text)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)


# -- rows that could not be written ------------------------------------------------------------


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
        with _locked(target.path) as lock_fd:
            written_columns = target._columns_for_file(lock_fd)
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
        fallback.parent.rmdir()  # only when empty
    return len(rows)
