"""CPU (and optionally DRAM) energy from RAPL counters through the Linux powercap sysfs.

Layout read (``powercap_root``, default ``/sys/class/powercap``)::

    intel-rapl:0/            name = "package-0", energy_uj, max_energy_range_uj
    intel-rapl:0/intel-rapl:0:0   name = "core" | "uncore" | "dram"
    intel-rapl:1/            name = "package-1" (second socket) or "psys" (platform)

AMD CPUs appear under the same ``intel-rapl`` control type on current kernels; an ``amd-rapl``
prefix is accepted too. ``intel-rapl-mmio:*`` zones duplicate the package zone and are skipped.
Multi-die parts list one package zone per die::

    intel-rapl:0/            name = "package-0-die-0"
    intel-rapl:1/            name = "package-0-die-1"

On AMD (Threadripper, EPYC, Zen 1/2) every die mirrors the socket's counter; on Intel (Cascade
Lake-AP, ...) each die has its own. :mod:`~codecarbon_callbacks_core.hardware.rapl_mirrors`
tells them apart from the counters' movement while measuring and counts a mirror once.

- one component per package zone (``cpu:package-N``, method ``rapl``);
- ``prefer_psys=True`` and a psys zone present: one ``cpu:psys`` component instead of the packages
  (psys covers the whole SoC platform on client parts);
- ``include_dram=True``: each package's ``dram`` sub-zone becomes a ``ram:dram-N`` component
  (kind ``ram``), which replaces the RAM model. (CodeCarbon adds DRAM to the CPU figure; we keep it
  in the RAM column where it belongs.)

``energy_uj`` wraps at ``max_energy_range_uj`` (about 262 kJ on many parts: 4.4 min at 1 kW). The
sampler reads each counter every ``sample_interval_s`` = min(range / (2 x MAX_PLAUSIBLE_POWER_W),
1 s), so at most one wrap can happen between two reads, and it is added back. On kernels >= 5.10
``energy_uj`` is readable by root only: the detector then raises :class:`HardwareError` saying how
to grant access, and the CPU falls back to the TDP estimate.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from codecarbon_callbacks_core.errors import HardwareError
from codecarbon_callbacks_core.hardware import _forksafe, accuracy
from codecarbon_callbacks_core.hardware.base import (
    Component,
    DetectionHint,
    EdgeReading,
    MeasurementMethod,
    UncertaintyTerm,
    combine,
)
from codecarbon_callbacks_core.hardware.rapl_mirrors import DISTINCT, MirrorJudge, judge_packages

logger = logging.getLogger(__name__)

#: a power no single RAPL domain exceeds, W; sets how often counters are read
MAX_PLAUSIBLE_POWER_W = 1000.0
#: the most time between two reads of a RAPL counter, s
MAX_RAPL_SAMPLE_INTERVAL_S = 1.0

_ZONE = re.compile(r"^(intel-rapl|amd-rapl):(\d+)$")
_SUBZONE = re.compile(r"^(intel-rapl|amd-rapl):(\d+):(\d+)$")

#: the command that makes the RAPL counters readable until reboot
PERMISSION_FIX = "sudo chmod -R a+r /sys/class/powercap/intel-rapl"

PERMISSION_HINT = (
    "RAPL energy counters are readable by root only (Linux >= 5.10). Grant read access with "
    f"`{PERMISSION_FIX}` (until reboot) or a udev rule, e.g. "
    "/etc/udev/rules.d/99-rapl.rules: "
    'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod a+r %S%p/energy_uj"'
)

#: reads a whole sysfs file as text; tests inject one to simulate refusals (root ignores chmod)
Opener = Callable[[Path], str]


def is_package_zone(entry: str) -> bool:
    """Whether a powercap folder name is a top-level RAPL zone (``intel-rapl:0``,
    ``amd-rapl:1``), not a sub-zone or an ``intel-rapl-mmio`` duplicate."""
    return _ZONE.match(entry) is not None


def read_sysfs(path: Path) -> str:
    """Read a sysfs attribute (the default opener)."""
    with open(path, encoding="ascii") as handle:
        return handle.read()


class RaplDomain(Component):
    """One RAPL zone's cumulative energy, with wraparound handled.

    Args:
        path: the zone directory (holding ``energy_uj`` and ``max_energy_range_uj``).
        kind: "cpu" or "ram".
        name: e.g. "cpu:package-0", "ram:dram-0".
        model: the CPU model name.
        opener: reads a sysfs file (injectable for tests).
    """

    def __init__(
        self,
        path: Path,
        *,
        kind: str,
        name: str,
        model: str = "",
        opener: Opener = read_sysfs,
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        self.name = name
        self.model = model
        self.method = MeasurementMethod.RAPL
        self._open = opener
        self._lock = threading.Lock()
        _forksafe.track(self)
        try:
            self.max_energy_range_uj = int(self._open(self.path / "max_energy_range_uj"))
        except (OSError, ValueError):
            self.max_energy_range_uj = 2**32  # the 32-bit MSR, read in uJ, is a safe guess
        range_j = self.max_energy_range_uj / 1e6
        self.sample_interval_s = max(
            0.01, min(range_j / (2 * MAX_PLAUSIBLE_POWER_W), MAX_RAPL_SAMPLE_INTERVAL_S)
        )
        self._last_raw_uj = self.read_uj()  # raises HardwareError when refused
        self._total_uj = 0
        self._last_s: float | None = None
        self._power_w = 0.0
        #: set by a MirrorJudge when several package zones may mirror one counter
        self.mirror_judge: MirrorJudge | None = None
        self.mirror_state = DISTINCT
        self.mirror_of: str | None = None
        self.mirror_reported = False
        self.sensor_accuracy_fraction, self.sensor_accuracy_source = _rapl_accuracy(kind, model)

    @property
    def last_raw_uj(self) -> int:
        """The raw counter at the latest read, µJ."""
        return self._last_raw_uj

    @property
    def total_uj(self) -> int:
        """µJ counted by this zone's counter since ``start()``, mirrored or not."""
        return self._total_uj

    @property
    def counted(self) -> bool:
        """Whether this zone's energy counts (not a mirror, not still being judged)."""
        return self.mirror_state == DISTINCT

    def advance_locked(self, now_s: float) -> None:
        """Read the counter now and add the increment (takes the lock)."""
        with self._lock:
            self._advance(now_s)

    def read_uj(self) -> int:
        """The raw counter, µJ. Raises HardwareError (with how to fix a refusal)."""
        try:
            return int(self._open(self.path / "energy_uj"))
        except PermissionError as error:
            raise HardwareError(
                f"{self.path / 'energy_uj'}: permission denied. {PERMISSION_HINT}"
            ) from error
        except (OSError, ValueError) as error:
            raise HardwareError(f"{self.path / 'energy_uj'}: cannot read: {error}") from error

    def _advance(self, now_s: float) -> None:
        """Read the counter and add the increment (caller holds the lock)."""
        try:
            raw_uj = self.read_uj()
        except HardwareError as error:
            if self.failure is None:
                self.failure = str(error)
                logger.warning("%s: RAPL read failed, keeping the last value: %s", self.name, error)
            return
        delta_uj = raw_uj - self._last_raw_uj
        if delta_uj < 0:  # wrapped once (the sampling interval makes two wraps implausible)
            delta_uj += self.max_energy_range_uj
        self._last_raw_uj = raw_uj
        self._total_uj += delta_uj
        if self._last_s is not None and now_s > self._last_s:
            self._power_w = delta_uj / 1e6 / (now_s - self._last_s)
        self._last_s = now_s

    def start(self, now_s: float) -> None:
        with self._lock:
            try:
                self._last_raw_uj = self.read_uj()
            except HardwareError as error:
                self.failure = str(error)
                logger.warning("%s: %s", self.name, error)
            self._total_uj = 0
            self._last_s = now_s
        judge = self.mirror_judge
        if judge is not None and judge.domains[-1] is self:  # every zone has its origin now
            judge.start()

    def sample(self, now_s: float) -> None:
        judge = self.mirror_judge
        if judge is not None and judge.domains[0] is self and judge.pending:
            judge.judge(now_s)  # reads every zone back to back
            return
        with self._lock:
            self._advance(now_s)

    def energy_j(self, now_s: float) -> float:
        with self._lock:
            self._advance(now_s)
            return self._total_uj / 1e6 if self.counted else 0.0

    def power_w(self) -> float:
        return self._power_w if self.counted else 0.0

    def edge_uncertainty_j(self, now_s: float) -> float:
        """A read sees the counter up to one update (about 1 ms) stale, J."""
        return self.power_w() * accuracy.RAPL_UPDATE_PERIOD_S

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(path=str(self.path), max_energy_range_uj=self.max_energy_range_uj)
        if self.mirror_judge is not None:
            info.update(mirror_state=self.mirror_state, mirror_of=self.mirror_of)
        return info


