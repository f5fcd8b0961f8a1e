"""hardware.diagnose: what is missing and why, against the sysfs and NVML fakes."""

from __future__ import annotations

import logging
import sys

import pytest
from codecarbon_callbacks_core.hardware import detect_cpu
from codecarbon_callbacks_core.hardware import diagnose as diagnose_module
from codecarbon_callbacks_core.hardware.diagnose import (
    Finding,
    diagnose,
    diagnose_nvml,
    diagnose_rapl,
)
from codecarbon_callbacks_core.hardware.nvml import detect_nvml
from codecarbon_callbacks_core.hardware.rapl import PERMISSION_HINT
from fakes import fake_nvml
from fakes.fake_amdsmi import FakeAmdsmi
from fakes.fake_nvml import FakeDevice, FakeNvml, VirtualClock
from fakes.sysfs import FakePowercap

UUIDS = ["GPU-00000000-aaaa-0000-0000-000000000000", "GPU-11111111-aaaa-0000-0000-000000000001"]


@pytest.fixture()
def powercap(tmp_path):
    fake = FakePowercap(tmp_path)
    package = fake.add_zone("intel-rapl:0", "package-0", energy_uj=1_000)
    return fake, package


def test_readable_rapl_is_ok(powercap):
    fake, _ = powercap
    finding = diagnose_rapl(powercap_root=fake.root, opener=fake.opener, platform="linux")
    assert finding == Finding("cpu", "rapl", "ok", "1 RAPL zone(s) readable")
    assert finding.ok


def test_refused_rapl_says_how_to_grant_access(powercap):
    fake, package = powercap
    fake.deny(package)
    finding = diagnose_rapl(powercap_root=fake.root, opener=fake.opener, platform="linux")
    assert (finding.state, finding.fix) == ("refused", PERMISSION_HINT)
    assert "permission denied" in finding.reason and "chmod" in finding.fix


def test_detect_cpu_reports_the_refusal_diagnose_finds(powercap, tmp_path):
    fake, package = powercap
    fake.deny(package)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\n")
    _, notes = detect_cpu(
        powercap_root=fake.root, rapl_opener=fake.opener, cpuinfo_path=str(cpuinfo)
    )
    finding = diagnose_rapl(powercap_root=fake.root, opener=fake.opener, platform="linux")
    assert notes == [f"CPU: RAPL refused, so CPU power is estimated. {finding.reason}"]


@pytest.mark.parametrize(
    ("container", "hint"), [(True, "mount /sys/class/powercap"), (False, "force_cpu_power")]
)
def test_absent_rapl_says_where_to_look(tmp_path, container, hint):
    empty = FakePowercap(tmp_path)
    finding = diagnose_rapl(
        powercap_root=empty.root, opener=empty.opener, platform="linux", container=container
    )
    assert finding.state == "absent" and "no RAPL package zone" in finding.reason
    assert finding.fix is not None and hint in finding.fix


def test_detect_cpu_logs_why_rapl_is_absent(tmp_path, caplog):
    empty = FakePowercap(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="codecarbon_callbacks_core.hardware"):
        detect_cpu(powercap_root=empty.root, rapl_opener=empty.opener)
    finding = diagnose_rapl(powercap_root=empty.root, opener=empty.opener, platform="linux")
    assert f"no RAPL: {finding.reason} ({finding.fix})" in caplog.messages


def test_rapl_off_linux_is_unsupported(powercap):
    fake, _ = powercap
    finding = diagnose_rapl(powercap_root=fake.root, opener=fake.opener, platform="darwin")
    assert finding.state == "unsupported" and fake.reads == 0


def test_nvml_lists_the_gpus_and_shuts_down():
    nvml = FakeNvml([FakeDevice(uuid=u) for u in UUIDS], clock=VirtualClock())
    assert diagnose_nvml(nvml) == Finding("gpu", "nvml", "ok", "NVML lists 2 GPU(s)")
    assert nvml.calls["nvmlInit"] == 1 and not nvml.initialized


def test_nvml_without_gpu_is_absent():
    assert diagnose_nvml(FakeNvml([])).state == "absent"


def test_nvml_init_failure_is_refused_and_detect_logs_it(caplog):
    nvml = FakeNvml([FakeDevice(uuid=UUIDS[0])], init_error=fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    finding = diagnose_nvml(nvml)
    assert finding.state == "refused"
    assert finding.reason == "nvmlInit failed: NVML Shared Library Not Found"
    with caplog.at_level(logging.DEBUG, logger="codecarbon_callbacks_core.hardware"):
        assert detect_nvml(nvml=nvml) == ([], [])
    assert f"no GPU measured: {finding.reason} ({finding.fix})" in caplog.messages


def test_missing_binding_says_what_to_install(monkeypatch):
    monkeypatch.setattr(diagnose_module, "nvidia_driver_present", lambda: True)
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)

    def missing():
        raise ImportError("No module named 'pynvml'")

    monkeypatch.setattr(diagnose_module, "_import_nvml", missing)
    finding = diagnose_nvml()
    assert (finding.state, finding.fix) == ("absent", "pip install nvidia-ml-py")


def test_no_driver_is_absent_without_importing_pynvml(monkeypatch):
    monkeypatch.setattr(diagnose_module, "nvidia_driver_present", lambda: False)
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setattr(diagnose_module, "_import_nvml", lambda: pytest.fail("pynvml imported"))
    finding = diagnose_nvml()
    assert finding.state == "absent" and "no NVIDIA driver" in finding.reason


def test_diagnose_covers_each_backend_and_amd_gpus(powercap, tmp_path):
    fake, _ = powercap
    drm = tmp_path / "drm"
    (drm / "card0" / "device").mkdir(parents=True)
    (drm / "card0" / "device" / "vendor").write_text("0x1002\n")
    findings = diagnose(
        powercap_root=fake.root,
        rapl_opener=fake.opener,
        platform="linux",
        nvml=FakeNvml([]),
        drm_root=drm,
        amdsmi=FakeAmdsmi([]),
    )
    assert [(f.backend, f.state) for f in findings] == [
        ("rapl", "ok"),
        ("nvml", "absent"),
        ("amdsmi", "absent"),
    ]
    (drm / "card0" / "device" / "vendor").write_text("0x10de\n")  # NVIDIA's: not listed
    assert [
        f.backend
        for f in diagnose(
            powercap_root=fake.root, rapl_opener=fake.opener, nvml=False, drm_root=drm
        )
    ] == ["rapl"]
