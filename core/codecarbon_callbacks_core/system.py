"""Cheap machine-wide readings (CPU times, installed RAM) used at start() and every window edge.

On Linux these come straight from ``/proc`` and ``sysconf`` (a few microseconds; ``/proc/stat``
is read with one ``pread`` of a descriptor kept open), so neither ``start()`` nor an edge pays
for importing psutil (~12 ms) or its open-read-close per call (~150 us). Elsewhere, psutil.
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

_PROC_STAT = "/proc/stat"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_stat_fd: int | None = None
_stat_lock = threading.Lock()


class CpuTimes(NamedTuple):
    """Machine CPU seconds since boot, summed over CPUs (``/proc/stat``'s first line)."""

    user: float = 0.0
    nice: float = 0.0
    system: float = 0.0
    idle: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0

    @property
    def total_s(self) -> float:
        return sum(self)

    @property
    def busy_s(self) -> float:
        """Everything but idle and I/O wait."""
        return self.total_s - self.idle - self.iowait


def _read_proc_stat() -> bytes | None:
    global _stat_fd
    if _stat_fd is None:
        with _stat_lock:
            if _stat_fd is None:
                if not os.path.exists(_PROC_STAT):
                    return None
                _stat_fd = os.open(_PROC_STAT, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return os.pread(_stat_fd, 512, 0)


def _stat_ticks() -> list[int] | None:
    """``/proc/stat``'s first line in ticks: user nice system idle iowait irq softirq steal
    (guest and guest_nice are already inside user and nice); None without ``/proc/stat``.
    Raises ValueError on a line that does not parse."""
    data = _read_proc_stat()
    if data is None:
        return None
    return [int(v) for v in data.partition(b"\n")[0].split()[1:9]]


def cpu_times() -> CpuTimes:
    """The machine's CPU times now (zeros if they cannot be read)."""
    try:
        ticks = _stat_ticks()
        if ticks is not None:
            return CpuTimes._make([t / _CLOCK_TICKS for t in ticks])
        import psutil

        t = psutil.cpu_times()
        return CpuTimes(*(float(getattr(t, name, 0.0)) for name in CpuTimes._fields))
    except Exception:
        return CpuTimes()


def cpu_busy_total_s() -> tuple[float, float]:
    """(busy, total) machine CPU seconds since boot: :func:`cpu_times`' ``busy_s`` and
    ``total_s`` in one read, with no object in between (it runs at every window edge)."""
    try:
        ticks = _stat_ticks()
    except Exception:  # as cpu_times: an unreadable line counts nothing
        return 0.0, 0.0
    if ticks is None:  # no /proc: psutil's figures
        times = cpu_times()
        return times.busy_s, times.total_s
    total = sum(ticks)
    return (total - sum(ticks[3:5])) / _CLOCK_TICKS, total / _CLOCK_TICKS


def total_ram_bytes() -> int:
    """Installed RAM in bytes."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        import psutil

        return int(psutil.virtual_memory().total)


def logical_cpu_count() -> int:
    """Logical CPUs of the machine (at least 1)."""
    return os.cpu_count() or 1


def memory_used_bytes() -> tuple[int, int]:
    """(used, total) bytes of the machine's RAM; used = total - available, as psutil reports it."""
    try:
        with open("/proc/meminfo", "rb") as f:
            data = f.read(2048)
        fields = {}
        for line in data.splitlines():
            name, _, rest = line.partition(b":")
            if name in (b"MemTotal", b"MemAvailable"):
                fields[name] = int(rest.split()[0]) * 1024
        total, available = fields[b"MemTotal"], fields[b"MemAvailable"]
        return total - available, total
    except (OSError, KeyError, ValueError, IndexError):
        import psutil

        memory = psutil.virtual_memory()
        return int(memory.total - memory.available), int(memory.total)


def process_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), in bytes."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", "rb") as f:
            return int(f.read().split()[1]) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
