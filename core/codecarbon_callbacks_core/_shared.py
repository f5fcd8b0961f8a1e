"""Helpers every layer uses, each defined once: warn once, the already-imported torch, an atomic
JSON write. A leaf: imports nothing of the package."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
from types import ModuleType
from typing import Any

logger = logging.getLogger("codecarbon_callbacks_core")

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(key: str, message: str, *args: Any, log: logging.Logger | None = None,
              seen: set[tuple[str, str]] | None = None, level: int = logging.WARNING) -> None:
    """Log ``message`` at ``level`` the first time ``key`` is seen, at debug level afterwards.

    Args:
        key: what makes two messages "the same"; scoped by the logger's name.
        message, args: as for :meth:`logging.Logger.log`.
        log: the logger (default: the package's).
        seen: the set of keys already reported: this process's by default, or an object's own
            (so that a new object reports again).
        level: the level of the first report.
    """
    target = log or logger
    token = (target.name, key)
    with _warned_lock:
        registry = _warned if seen is None else seen
        first = token not in registry
        registry.add(token)
    target.log(level if first else logging.DEBUG, message, *args)


def imported_torch() -> ModuleType | None:
    """torch, only when the user's process has already imported it; never imports it."""
    return sys.modules.get("torch")


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, fsync: bool = False,
                      **dump_options: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the new, whole.

    A temporary file in the same folder is written (and fsync'd when ``fsync``), then renamed
    over ``path``; the folder is created when missing. ``dump_options`` go to :func:`json.dump`.

    Raises:
        OSError: the folder or the file cannot be written (the temporary file is removed).
        ValueError, TypeError: ``data`` is not JSON-serialisable.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, **dump_options)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["imported_torch", "warn_once", "write_json_atomic"]
