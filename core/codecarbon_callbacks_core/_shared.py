"""Helpers every layer uses, each defined once: warn once, the already-imported torch, an atomic
JSON write. A leaf: imports nothing of the package."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import warnings
from types import FrameType, ModuleType
from typing import Any

logger = logging.getLogger("codecarbon_callbacks_core")

#: both packages' module names start with it (codecarbon_callbacks, codecarbon_callbacks_core)
_PACKAGE_PREFIX = "codecarbon_callbacks"
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(
    key: str,
    message: str,
    *args: Any,
    log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    seen: set[tuple[str, str]] | None = None,
    level: int = logging.WARNING,
    category: type[Warning] | None = None,
) -> None:
    """Log ``message`` at ``level`` the first time ``key`` is seen, at debug level afterwards;
    with ``category``, also issue it once per process through :func:`warnings.warn`.

    Args:
        key: what makes two messages "the same"; scoped by the logger's name for logging, by
            ``category`` for the warning.
        message, args: as for :meth:`logging.Logger.log`.
        log: the logger, or a tracker's adapter (default: the package's).
        seen: the set of keys already logged: this process's by default, or an object's own
            (so that a new object logs again). The warning is once per process whatever it is.
        level: the level of the first report.
        category: a :class:`Warning` subclass (the package's ``CodeCarbonCallbacksWarning``) for
            what the user must act on: the first time ``(category, key)`` is seen in this process
            the message is also issued with :func:`warnings.warn`, attributed to the first caller
            outside the package. None (the default, and on a distributed run's ranks other than
            zero): logging only.

    Never raises: a warnings filter that turns the category into an error is not allowed to
    stop training from inside the package (the message is still logged).
    """
    target = log or logger
    token = (target.name, key)
    warning_token = (f"{category.__module__}.{category.__qualname__}", key) if category else None
    with _warned_lock:
        registry = _warned if seen is None else seen
        first = token not in registry
        registry.add(token)
        warn_now = warning_token is not None and warning_token not in _warned
        if warning_token is not None:
            _warned.add(warning_token)
    target.log(level if first else logging.DEBUG, message, *args)
    if warn_now and category is not None:
        try:
            warnings.warn(
                message % args if args else message,
                category,
                stacklevel=_stacklevel_outside_package(),
            )
        except Exception as e:  # an "error" filter: training goes on
            target.debug("warning not issued: %s: %s", type(e).__name__, e)


def _stacklevel_outside_package() -> int:
    """The ``stacklevel`` of :func:`warn_once`'s ``warnings.warn`` that names the first frame
    outside both packages (the user's line), or warn_once's caller when every frame is ours (a
    background thread)."""
    frame: FrameType | None = sys._getframe(2)  # warn_once's caller
    level = 2
    while frame is not None:
        if not str(frame.f_globals.get("__name__", "")).startswith(_PACKAGE_PREFIX):
            return level
        frame = frame.f_back
        level += 1
    return 2


def imported_torch() -> ModuleType | None:
    """torch, only when the user's process has already imported it; never imports it."""
    return sys.modules.get("torch")


def write_json_atomic(
    path: str | os.PathLike[str], data: Any, *, fsync: bool = False, **dump_options: Any
) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the new, whole.

    A temporary file in the same folder is written (and fsync'd when ``fsync``), then renamed
    over ``path``; the folder is created when missing. ``dump_options`` go to :func:`json.dump`.

    Raises:
        OSError: the folder or the file cannot be written (the temporary file is removed).
        ValueError, TypeError: ``data`` is not JSON-serialisable.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # not *.json: readers that list a folder (the spool, tests) never take it for a record
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tmp", dir=directory)
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
