"""How a tracker's run ends when its process or thread does: SIGTERM, an uncaught exception, exit.

Every ending leaves a run row whose status says what happened:

- ``interrupted``: SIGTERM (what SLURM, Kubernetes and ``docker stop`` send), or an uncaught
  ``KeyboardInterrupt``.
- ``failed``: an uncaught exception ended the thread that started the tracker (``sys.excepthook``
  for the main thread, ``threading.excepthook`` for others).
- ``incomplete``: the interpreter exited with the run still open (``atexit``).

The SIGTERM handler and the exception hooks serve *plain* trackers, the ones the user starts and
stops. A tracker driven by a framework callback (one with a ``record_combiner``, which the
session always sets) leaves these endings to the framework's own hooks, so that nothing is
written twice. The hooks are process-wide, installed when the first plain tracker starts and
restored when the last one stops:

- SIGTERM: installed only from the main thread, and only when no handler is set (``SIG_DFL``) or
  over a Python handler of the user's, which ours calls after writing the rows. Restored only if
  it is still ours (a framework that chained it keeps it). With no handler of the user's, the
  default action follows: the process ends by the signal, as it would have.
- ``sys.excepthook`` and ``threading.excepthook``: chained; the previous hook always runs after
  ours. Restored only if still ours.

In a notebook (IPython, Jupyter), an exception in a cell is shown by the kernel and never reaches
``sys.excepthook``: the run stays open, and is written ``incomplete`` when the kernel exits (or
with the status given to ``stop()``). Use ``with tracker:`` to get ``failed`` there.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: stop() bound used when the process ends (the default action of SIGTERM follows it)
ENDING_STOP_TIMEOUT_S = 10.0


class _Run(Protocol):
    """What this module needs of a tracker (it never imports the tracker)."""

    run_id: str

    @property
    def is_running(self) -> bool: ...

    def stop(
        self,
        *,
        status: str | None = ...,
        window_status: str | None = ...,
        timeout_s: float | None = ...,
    ) -> float | None: ...


#: every running tracker (for the exit hook), and the plain ones with the thread that started them
_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()
_PLAIN: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_lock = threading.RLock()
_exit_hook_installed = False


def register(run: _Run, *, plain: bool) -> None:
    """A tracker started: write it at exit; if plain, at SIGTERM and uncaught exceptions too."""
    global _exit_hook_installed
    with _lock:
        _OPEN.add(run)
        if not _exit_hook_installed:
            atexit.register(_stop_open_runs)
            _exit_hook_installed = True
        if plain:
            _PLAIN[run] = threading.get_ident()
            _install_hooks()
        else:
            _forget_plain(run)


def set_plain(run: _Run, plain: bool) -> None:
    """A running tracker joined (``plain=False``) or left a framework callback's run."""
    with _lock:
        if run not in _OPEN:
            return
        if plain and run not in _PLAIN:
            _PLAIN[run] = threading.get_ident()
            _install_hooks()
        elif not plain:
            _forget_plain(run)


def unregister(run: _Run) -> None:
    """A tracker stopped: its hooks go when no plain tracker is left."""
    with _lock:
        _OPEN.discard(run)
        _forget_plain(run)


def _forget_plain(run: _Run) -> None:
    _PLAIN.pop(run, None)
    if not _PLAIN:
        _restore_hooks()


def _stop_runs(runs: list[Any], status: str, why: str) -> None:
    for run in runs:
        try:
            if run.is_running:
                logger.warning("run %s: %s: written as %s", run.run_id, why, status)
                run.stop(status=status, timeout_s=ENDING_STOP_TIMEOUT_S)
        except Exception as e:  # the process is ending: never raise from here
            logger.debug("could not stop run %s (%s): %s", getattr(run, "run_id", "?"), why, e)


def _stop_open_runs() -> None:
    """atexit: a run still open when the interpreter exits is written as incomplete."""
    with _lock:
        runs = list(_OPEN)
    _stop_runs(runs, "incomplete", "still open at exit")


