"""probe_presence: what the machine has, through fake powercap and drm trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from codecarbon_callbacks_core.hardware import probe_presence
from fakes.sysfs import FakePowercap


def _drm(tmp_path: Path, *vendors: str) -> Path:
    root = tmp_path / "drm"
    for n, vendor in enumerate(vendors):
        device = root / f"card{n}" / "device"
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
    root.mkdir(exist_ok=True)
    return root


def test_rapl_readable_unreadable_absent(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    drm = _drm(tmp_path)
    probe = dict(powercap_root=fake.root, drm_root=drm, platform="linux", rapl_opener=fake.opener)
    assert probe_presence(**probe).rapl == "absent"  # an empty powercap folder
    fake.add_zone("intel-rapl-mmio:0", "package-0", energy_uj=1)  # a duplicate, not a zone
    assert probe_presence(**probe).rapl == "absent"
    pkg0 = fake.add_zone("intel-rapl:0", "package-0", energy_uj=1)
    pkg1 = fake.add_zone("amd-rapl:1", "package-1", energy_uj=1)
    assert probe_presence(**probe).rapl == "readable"
    fake.deny(pkg0)
    assert probe_presence(**probe).rapl == "readable"  # one readable package is enough
    fake.deny(pkg1)
    assert probe_presence(**probe).rapl == "unreadable"
    missing = dict(probe, powercap_root=tmp_path / "nowhere")
    assert probe_presence(**missing).rapl == "absent"


def test_amd_gpu_by_pci_vendor(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    nvidia_and_intel = _drm(tmp_path / "a", "0x10de", "0x8086")
    with_amd = _drm(tmp_path / "b", "0x8086", "0x1002")
    assert not probe_presence(
        powercap_root=fake.root, drm_root=nvidia_and_intel, platform="linux"
    ).amd_gpu
    assert probe_presence(powercap_root=fake.root, drm_root=with_amd, platform="linux").amd_gpu


def test_nothing_is_probed_off_linux(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add_zone("intel-rapl:0", "package-0", energy_uj=1)
    presence = probe_presence(
        powercap_root=fake.root, drm_root=_drm(tmp_path, "0x1002"), platform="darwin"
    )
    assert presence.rapl == "not_linux"
    assert not (presence.nvidia_driver or presence.amd_gpu or presence.in_container)


@pytest.mark.parametrize("driver", [True, False])
def test_nvidia_driver_is_nvml_own_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver: bool
) -> None:
    """The driver check is the one NVML detection uses (hardware.diagnose), not a second list."""
    from codecarbon_callbacks_core.hardware import diagnose

    monkeypatch.setattr(diagnose, "nvidia_driver_present", lambda: driver)
    presence = probe_presence(powercap_root=tmp_path, drm_root=tmp_path, platform="linux")
    assert presence.nvidia_driver is driver
