"""Whether this process runs under a cgroup CPU quota or memory limit (a container, a SLURM
allocation, a systemd slice), and what the tracking mode then counts.

RAPL, the CPU estimate and the RAM model measure the whole machine: in ``machine`` tracking mode
a record counts the node's CPU and RAM even when the process may use only a few cores and a
slice of the memory. :func:`container_limits` reads the limits once per run; ``detect`` shows
them, and each record's metadata carries them under ``"container"`` (only when a limit is set).

Sources (cgroup v2, then v1), for the process's own cgroup and each of its ancestors (the
tightest limit wins, as the kernel applies it):

- CPU: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``); v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us`` (``-1``: no quota). Quota / period = the cores' worth of CPU time.
- Memory: ``memory.max`` (``"max"``: none); v1 ``memory.limit_in_bytes`` (a value of 2**60 or
  more is the kernel's "unlimited").

The process's cgroup comes from ``/proc/self/cgroup``; inside a container whose cgroup namespace
hides that path, the mount's root is the container's own cgroup and is read instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ContainerLimits", "container_limits"]

#: v1 writes "unlimited" as a huge page-aligned number (9223372036854771712)
_V1_UNLIMITED = 2**60


@dataclass(frozen=True)
class ContainerLimits:
    """The cgroup limits that apply to this process.

    Attributes:
        cpu_quota_cores: CPU time allowed per wall second, in cores (``1.5``: one and a half
            cores); None without a quota.
        memory_limit_bytes: the memory limit in bytes; None without a limit.
        cgroup_version: 1 or 2, the hierarchy the limits were read from.
    """

    cpu_quota_cores: float | None = None
    memory_limit_bytes: int | None = None
    cgroup_version: int = 2

    @property
    def limited(self) -> bool:
        """True when a CPU quota or a memory limit is set."""
        return self.cpu_quota_cores is not None or self.memory_limit_bytes is not None

    def describe_limits(self) -> str:
        """The limits in words, e.g. ``"a CPU quota of 2 cores and a memory limit of 4.0 GiB"``."""
        parts = []
        if self.cpu_quota_cores is not None:
            parts.append(f"a CPU quota of {self.cpu_quota_cores:g} cores")
        if self.memory_limit_bytes is not None:
            parts.append(f"a memory limit of {self.memory_limit_bytes / 1024**3:.1f} GiB")
        return " and ".join(parts) if parts else "no CPU quota or memory limit"

    def counts(self, tracking_mode: str) -> str:
        """What ``tracking_mode`` counts under these limits, in one sentence."""
        if tracking_mode == "process":
            return (
                "process mode counts this process's share of the CPU energy and its own "
                "memory (RSS), within the limits"
            )
        return (
            "machine mode counts the whole node's CPU and RAM, not the container's share; "
            'tracking_mode="process" counts this process only'
        )

    def as_metadata(self, tracking_mode: str) -> dict[str, Any]:
        """The record's ``metadata["container"]``: the limits and what the mode counts."""
        return {
            "cgroup_version": self.cgroup_version,
            "cpu_quota_cores": self.cpu_quota_cores,
            "memory_limit_bytes": self.memory_limit_bytes,
            "tracking_mode_counts": self.counts(tracking_mode),
        }


def _read(path: Path) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(256).strip()
    except OSError:
        return None


def _own_cgroups(root: Path) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controller (``""`` for v2): path}."""
    text = _read(root / "proc/self/cgroup") or ""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) == 3:
            for controller in fields[1].split(",") if fields[1] else [""]:
                paths[controller.removeprefix("name=")] = fields[2]
    return paths


def _chain(mount: Path, own: str | None) -> list[Path]:
    """The process's cgroup folder under ``mount`` and its ancestors up to ``mount``; just
    ``mount`` when that folder is not visible (a cgroup namespace)."""
    if own:
        folder = mount / own.lstrip("/")
        if folder.is_dir():
            chain = [folder]
            while folder != mount and mount in folder.parents:
                folder = folder.parent
                chain.append(folder)
            return chain
    return [mount]


def _tightest(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _v2_cpu(folder: Path) -> float | None:
    fields = (_read(folder / "cpu.max") or "").split()
    if len(fields) == 2 and fields[0] != "max":
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def _v2_memory(folder: Path) -> float | None:
    value = _read(folder / "memory.max")
    return float(value) if value and value.isdigit() else None


def _v1_cpu(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        quota_us, period_us = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _v1_memory(folder: Path) -> float | None:
    value = _read(folder / "memory.limit_in_bytes")
    if value and value.isdigit() and int(value) < _V1_UNLIMITED:
        return float(value)
    return None


def _v1_mount(base: Path, controller: str) -> Path | None:
    for name in (controller, "cpu,cpuacct", "cpuacct,cpu"):
        if (base / name).is_dir():
            return base / name
    return None


def container_limits(root: str | os.PathLike[str] = "/") -> ContainerLimits | None:
    """The cgroup CPU quota and memory limit of this process (see the module's sources).

    Args:
        root: the file system root holding ``proc/self/cgroup`` and ``sys/fs/cgroup`` (tests
            point it at a fake tree).

    Returns:
        The limits, or None when neither a CPU quota nor a memory limit is set, or when no
        cgroup file system is readable (not Linux). Never raises.
    """
    base = Path(root) / "sys/fs/cgroup"
    own = _own_cgroups(Path(root))
    if (base / "cgroup.controllers").is_file():  # the unified (v2) hierarchy
        chain = _chain(base, own.get(""))
        limits = ContainerLimits(
            cpu_quota_cores=_tightest([_v2_cpu(f) for f in chain]),
            memory_limit_bytes=_int(_tightest([_v2_memory(f) for f in chain])),
            cgroup_version=2,
        )
    else:
        cpu_mount, memory_mount = _v1_mount(base, "cpu"), _v1_mount(base, "memory")
        cpu_chain = _chain(cpu_mount, own.get("cpu")) if cpu_mount else []
        memory_chain = _chain(memory_mount, own.get("memory")) if memory_mount else []
        limits = ContainerLimits(
            cpu_quota_cores=_tightest([_v1_cpu(f) for f in cpu_chain]),
            memory_limit_bytes=_int(_tightest([_v1_memory(f) for f in memory_chain])),
            cgroup_version=1,
        )
    return limits if limits.limited else None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