def _rapl_accuracy(kind: str, model: str) -> tuple[float, str]:
    """The sensor accuracy (fraction, source) of a RAPL zone of ``kind`` on CPU ``model``."""
    if kind == "ram":
        return accuracy.RAPL_DRAM_ACCURACY, accuracy.RAPL_DRAM_SOURCE
    if "amd" in model.lower():
        return accuracy.RAPL_PACKAGE_ACCURACY_AMD, accuracy.RAPL_PACKAGE_SOURCE_AMD
    return accuracy.RAPL_PACKAGE_ACCURACY, accuracy.RAPL_PACKAGE_SOURCE


def _zone_name(path: Path, opener: Opener) -> str:
    try:
        return opener(path / "name").strip()
    except OSError:
        return ""


#: what a powercap folder holds: (package index, path, name) per package zone, psys zones, and
#: (package index, path) per DRAM sub-zone
_Zones = tuple[list[tuple[int, Path, str]], list[Path], list[tuple[int, Path]]]


def _scan_zones(root: Path, opener: Opener) -> _Zones:
    """The package, psys and DRAM zones under ``root``. Raises HardwareError when there is none."""
    try:
        entries = sorted(os.listdir(root))
    except OSError as error:
        raise HardwareError(f"no RAPL: {root} is not readable ({error.strerror})") from error
    packages: list[tuple[int, Path, str]] = []
    psys: list[Path] = []
    drams: list[tuple[int, Path]] = []
    for entry in entries:
        zone = _ZONE.match(entry)
        sub = _SUBZONE.match(entry)
        name = _zone_name(root / entry, opener) if zone or sub else ""
        if zone and name == "psys":
            psys.append(root / entry)
        elif zone and name.startswith("package"):
            packages.append((int(zone.group(2)), root / entry, name))
        elif sub and name == "dram":
            drams.append((int(sub.group(2)), root / entry))
    if not packages and not psys:
        raise HardwareError(f"no RAPL package zone under {root}")
    return packages, psys, drams or _nested_drams(packages, opener)