def _plain_runs(thread_id: int | None = None) -> list[Any]:
    with _lock:
        return [
            run
            for run, started_on in list(_PLAIN.items())
            if thread_id is None or started_on == thread_id
        ]


# -- SIGTERM ---------------------------------------------------------------------------------------


class _SigtermHandler:
    """Ours: write the plain runs as interrupted, then what would have happened without us."""

    def __init__(self, previous: Callable[[int, FrameType | None], Any] | int) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        # asked before the runs stop (the last stop() gives the previous handler back)
        on_top = signal.getsignal(signum) is self
        _stop_runs(_plain_runs(), "interrupted", f"terminated by signal {signum}")
        previous = self.previous
        if callable(previous):
            previous(signum, frame)
            return
        if not on_top:
            return  # a framework chained ours into its own handler: it decides what follows
        # The default action: end the process by this signal, as without us.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


class _SysHook:
    """Ours on ``sys.excepthook``: the main thread's plain runs end as failed (or interrupted)."""

    def __init__(self, previous: Callable[..., Any]) -> None:
        self.previous = previous

    def __call__(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
        _stop_runs(
            _plain_runs(threading.main_thread().ident), status, f"uncaught {exc_type.__name__}"
        )
        self.previous(exc_type, exc, tb)


class _ThreadHook:
    """Ours on ``threading.excepthook``: that thread's plain runs end as failed."""

    def __init__(self, previous: Callable[[Any], Any]) -> None:
        self.previous = previous

    def __call__(self, args: Any) -> None:
        thread = args.thread
        if thread is not None and not issubclass(args.exc_type, SystemExit):
            _stop_runs(
                _plain_runs(thread.ident),
                "failed",
                f"uncaught {args.exc_type.__name__} in thread {thread.name}",
            )
        self.previous(args)


_sigterm: _SigtermHandler | None = None
_sys_hook: _SysHook | None = None
_thread_hook: _ThreadHook | None = None


def _install_hooks() -> None:
    global _sigterm, _sys_hook, _thread_hook
    if not isinstance(sys.excepthook, _SysHook):
        _sys_hook = _SysHook(sys.excepthook)
        sys.excepthook = _sys_hook
    if not isinstance(threading.excepthook, _ThreadHook):
        _thread_hook = _ThreadHook(threading.excepthook)
        threading.excepthook = _thread_hook
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    try:
        current = signal.getsignal(signal.SIGTERM)
        if isinstance(current, _SigtermHandler):
            _sigterm = current
            return
        # SIG_IGN (the user wants SIGTERM ignored) and None (set outside Python) are left alone
        if current is signal.SIG_DFL or (callable(current) and current is not signal.SIG_IGN):
            handler = _SigtermHandler(current)
            signal.signal(signal.SIGTERM, handler)
            _sigterm = handler
    except (ValueError, OSError, AttributeError) as e:  # no signals here (a sub-interpreter)
        logger.debug("no SIGTERM handler installed: %s", e)


def _restore_hooks() -> None:
    global _sigterm, _sys_hook, _thread_hook
    if _sys_hook is not None and sys.excepthook is _sys_hook:
        sys.excepthook = _sys_hook.previous
        _sys_hook = None
    if _thread_hook is not None and threading.excepthook is _thread_hook:
        threading.excepthook = _thread_hook.previous
        _thread_hook = None
    ours = _sigterm
    if ours is None or threading.current_thread() is not threading.main_thread():
        return  # left in place: with no plain run, ours only does what would have happened
    previous = ours.previous
    try:
        if signal.getsignal(signal.SIGTERM) is ours:
            signal.signal(signal.SIGTERM, previous)
        _sigterm = None
    except (ValueError, OSError) as e:
        logger.debug("SIGTERM handler not restored: %s", e)


__all__ = ["ENDING_STOP_TIMEOUT_S", "register", "set_plain", "unregister"]
