"""CPU time and memory of a process and its children (psutil), for tracking_mode="process".

The tree is this process (or ``pid``) plus its live descendants. CPU time is accounted per pid
from ``cpu_times()`` (user + system of each process, never ``children_*``, so a child reaped by
its parent is not counted twice); a child that exits keeps what we last saw of it. The list of
children is refreshed at most every ``refresh_children_s`` (it scans /proc).
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

    def __init__(self, pid: int | None = None, refresh_children_s: float = 2.0) -> None:
        import psutil

        self._psutil = psutil
        self.pid = os.getpid() if pid is None else pid
        self.root = psutil.Process(self.pid)
        self._refresh_children_s = refresh_children_s
        self._children: list[Any] = []
        self._children_at = -1e18
        # pid -> (create_time, last CPU seconds seen); kept after the process exits
        self._cpu_by_pid: dict[tuple[int, float], float] = {}

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
        """User + system CPU seconds used by the tree since each process started."""
        for proc in self._members():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
            except (self._psutil.Error, OSError):
                continue
            self._cpu_by_pid[key] = max(self._cpu_by_pid.get(key, 0.0), times.user + times.system)
        return sum(self._cpu_by_pid.values())

    def rss_bytes(self) -> int:
        """Resident memory of the tree now (shared pages counted in each process)."""
        total = 0
        for proc in self._members():
            try:
                total += proc.memory_info().rss
            except (self._psutil.Error, OSError):
                continue
        return total