def _nested_drams(packages: list[tuple[int, Path, str]], opener: Opener) -> list[tuple[int, Path]]:
    """DRAM sub-zones inside their package folders (where real sysfs also nests them)."""
    drams: list[tuple[int, Path]] = []
    for index, path, _ in packages:
        try:
            children = sorted(os.listdir(path))
        except OSError:
            continue
        drams.extend(
            (index, path / child)
            for child in children
            if _SUBZONE.match(child) and _zone_name(path / child, opener) == "dram"
        )
    return drams


def _cpu_domains(
    zones: _Zones, *, prefer_psys: bool, model: str, opener: Opener, notes: list[str]
) -> list[RaplDomain]:
    """The CPU components: psys when preferred and present, else every package zone."""
    packages, psys, _ = zones
    if prefer_psys and psys:
        if packages:
            notes.append("RAPL: psys used instead of the package zones (rapl_prefer_psys=True)")
        return [RaplDomain(psys[0], kind="cpu", name="cpu:psys", model=model, opener=opener)]
    if prefer_psys:
        notes.append("RAPL: rapl_prefer_psys=True but no psys zone: package zones used")
    elif psys:
        notes.append(
            DetectionHint("RAPL: a psys (platform) zone exists; rapl_prefer_psys=True would use it")
        )
    domains = [
        RaplDomain(path, kind="cpu", name=f"cpu:{name}", model=model, opener=opener)
        for _index, path, name in packages
    ]
    judge_packages(domains)  # multi-die parts: mirrored counters are counted once
    return domains


def _dram_domains(
    zones: _Zones, *, include_dram: bool, opener: Opener, notes: list[str]
) -> list[RaplDomain]:
    """The DRAM components (kind "ram") when asked; a note on what was found otherwise."""
    drams = zones[2]
    if include_dram and not drams:
        notes.append("RAPL: rapl_include_dram=True but no dram zone: RAM is estimated")
    elif drams and not include_dram:
        notes.append(
            DetectionHint(
                f"RAPL: {len(drams)} DRAM zone(s) not used; "
                "rapl_include_dram=True would measure RAM"
            )
        )
    if not include_dram:
        return []
    return [
        RaplDomain(path, kind="ram", name=f"ram:dram-{index}", model="DRAM", opener=opener)
        for index, path in drams
    ]


def detect_rapl(
    *,
    powercap_root: str | os.PathLike[str] = "/sys/class/powercap",
    include_dram: bool = False,
    prefer_psys: bool = False,
    model: str = "",
    opener: Opener = read_sysfs,
) -> tuple[list[RaplDomain], list[str]]:
    """Find RAPL zones and open them.

    Several package zones get one :class:`~codecarbon_callbacks_core.hardware.rapl_mirrors.
    MirrorJudge`: zones that mirror one counter (multi-die AMD) are counted once.

    Returns:
        ``(components, notes)``: CPU components (and DRAM as kind "ram" when asked), and notes on
        what was found but not used.

    Raises:
        HardwareError: no RAPL zone (the message says why), or the counters are refused (the
            message says how to grant read access).
    """
    zones = _scan_zones(Path(powercap_root), opener)
    notes: list[str] = []
    components = _cpu_domains(
        zones, prefer_psys=prefer_psys, model=model, opener=opener, notes=notes
    )
    components += _dram_domains(zones, include_dram=include_dram, opener=opener, notes=notes)
    return components, notes


