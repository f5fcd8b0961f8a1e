"""Fresh locks in a forked child (DataLoader workers fork while the sampler may hold a lock).

A component that guards its state with ``self._lock`` calls :func:`track` once; after ``fork``,
the child replaces each tracked component's lock with a new one, so that a lock held by the
parent's sampler thread at the moment of the fork (that thread does not exist in the child)
cannot deadlock the child.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()


def track(owner: Any) -> None:
    """Give ``owner._lock`` a fresh lock in forked children."""
    _OWNERS.add(owner)


def _after_fork_in_child() -> None:
    for owner in list(_OWNERS):
        owner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
