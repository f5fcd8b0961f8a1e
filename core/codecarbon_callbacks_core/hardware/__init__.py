"""Hardware backends and the factory that picks them.

``detect_components()`` returns what to measure (CPU, GPUs, RAM) and notes for the user (what is
missing, what was estimated, and how to do better); ``report_notes()`` tells the user, once per
process each. CPU: RAPL > TDP x load estimate > constant.
GPU: NVML (none, silently, on machines without an NVIDIA driver), then AMD GPUs through amdsmi
(none, silently, where no AMD GPU is listed). RAM: RAPL DRAM (with
``rapl_include_dram``) > the per-GB model; ``force_*`` values win over everything.

Example:
    >>> from codecarbon_callbacks_core.hardware import detect_components
    >>> components, notes = detect_components(nvml=False)
    >>> sorted({c.kind for c in components}) == ["cpu", "ram"]
    True
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning, HardwareError
from codecarbon_callbacks_core.hardware.base import Component, DetectionHint, MeasurementMethod

logger = logging.getLogger(__name__)

__all__ = [
    "Component",
    "DetectionHint",
    "HardwareError",
    "HardwarePresence",
    "MeasurementMethod",
    "detect_components",
    "detect_for_config",
    "detect_cpu",
    "probe_presence",
    "read_energy_concurrently",
    "report_notes",
]

_TRACKING_MODES = ("machine", "process")


def _check_power(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of watts >= 0 (or None), got {value!r}")
    return float(value)


def detect_cpu(
    *,
    tracking_mode: str = "machine",
    force_cpu_power: float | None = None,
    rapl_include_dram: bool = False,
    rapl_prefer_psys: bool = False,
    force_mode_cpu_load: bool = False,
    powercap_root: str | os.PathLike[str] = "/sys/class/powercap",
    cpuinfo_path: str = "/proc/cpuinfo",
    pid: int | None = None,
    rapl_opener: Any = None,
) -> tuple[list[Component], list[str]]:
    """The CPU components (and RAPL DRAM ones, kind "ram", when asked), with notes.

    In order: ``force_cpu_power`` (a constant), RAPL (unless ``force_mode_cpu_load``), the
    TDP x load estimate for a model in the TDP table, a constant per logical CPU.
    """
    from codecarbon_callbacks_core.hardware.cpu_estimate import ConstantPowerComponent
    from codecarbon_callbacks_core.hardware.cpu_model import read_cpu_info

    notes: list[str] = []
    model, sockets = read_cpu_info(cpuinfo_path)
    if force_cpu_power is not None:
        forced = ConstantPowerComponent(
            kind="cpu",
            name="cpu:forced",
            model=model,
            power_w=force_cpu_power,
            reason="force_cpu_power",
        )
        return [forced], notes
    if not force_mode_cpu_load:
        found = _rapl_cpu(
            tracking_mode=tracking_mode,
            include_dram=rapl_include_dram,
            prefer_psys=rapl_prefer_psys,
            powercap_root=powercap_root,
            model=model,
            pid=pid,
            opener=rapl_opener,
            notes=notes,
        )
        if found is not None:
            return found
    return _estimated_cpu(
        model,
        sockets,
        tracking_mode=tracking_mode,
        forced_load=force_mode_cpu_load,
        pid=pid,
        notes=notes,
    )


def _rapl_cpu(
    *,
    tracking_mode: str,
    include_dram: bool,
    prefer_psys: bool,
    powercap_root: str | os.PathLike[str],
    model: str,
    pid: int | None,
    opener: Any,
    notes: list[str],
) -> tuple[list[Component], list[str]] | None:
    """RAPL's components and notes, or None (a refusal noted in ``notes``) when it cannot."""
    from codecarbon_callbacks_core.hardware import rapl

    try:
        components, rapl_notes = rapl.detect_rapl(
            powercap_root=powercap_root,
            include_dram=include_dram and tracking_mode == "machine",
            prefer_psys=prefer_psys,
            model=model,
            opener=opener or rapl.read_sysfs,
        )
    except HardwareError as error:
        from codecarbon_callbacks_core.hardware.diagnose import rapl_finding

        finding = rapl_finding(error)
        if finding.state == "refused":
            notes.append(f"CPU: RAPL refused, so CPU power is estimated. {finding.reason}")
        else:
            logger.debug("no RAPL: %s (%s)", finding.reason, finding.fix)
        return None
    if tracking_mode == "process":
        # the packages' energy, split by this process tree's share of busy CPU time
        packages = [c for c in components if c.kind == "cpu"]
        return [rapl.ProcessShareComponent(packages, pid)], rapl_notes
    return list(components), rapl_notes