class ProcessShareComponent(Component):
    """A process tree's share of RAPL package energy (``tracking_mode="process"``).

    Between two samples, the packages' energy is attributed to the process tree in proportion to
    its share of the machine's busy CPU time (user + system + nice + irq + softirq): a process
    that keeps the CPUs busy alone gets all of it, idle power included; one that shares them gets
    its part. Method ``rapl``: the energy is measured, only the split is a model.

    Args:
        domains: the CPU package (or psys) RAPL domains.
        pid: the process to follow (default: this one).
    """

    def __init__(self, domains: list[RaplDomain], pid: int | None = None) -> None:
        import psutil

        from codecarbon_callbacks_core.hardware.process_tree import ProcessTree

        self._psutil = psutil
        self.domains = list(domains)
        self.kind = "cpu"
        self.name = "cpu:process-share"
        self.model = domains[0].model if domains else ""
        self.method = MeasurementMethod.RAPL
        self.sample_interval_s = min([0.5, *(d.sample_interval_s or 1.0 for d in domains)])
        self._tree = ProcessTree(pid)
        self._judges = list(
            {id(d.mirror_judge): d.mirror_judge for d in domains if d.mirror_judge}.values()
        )
        self._lock = threading.Lock()
        _forksafe.track(self)
        self._energy_j = 0.0
        self._share = 0.0
        self._last_total_j = 0.0
        self._last_machine_s = 0.0
        self._last_process_s = 0.0
        self._power_w = 0.0
        self._last_s: float | None = None
        self.sensor_accuracy_fraction, self.sensor_accuracy_source = _rapl_accuracy(
            "cpu", self.model
        )

    def _machine_busy_s(self) -> float:
        times = self._psutil.cpu_times()
        busy = times.user + times.system
        for field in ("nice", "irq", "softirq"):
            busy += getattr(times, field, 0.0)
        return busy

    def _total_j(self, now_s: float) -> float:
        return sum(domain.energy_j(now_s) for domain in self.domains)

    def start(self, now_s: float) -> None:
        with self._lock:
            for domain in self.domains:
                domain.start(now_s)
            self._energy_j = 0.0
            self._last_total_j = 0.0
            self._last_machine_s = self._machine_busy_s()
            self._last_process_s = self._tree.cpu_seconds()
            self._last_s = now_s

    def sample(self, now_s: float) -> None:
        with self._lock:
            if self._last_s is None:
                return
            for judge in self._judges:  # mirrored package zones: decided on the sampler
                judge.judge(now_s)
            total_j = self._total_j(now_s)
            machine_s = self._machine_busy_s()
            process_s = self._tree.cpu_seconds()
            machine_delta = machine_s - self._last_machine_s
            process_delta = process_s - self._last_process_s
            if machine_delta > 0:
                self._share = min(1.0, max(0.0, process_delta / machine_delta))
            delta_j = (total_j - self._last_total_j) * self._share
            self._energy_j += delta_j
            if now_s > self._last_s:
                self._power_w = delta_j / (now_s - self._last_s)
            self._last_total_j = total_j
            self._last_machine_s = machine_s
            self._last_process_s = process_s
            self._last_s = now_s
            failures = [d.failure for d in self.domains if d.failure]
            if failures and self.failure is None:
                self.failure = failures[0]

    def energy_j(self, now_s: float) -> float:
        with self._lock:
            if self._last_s is None:
                return 0.0
            # the energy since the last sample, at the share last measured
            return self._energy_j + (self._total_j(now_s) - self._last_total_j) * self._share

    def power_w(self) -> float:
        return self._power_w

    def utilization_percent(self) -> float | None:
        return 100.0 * self._share

    def edge_uncertainty_j(self, now_s: float) -> float:
        """Since the last sample the share is the last one measured: it may be anywhere in
        [0, 1] for the packages' energy since then, J."""
        with self._lock:
            if self._last_s is None:
                return 0.0
            since_j = max(0.0, self._total_j(now_s) - self._last_total_j)
        return max(since_j * max(self._share, 1.0 - self._share), 0.0)

    def method_term(self, start: EdgeReading, end: EdgeReading) -> UncertaintyTerm:
        return UncertaintyTerm(
            "power_sampling",
            combine([start.edge_half_width_j, end.edge_half_width_j]),
            "RAPL split by the process tree's share of busy CPU time, sampled every "
            f"{self.sample_interval_s:g} s; the share is a model of attribution",
        )

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(domains=[d.name for d in self.domains], share=self._share)
        return info
