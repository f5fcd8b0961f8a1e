"""Fresh locks in a forked child (DataLoader workers fork while the sampler may hold a lock).

A component (or a tracker) that guards its state with ``self._lock`` calls :func:`track` once;
after ``fork``, the child replaces each tracked owner's lock with a new one, so that a lock held
by the parent's sampler thread at the moment of the fork (that thread does not exist in the
child) cannot deadlock the child.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

#: each tracked owner, with what makes its lock (threading.Lock or threading.RLock)
_OWNERS: weakref.WeakKeyDictionary[Any, Callable[[], Any]] = weakref.WeakKeyDictionary()


def track(owner: Any, make_lock: Callable[[], Any] = threading.Lock) -> None:
    """Give ``owner._lock`` a fresh lock (``make_lock()``) in forked children."""
    _OWNERS[owner] = make_lock


def _after_fork_in_child() -> None:
    for owner, make_lock in list(_OWNERS.items()):
        owner._lock = make_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