def _estimated_cpu(
    model: str,
    sockets: int,
    *,
    tracking_mode: str,
    forced_load: bool,
    pid: int | None,
    notes: list[str],
) -> tuple[list[Component], list[str]]:
    """No RAPL: TDP x load for a known model (or with ``force_mode_cpu_load``), else a constant."""
    from codecarbon_callbacks_core.hardware import accuracy
    from codecarbon_callbacks_core.hardware.cpu_estimate import (
        UNKNOWN_CPU_TDP_W_PER_THREAD,
        UNKNOWN_CPU_W_PER_THREAD,
        ConstantPowerComponent,
        CpuLoadComponent,
        unknown_cpu_power_w,
    )
    from codecarbon_callbacks_core.hardware.cpu_model import lookup_tdp_w
    from codecarbon_callbacks_core.system import logical_cpu_count

    cpu_count = logical_cpu_count()
    match = lookup_tdp_w(model) if model else None
    if match is not None:
        table_model, tdp_w = match
        if not notes and not forced_load:
            notes.append(
                f"CPU: no RAPL counter; power estimated from TDP x load ({model!r} -> "
                f"{table_model!r}, {tdp_w:g} W x {sockets} socket(s))"
            )
        load = CpuLoadComponent(
            tdp_w=tdp_w * sockets, model=model, tracking_mode=tracking_mode, pid=pid
        )
        return [load], notes
    if forced_load:
        tdp_w = UNKNOWN_CPU_TDP_W_PER_THREAD * cpu_count
        notes.append(
            f"CPU: model {model or 'unknown'!r} is not in the TDP table; force_mode_cpu_load "
            f"uses an assumed TDP of {UNKNOWN_CPU_TDP_W_PER_THREAD:g} W x {cpu_count} threads"
        )
        return [
            CpuLoadComponent(tdp_w=tdp_w, model=model, tracking_mode=tracking_mode, pid=pid)
        ], notes
    power_w = unknown_cpu_power_w(cpu_count)
    notes.append(
        f"CPU: no RAPL counter and model {model or 'unknown'!r} is not in the TDP table: counted "
        f"at a constant {UNKNOWN_CPU_W_PER_THREAD:g} W x {cpu_count} threads = {power_w:g} W. "
        "Set force_cpu_power=<W> if you know better."
    )
    constant = ConstantPowerComponent(
        kind="cpu",
        name="cpu:constant",
        model=model,
        power_w=power_w,
        reason=f"unknown model: {UNKNOWN_CPU_W_PER_THREAD:g} W per logical CPU",
        bound_fraction=accuracy.UNKNOWN_CPU_BOUND,
        bound_source=accuracy.UNKNOWN_CPU_SOURCE,
    )
    return [constant], notes


def detect_components(
    *,
    tracking_mode: str = "machine",
    gpu_ids: str | int | Iterable[int | str] | None = None,
    force_cpu_power: float | None = None,
    force_ram_power: float | None = None,
    rapl_include_dram: bool = False,
    rapl_prefer_psys: bool = False,
    force_mode_cpu_load: bool = False,
    powercap_root: str | os.PathLike[str] = "/sys/class/powercap",
    cpuinfo_path: str = "/proc/cpuinfo",
    nvml: Any = None,
    environ: Mapping[str, str] | None = None,
    pid: int | None = None,
    strict_gpu_ids: bool = False,
    amdsmi: Any = None,
) -> tuple[list[Component], list[str]]:
    """Find what to measure: CPU, GPUs, RAM (in that order), and notes for the user.

    Args:
        tracking_mode: "machine" (the whole machine) or "process" (this process and its
            children: RAPL package energy split by their share of busy CPU time, or TDP x their
            load; RAM from their RSS).
        gpu_ids: GPUs to measure: ints or UUIDs (see ``nvml_select.select_devices``); None for all.
        force_cpu_power: a constant CPU power in W instead of any measurement.
        force_ram_power: a constant RAM power in W instead of the model.
        rapl_include_dram: measure RAM with the RAPL DRAM zones where present.
        rapl_prefer_psys: use the RAPL psys (platform) zone instead of the packages.
        force_mode_cpu_load: use the TDP x load estimate even where RAPL works.
        powercap_root, cpuinfo_path: where to read sysfs and cpuinfo (tests pass fakes).
        nvml: the pynvml module or a fake; None imports pynvml lazily; False skips GPUs.
        environ: where to read CUDA_VISIBLE_DEVICES, and ROCR_VISIBLE_DEVICES /
            HIP_VISIBLE_DEVICES for AMD GPUs (default os.environ).
        pid: the process to follow in process mode (default: this one).
        strict_gpu_ids: ``gpu_ids`` are the user's: an entry that matches no visible GPU
            raises ConfigError (listing the visible GPUs) instead of being ignored (NVIDIA
            GPUs; for AMD GPUs such an entry is noted).
        amdsmi: the amdsmi module or a fake; None imports amdsmi lazily where an AMD GPU is
            listed; False skips AMD GPUs.

    Returns:
        ``(components, notes)``. Never raises for missing or refusing hardware; raises
        ValueError for a bad argument (naming it), ConfigError for ``gpu_ids`` that match no
        visible GPU with ``strict_gpu_ids``.
    """
    if tracking_mode not in _TRACKING_MODES:
        raise ValueError(f"tracking_mode must be one of {_TRACKING_MODES}, got {tracking_mode!r}")
    force_cpu_power = _check_power("force_cpu_power", force_cpu_power)
    force_ram_power = _check_power("force_ram_power", force_ram_power)
    components: list[Component] = []
    notes: list[str] = []
    cpu, cpu_notes = detect_cpu(
        tracking_mode=tracking_mode,
        force_cpu_power=force_cpu_power,
        rapl_include_dram=rapl_include_dram,
        rapl_prefer_psys=rapl_prefer_psys,
        force_mode_cpu_load=force_mode_cpu_load,
        powercap_root=powercap_root,
        cpuinfo_path=cpuinfo_path,
        pid=pid,
    )
    rapl_ram = [c for c in cpu if c.kind == "ram"]
    components.extend(c for c in cpu if c.kind != "ram")
    notes.extend(cpu_notes)
    gpus, gpu_notes = _detect_gpus(
        nvml=nvml, amdsmi=amdsmi, gpu_ids=gpu_ids, environ=environ, strict_gpu_ids=strict_gpu_ids
    )
    components.extend(gpus)
    notes.extend(gpu_notes)
    components.extend(
        _ram_components(
            tracking_mode=tracking_mode, force_ram_power=force_ram_power, rapl_ram=rapl_ram, pid=pid
        )
    )
    return components, notes


