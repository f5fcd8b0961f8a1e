"""A fake powercap sysfs tree in a temporary folder, for the RAPL backend.

``FakePowercap(tmp_path)`` builds ``<tmp>/powercap/intel-rapl:N/...`` with real files, so the
backend reads it exactly as it reads /sys. Tests run as root, and root ignores ``chmod 000``, so
"permission denied" is simulated at the one place the backend opens files: its injectable
``opener`` (``fake.opener``), which raises PermissionError for the paths passed to ``deny()``.

Example::

    fake = FakePowercap(tmp_path)
    pkg = fake.add_zone("intel-rapl:0", "package-0", energy_uj=1000, max_energy_range_uj=10**6)
    fake.add_zone("intel-rapl:0:2", "dram", energy_uj=0, parent=pkg)
    fake.advance(pkg, 5_000)          # +5 mJ, wrapping at max_energy_range_uj
    detect_rapl(powercap_root=fake.root, opener=fake.opener)
"""

from __future__ import annotations

from pathlib import Path


class FakePowercap:
    def __init__(self, tmp_path: Path) -> None:
        self.root = Path(tmp_path) / "powercap"
        self.root.mkdir(parents=True, exist_ok=True)
        self.denied: set[Path] = set()
        self.reads = 0

    def add_zone(
        self,
        directory: str,
        name: str,
        *,
        energy_uj: int = 0,
        max_energy_range_uj: int | None = 262_143_328_850,
        parent: Path | None = None,
    ) -> Path:
        """Create a zone; sub-zones are linked at the top level too, as in /sys/class/powercap."""
        base = parent if parent is not None else self.root
        path = base / directory
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        if max_energy_range_uj is not None:
            (path / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        if parent is not None:
            link = self.root / directory
            if not link.exists():
                link.symlink_to(path)
        return path

    def energy_uj(self, zone: Path) -> int:
        return int((zone / "energy_uj").read_text())

    def set_energy(self, zone: Path, energy_uj: int) -> None:
        (zone / "energy_uj").write_text(f"{energy_uj}\n")

    def advance(self, zone: Path, delta_uj: int) -> None:
        """Add ``delta_uj``, wrapping at max_energy_range_uj like the hardware counter."""
        value = self.energy_uj(zone) + delta_uj
        range_file = zone / "max_energy_range_uj"
        if range_file.exists():
            value %= int(range_file.read_text())
        self.set_energy(zone, value)

    def deny(self, zone: Path, attribute: str = "energy_uj") -> None:
        """Make reads of ``zone/attribute`` fail with PermissionError (as for non-root users)."""
        self.denied.add((zone / attribute).resolve())

    def opener(self, path: Path) -> str:
        """The backend's file reader, with the refusals of ``deny()``."""
        self.reads += 1
        if Path(path).resolve() in self.denied:
            raise PermissionError(13, "Permission denied", str(path))
        with open(path, encoding="ascii") as handle:
            return handle.read()
