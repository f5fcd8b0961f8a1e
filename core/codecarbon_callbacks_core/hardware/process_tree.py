"""CPU time and memory of a process and its children (psutil), for tracking_mode="process".

The tree is this process (or ``pid``) plus its live descendants. CPU time is the sum over the
live members of user + system + children_user + children_system: the kernel adds a child's
times (and its own reaped descendants') to its parent's ``children_*`` when the parent waits for
it, so a child moves from "live" to "reaped" without being counted twice, and a short-lived child
that we never saw alive still counts once reaped. A member that vanishes without being reaped
inside the tree (re-parented to init) would lower the sum: the total is kept non-decreasing by
carrying what it had counted. The list of children is refreshed at most every
``refresh_children_s`` (it scans /proc).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

logger = logging.getLogger(__name__)


class ProcessTree:
    """Cumulative CPU seconds and current RSS of a process tree.

    Example:
        >>> tree = ProcessTree()
        >>> tree.cpu_seconds() >= 0.0
        True
    """

    def __init__(self, pid: int | None = None, refresh_children_s: float = 0.5) -> None:
        import psutil

        self._psutil = psutil
        self.pid = os.getpid() if pid is None else pid
        self.root = psutil.Process(self.pid)
        self._refresh_children_s = refresh_children_s
        self._children: list[Any] = []
        self._children_at = -1e18
        self._last_raw_s = 0.0
        self._carried_s = 0.0

    def _members(self) -> list[Any]:
        now = time.monotonic()
        if now - self._children_at >= self._refresh_children_s:
            try:
                self._children = self.root.children(recursive=True)
            except (self._psutil.Error, OSError) as error:
                logger.debug("cannot list children of %s: %s", self.pid, error)
                self._children = []
            self._children_at = now
        return [self.root, *self._children]

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) used by the tree, non-decreasing."""
        raw = 0.0
        for proc in self._members():
            try:
                times = proc.cpu_times()
            except (self._psutil.Error, OSError):
                continue
            raw += times.user + times.system
            raw += getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)
        if raw < self._last_raw_s:  # a member left the tree unreaped: keep what it had used
            self._carried_s += self._last_raw_s - raw
        self._last_raw_s = raw
        return raw + self._carried_s

    def rss_bytes(self) -> int:
        """Resident memory of the tree now (shared pages counted in each process)."""
        total = 0
        for proc in self._members():
            try:
                total += proc.memory_info().rss
            except (self._psutil.Error, OSError):
                continue
        return total