def _detect_gpus(
    *,
    nvml: Any,
    amdsmi: Any,
    gpu_ids: str | int | Iterable[int | str] | None,
    environ: Mapping[str, str] | None,
    strict_gpu_ids: bool,
) -> tuple[list[Component], list[str]]:
    """NVIDIA GPUs through NVML, then AMD GPUs through amdsmi (False skips either)."""
    components: list[Component] = []
    notes: list[str] = []
    if nvml is not False:
        from codecarbon_callbacks_core.hardware.nvml import detect_nvml

        gpus, gpu_notes = detect_nvml(
            nvml=nvml, gpu_ids=gpu_ids, environ=environ, strict_gpu_ids=strict_gpu_ids
        )
        components.extend(gpus)
        notes.extend(gpu_notes)
    nvidia = bool(components)
    if amdsmi is not False:
        from codecarbon_callbacks_core.hardware.amdsmi import detect_amdsmi

        amd_gpus, amd_notes = detect_amdsmi(amdsmi=amdsmi, gpu_ids=gpu_ids, environ=environ)
        components.extend(amd_gpus)
        # a gpu_ids entry that names an NVIDIA GPU is no AMD GPU's: say so only without one
        notes.extend(n for n in amd_notes if not (nvidia and n.startswith("gpu_ids entry")))
    return components, notes


def _ram_components(
    *,
    tracking_mode: str,
    force_ram_power: float | None,
    rapl_ram: list[Component],
    pid: int | None,
) -> list[Component]:
    """RAM: a forced constant > RAPL DRAM zones (machine mode) > process RSS > the per-GB model."""
    from codecarbon_callbacks_core.hardware import ram

    if force_ram_power is not None:
        return [ram.forced_ram_component(force_ram_power)]
    if rapl_ram and tracking_mode == "machine":
        return list(rapl_ram)
    if tracking_mode == "process":
        return [ram.ProcessRamComponent(pid)]
    return [ram.machine_ram_component()]


def read_energy_concurrently(components: Any, now_s: float) -> list[float]:
    """``energy_j(now_s)`` of each component, slow GPU counters read in parallel threads."""
    from codecarbon_callbacks_core.hardware.edge_reads import read_energy_concurrently as read

    return read(components, now_s)


