"""``detect``'s advice from what the core finds: no probes of its own, so any machine can be
described through a HardwarePresence."""

from __future__ import annotations

import platform

import pytest
from codecarbon_callbacks_core.hardware import HardwarePresence
from codecarbon_callbacks_core.hardware.base import MeasurementMethod
from codecarbon_callbacks_core.hardware.rapl import PERMISSION_FIX
from core.constant_power import ConstantPowerComponent

from codecarbon_callbacks.cli.detect import hardware_suggestions

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="Linux advice")


def _machine(
    cpu: MeasurementMethod,
    gpu: MeasurementMethod | None = None,
) -> list[ConstantPowerComponent]:
    parts = [
        ConstantPowerComponent("cpu", "cpu:0", 50.0, method=cpu),
        ConstantPowerComponent("ram", "ram", 5.0),
    ]
    if gpu is not None:
        parts.append(ConstantPowerComponent("gpu", "gpu:0", 300.0, method=gpu))
    return parts


def _presence(
    rapl: str = "readable", nvidia: bool = False, amd: bool = False, container: bool = False
) -> HardwarePresence:
    return HardwarePresence(rapl=rapl, nvidia_driver=nvidia, amd_gpu=amd, in_container=container)


def test_rapl_fixes() -> None:
    estimated = _machine(MeasurementMethod.TDP_ESTIMATE)
    (tip,) = hardware_suggestions(estimated, _presence(rapl="unreadable"))
    assert PERMISSION_FIX in tip and "not readable by this user" in tip
    (tip,) = hardware_suggestions(estimated, _presence(rapl="absent", container=True))
    assert "mount /sys/class/powercap from the host" in tip and "TDP x load" in tip
    (tip,) = hardware_suggestions(_machine(MeasurementMethod.CONSTANT), _presence(rapl="absent"))
    assert "virtual machines" in tip and "a constant power" in tip
    assert hardware_suggestions(_machine(MeasurementMethod.RAPL), _presence(rapl="absent")) == []


def test_gpu_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    rapl = MeasurementMethod.RAPL
    (tip,) = hardware_suggestions(_machine(rapl, MeasurementMethod.NVML_POWER), _presence())
    assert "pre-Volta" in tip
    assert (
        hardware_suggestions(_machine(rapl, MeasurementMethod.NVML_ENERGY), _presence(nvidia=True))
        == []
    )
    (tip,) = hardware_suggestions(_machine(rapl), _presence(amd=True))
    assert "AMD GPU is present but was not measured" in tip and "[amd]" in tip
    assert hardware_suggestions(_machine(rapl, MeasurementMethod.AMDSMI_ENERGY), _presence()) == []
    (tip,) = hardware_suggestions(_machine(rapl, MeasurementMethod.AMDSMI_POWER), _presence())
    assert "power is integrated" in tip
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pynvml" else real_find_spec(name, *a),
    )
    (tip,) = hardware_suggestions(_machine(rapl), _presence(nvidia=True))
    assert "pip install nvidia-ml-py" in tip
    monkeypatch.undo()
    if importlib.util.find_spec("pynvml") is not None:
        (tip,) = hardware_suggestions(_machine(rapl), _presence(nvidia=True))
        assert "no GPU was measured" in tip


def test_detect_lists_amd_gpus_and_their_method(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    """``detect`` shows what the core finds: two AMD GPUs through a fake amdsmi module, one of
    them hidden by HIP_VISIBLE_DEVICES."""
    import json
    import re
    import sys

    from fakes.fake_amdsmi import FakeAmdGpu, FakeAmdsmi

    from codecarbon_callbacks.cli.app import main

    gpus = [FakeAmdGpu(uuid=f"{i}aff74a1-0000-1000-8000-00000000000{i}") for i in range(2)]
    monkeypatch.setitem(sys.modules, "amdsmi", FakeAmdsmi(gpus))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    monkeypatch.chdir(tmp_path)
    assert main(["detect", "--json", "--country-iso-code", "FRA"]) == 0
    listed = [c for c in json.loads(capsys.readouterr().out)["components"] if c["kind"] == "gpu"]
    assert [(c["name"], c["method"], c["uuid"]) for c in listed] == [
        ("gpu:amd1", "amdsmi_energy", gpus[1].uuid)
    ]
    assert listed[0]["model"] == "AMD Instinct MI300X"
    assert main(["detect", "--country-iso-code", "FRA"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"gpu:amd1 +amdsmi_energy +AMD Instinct MI300X", text), text