def detect_for_config(config: Any, **overrides: Any) -> tuple[list[Component], list[str]]:
    """``detect_components`` with a tracker configuration's hardware parameters.

    ``overrides`` replace some of them (a distributed rank passes its own ``gpu_ids``).
    The configuration's own ``gpu_ids`` are the user's: one that matches no visible GPU raises
    :class:`~codecarbon_callbacks_core.errors.ConfigError` (at start(), before any training
    step); ``gpu_ids`` found by the caller (a rank's CUDA device) are only noted.
    """
    parameters: dict[str, Any] = {
        "tracking_mode": config.tracking_mode,
        "gpu_ids": config.gpu_ids,
        "force_cpu_power": config.force_cpu_power,
        "force_ram_power": config.force_ram_power,
        "rapl_include_dram": config.rapl_include_dram,
        "rapl_prefer_psys": config.rapl_prefer_psys,
        "force_mode_cpu_load": config.force_mode_cpu_load,
    }
    parameters.update(overrides)
    if "strict_gpu_ids" not in overrides:
        parameters["strict_gpu_ids"] = (
            config.gpu_ids is not None and parameters["gpu_ids"] == config.gpu_ids
        )
    return detect_components(**parameters)


def report_notes(
    notes: Iterable[str],
    *,
    log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    seen: set[tuple[str, str]] | None = None,
    user_warning: bool = True,
) -> None:
    """Tell the user what detection found, once per process per note.

    Each note is logged at WARNING level. A note about a component that is estimated, counted at
    a constant or not measured (every note but a :class:`DetectionHint`) is also issued, the
    first time in this process, as a
    :class:`~codecarbon_callbacks_core.errors.CodeCarbonCallbacksWarning`.

    Args:
        notes: ``detect_components``'s notes.
        log: the logger (default: this module's).
        seen: as for ``warn_once``: the keys already logged (default: the process's).
        user_warning: False logs only (a distributed run's ranks other than zero).
    """
    for note in notes:
        warn = user_warning and not isinstance(note, DetectionHint)
        warn_once(
            f"hardware: {note}",
            "%s",
            note,
            log=log or logger,
            seen=seen,
            category=CodeCarbonCallbacksWarning if warn else None,
        )


@dataclass(frozen=True)
class HardwarePresence:
    """What the machine has, measured or not: the facts behind "how to measure better".

    Attributes:
        rapl: ``"readable"`` (a RAPL package zone's ``energy_uj`` is readable by this user),
            ``"unreadable"`` (zones exist, none readable: Linux >= 5.10 without a grant),
            ``"absent"`` (no zone: a VM, a container without /sys/class/powercap, some CPUs)
            or ``"not_linux"``.
        nvidia_driver: an NVIDIA driver is installed (Linux only: the entries NVML's own check
            looks for; False elsewhere, where it cannot be told cheaply).
        amd_gpu: a GPU of AMD's PCI vendor id (0x1002) is listed under ``/sys/class/drm``.
        in_container: a Docker or Podman marker file exists (``/.dockerenv``,
            ``/run/.containerenv``).
    """

    rapl: str
    nvidia_driver: bool
    amd_gpu: bool
    in_container: bool


def _rapl_presence(powercap_root: Path, opener: Any) -> str:
    from codecarbon_callbacks_core.hardware.rapl import is_package_zone, read_sysfs

    def readable(zone: str) -> bool:
        try:
            (opener or read_sysfs)(powercap_root / zone / "energy_uj")
            return True
        except OSError:
            return False

    try:
        zones = sorted(entry for entry in os.listdir(powercap_root) if is_package_zone(entry))
    except OSError:
        return "absent"
    if not zones:
        return "absent"
    if any(readable(zone) for zone in zones):
        return "readable"
    return "unreadable"


def probe_presence(
    *,
    powercap_root: str | os.PathLike[str] = "/sys/class/powercap",
    drm_root: str | os.PathLike[str] = "/sys/class/drm",
    platform: str | None = None,
    rapl_opener: Any = None,
) -> HardwarePresence:
    """Cheap filesystem checks (no NVML, no counter read) of what the machine has.

    ``detect`` uses them to say what is missing and how to fix it, beside
    :func:`detect_components`, which says what is measured.

    Args:
        powercap_root, drm_root: where to look (tests pass fakes).
        platform: ``sys.platform`` (default: this machine's).
        rapl_opener: reads a sysfs file (default ``rapl.read_sysfs``; tests pass one that
            refuses, as the kernel does for non-root users).

    Returns:
        A :class:`HardwarePresence`. Never raises: an unreadable folder counts as absent.
    """
    if not (platform or sys.platform).startswith("linux"):
        return HardwarePresence(
            rapl="not_linux", nvidia_driver=False, amd_gpu=False, in_container=False
        )
    from codecarbon_callbacks_core.hardware.diagnose import (
        amd_gpu_present,
        in_container,
        nvidia_driver_present,
    )

    return HardwarePresence(
        rapl=_rapl_presence(Path(powercap_root), rapl_opener),
        nvidia_driver=nvidia_driver_present(),
        amd_gpu=amd_gpu_present(drm_root),
        in_container=in_container(),
    )
