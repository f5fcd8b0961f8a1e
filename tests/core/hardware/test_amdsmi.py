"""The amdsmi backend (AMD GPUs) against the fake amdsmi module, in virtual time."""

from __future__ import annotations

import itertools
import logging

import pytest
from codecarbon_callbacks_core.hardware import detect_components
from codecarbon_callbacks_core.hardware.amdsmi import AmdSmiGpu, detect_amdsmi
from codecarbon_callbacks_core.hardware.amdsmi_select import (
    AmdDeviceIds,
    select_amd_devices,
    uuid_keys,
)
from codecarbon_callbacks_core.hardware.base import MeasurementMethod
from codecarbon_callbacks_core.hardware.diagnose import diagnose, diagnose_amdsmi
from codecarbon_callbacks_core.hardware.edge_reads import read_energy_concurrently
from fakes import fake_amdsmi
from fakes.fake_amdsmi import FakeAmdGpu, FakeAmdsmi
from fakes.fake_nvml import VirtualClock
from fakes.replay import replay

UUIDS = [f"{i}{i}ff74a1-0000-1000-80{i}0-9f2b5c7d0e1{i}" for i in range(3)]
SERIALS = [f"0x8E2EC2D5A1B63F5{i}" for i in range(3)]


def _gpu_specs(n=2, **kwargs):
    return [FakeAmdGpu(uuid=UUIDS[i], unique_id=SERIALS[i], **kwargs) for i in range(n)]


def _detect(devices, clock=None, api="7.0", **kwargs):
    clock = clock or VirtualClock()
    amdsmi = FakeAmdsmi(devices, clock=clock, api=api)
    gpus, notes = detect_amdsmi(amdsmi=amdsmi, clock=clock.now, sleep=clock.sleep, **kwargs)
    return gpus, notes, clock, amdsmi


# -- the counter path --------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["6.1", "7.0"])
def test_counter_path_describes_the_gpu_with_either_api(api):
    gpus, notes, _, _ = _detect(_gpu_specs(1), api=api, environ={})
    (gpu,) = gpus
    assert notes == []
    assert gpu.method is MeasurementMethod.AMDSMI_ENERGY
    assert gpu.kind == "gpu" and gpu.name == "gpu:amd0"
    assert gpu.uuid == UUIDS[0] and gpu.unique_id == SERIALS[0]
    assert gpu.model == "AMD Instinct MI300X" and gpu.cuda_index == 0
    assert gpu.memory_total_bytes == 196_592 * 1024 * 1024
    assert gpu.power_source == "current" and gpu.utilization_percent() == 97.0
    info = gpu.describe()
    assert info["method"] == "amdsmi_energy" and info["backend"] == "amdsmi"
    assert info["counter_resolution_uj"] == pytest.approx(15.259)


@pytest.mark.parametrize("step_s", [0.001, 0.1])
def test_run_energy_matches_the_true_energy_and_windows_tile_it(step_s):
    """A load that changes every 0.35 s; counter steps of 1 ms (the driver's cache) or 100 ms
    (NVIDIA-like, where the step placement matters): the run within 0.5 %."""

    def power(t):
        return 150.0 if int(t / 0.35) % 2 else 650.0

    device = FakeAmdGpu(uuid=UUIDS[0], power_at=power, counter_step_s=step_s)
    gpus, _, clock, _ = _detect([device], environ={})
    edges = [1.0 + 0.7 * i for i in range(12)]
    result = replay(gpus[0], clock, start_s=0.6, edges_s=edges, sampler_interval_s=0.025)
    energies = result.energies_j
    assert all(b >= a for a, b in itertools.pairwise(energies))
    assert sum(result.windows_j()) == pytest.approx(energies[-1] - energies[0], abs=1e-9)
    true_j = device.energy_j(edges[-1]) - device.energy_j(0.6)
    assert energies[-1] == pytest.approx(true_j, rel=0.005)
    if step_s < 0.01:  # measured from the counter's own reads, not assumed
        assert gpus[0].fine_step_s == pytest.approx(step_s, abs=0.0005)
    else:  # the NVML phase model found the 100-ms steps
        assert gpus[0].fine_step_s is None
        assert gpus[0].counter_period_s == pytest.approx(step_s, abs=0.001)


def test_wraparound_of_the_accumulator_is_undone():
    # a 32-bit accumulator 10 J below its top: it wraps 20 ms into the run at 500 W
    device = FakeAmdGpu(uuid=UUIDS[0], counter_bits=32, counter_start=2**32 - 655)
    amdsmi = FakeAmdsmi([device], clock=(clock := VirtualClock()))
    amdsmi.amdsmi_init()
    gpu = AmdSmiGpu(amdsmi, device, 0, counter_bits=32, clock=clock.now, sleep=clock.sleep)
    result = replay(gpu, clock, start_s=0.0, edges_s=[0.4 * i for i in range(1, 8)])
    assert device.count_at(2.8) < 2**31  # it did wrap
    assert result.energies_j[-1] == pytest.approx(500.0 * 2.8, rel=0.005)


def test_a_counter_that_goes_backwards_never_lowers_the_energy():
    device = FakeAmdGpu(uuid=UUIDS[0])
    gpus, _, clock, amdsmi = _detect([device], environ={})
    gpu = gpus[0]
    clock.jump(1.0)
    gpu.start(1.0)
    first = gpu.energy_j(2.0)
    device.counter_start -= 500  # amdsmi issue #115: a read below the previous one
    clock.jump(2.1)
    assert gpu.energy_j(2.1) >= first


# -- the power fallback and failures ---------------------------------------------------------


def test_without_a_counter_socket_power_is_integrated():
    # a virtual machine guest: the counter is not supported; an MI200: average power only
    device = FakeAmdGpu(uuid=UUIDS[0], energy_counter=False, current_power=False, power_w=300.0)
    gpus, notes, clock, _ = _detect([device], environ={})
    gpu = gpus[0]
    assert gpu.method is MeasurementMethod.AMDSMI_POWER and gpu.power_source == "average"
    assert any("no amdsmi energy counter" in n for n in notes)
    result = replay(gpu, clock, start_s=1.0, edges_s=[2.0, 3.0])
    assert result.energies_j[-1] == pytest.approx(600.0, rel=0.02)


def test_permission_refused_on_the_counter_falls_back_to_power():
    device = FakeAmdGpu(uuid=UUIDS[0], energy_refused=True, power_w=400.0)
    gpus, notes, clock, _ = _detect([device], environ={})
    assert gpus[0].method is MeasurementMethod.AMDSMI_POWER
    result = replay(gpus[0], clock, start_s=1.0, edges_s=[3.0])
    assert result.energies_j[-1] == pytest.approx(800.0, rel=0.02)


def test_permission_refused_at_init_is_a_note_with_the_fix():
    amdsmi = FakeAmdsmi(_gpu_specs(1), init_error=fake_amdsmi.AMDSMI_STATUS_NO_PERM)
    gpus, notes = detect_amdsmi(amdsmi=amdsmi, environ={})
    assert gpus == [] and len(notes) == 1
    assert "Permission Denied" in notes[0] and "render" in notes[0]
    finding = diagnose_amdsmi(FakeAmdsmi([], init_error=fake_amdsmi.AMDSMI_STATUS_NO_PERM))
    assert finding.state == "refused" and finding.fix and "render" in finding.fix


def test_gpu_lost_mid_run_keeps_its_energy_and_never_raises(caplog):
    device = FakeAmdGpu(uuid=UUIDS[0], lost_after_s=2.5, power_w=500.0)
    gpus, _, clock, _ = _detect([device], environ={})
    gpu = gpus[0]
    with caplog.at_level(logging.WARNING):
        result = replay(gpu, clock, start_s=1.0, edges_s=[2.0, 3.0, 4.0, 5.0])
    energies = result.energies_j
    assert energies[0] == pytest.approx(500.0, rel=0.01)
    assert all(b >= a for a, b in itertools.pairwise(energies))
    # frozen once nothing reads: the energy up to the loss, and one sampler tick of power at most
    assert 500.0 * 1.5 - 1.0 <= energies[-1] == energies[-2] <= 500.0 * (1.5 + 0.025) + 1.0
    assert gpu.failure and "amdsmi" in gpu.failure and "NVML" not in gpu.failure
    assert len([r for r in caplog.records if "gpu:amd0" in r.getMessage()]) == 1


def test_no_gpu_no_module_no_driver_gives_nothing(tmp_path, monkeypatch):
    # no AMD card listed: amdsmi is not even imported
    import sys

    from codecarbon_callbacks_core.hardware import diagnose as diagnose_module

    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.setattr(diagnose_module, "_import_amdsmi", lambda: pytest.fail("imported"))
    assert detect_amdsmi(drm_root=str(tmp_path)) == ([], [])
    # amdsmi lists no GPU
    assert _detect([], environ={})[:2] == ([], [])
    # a driver that is not loaded: amdsmi_init fails
    amdsmi = FakeAmdsmi([], init_error=fake_amdsmi.AMDSMI_STATUS_DRIVER_NOT_LOADED)
    gpus, notes = detect_amdsmi(amdsmi=amdsmi, environ={})
    assert gpus == [] and "amdgpu driver" in notes[0]


def test_an_amd_card_without_amdsmi_is_diagnosed_with_the_extra(tmp_path, monkeypatch):
    import sys

    from codecarbon_callbacks_core.hardware import diagnose as diagnose_module

    (tmp_path / "card0" / "device").mkdir(parents=True)
    (tmp_path / "card0" / "device" / "vendor").write_text("0x1002\n")
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)

    def missing():
        raise ImportError("No module named 'amdsmi'")

    monkeypatch.setattr(diagnose_module, "_import_amdsmi", missing)
    finding = diagnose_amdsmi(drm_root=tmp_path)
    assert finding.state == "absent" and "[amd]" in (finding.fix or "")
    findings = diagnose(nvml=False, drm_root=tmp_path, amdsmi=FakeAmdsmi(_gpu_specs(2)))
    assert (findings[-1].backend, findings[-1].state) == ("amdsmi", "ok")
    assert "2 AMD GPU(s); method amdsmi_energy" in findings[-1].reason


# -- which GPUs --------------------------------------------------------------------------------


def _ids(n=3, order=None):
    order = order or list(range(n))
    return [AmdDeviceIds(UUIDS[i], SERIALS[i], order[i]) for i in range(n)]


def test_rocr_then_hip_visible_devices_as_rocm_applies_them():
    ids = _ids()
    pick = lambda env, **kw: select_amd_devices(ids, environ=env, **kw)[0]  # noqa: E731
    assert pick({}) == [(0, 0), (1, 1), (2, 2)]
    assert pick({"ROCR_VISIBLE_DEVICES": "2,0"}) == [(2, 0), (0, 1)]
    # HIP indexes count within what ROCr left
    assert pick({"ROCR_VISIBLE_DEVICES": "2,0", "HIP_VISIBLE_DEVICES": "1"}) == [(0, 0)]
    # CUDA_VISIBLE_DEVICES only when HIP_VISIBLE_DEVICES is unset
    assert pick({"CUDA_VISIBLE_DEVICES": "1"}) == [(1, 0)]
    assert pick({"CUDA_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "2"}) == [(2, 0)]
    # an invalid entry ends the list; ROCr's UUIDs name the unique id
    assert pick({"HIP_VISIBLE_DEVICES": "1,7,0"}) == [(1, 0)]
    assert pick({"ROCR_VISIBLE_DEVICES": "GPU-" + SERIALS[2][2:].lower()}) == [(2, 0)]
    # ROCr's order is amdsmi's hsa_id where known
    assert select_amd_devices(_ids(order=[2, 0, 1]), environ={"ROCR_VISIBLE_DEVICES": "0"})[0] == [
        (1, 0)
    ]


def test_gpu_ids_are_hip_ordinals_or_any_form_of_uuid():
    ids = _ids()
    env = {"HIP_VISIBLE_DEVICES": "2,1"}
    assert select_amd_devices(ids, gpu_ids=[0], environ=env)[0] == [(2, 0)]
    assert select_amd_devices(ids, gpu_ids=UUIDS[1][:8], environ=env)[0] == [(1, 1)]
    # HIP's UUID as torch prints it on ROCm: the ASCII of the unique id's hex digits
    torch_uuid = SERIALS[1][2:].lower().encode().hex()
    torch_uuid = "GPU-" + "-".join(
        (torch_uuid[:8], torch_uuid[8:12], torch_uuid[12:16], torch_uuid[16:20], torch_uuid[20:])
    )
    assert uuid_keys(torch_uuid) >= {SERIALS[1][2:].lower().lstrip("0")}
    assert select_amd_devices(ids, gpu_ids=[torch_uuid], environ=env)[0] == [(1, 1)]
    chosen, notes = select_amd_devices(ids, gpu_ids=["5", UUIDS[0]], environ=env)
    assert chosen == [] and len(notes) == 2 and "'5'" in notes[0]


def test_two_gpus_one_hidden_by_the_visibility_variables():
    for env in ({"HIP_VISIBLE_DEVICES": "1"}, {"ROCR_VISIBLE_DEVICES": UUIDS[1][:6]}):
        gpus, notes, _, _ = _detect(_gpu_specs(2), environ=env)
        assert [g.uuid for g in gpus] == [UUIDS[1]] and notes == []
        assert gpus[0].cuda_index == 0 and gpus[0].name == "gpu:amd1"


def test_detect_components_lists_amd_gpus_beside_cpu_and_ram():
    clock = VirtualClock()
    amdsmi = FakeAmdsmi(_gpu_specs(2), clock=clock)
    components, _ = detect_components(
        nvml=False, amdsmi=amdsmi, environ={"CUDA_VISIBLE_DEVICES": "0"}
    )
    gpus = [c for c in components if c.kind == "gpu"]
    assert [type(g) for g in gpus] == [AmdSmiGpu] and gpus[0].uuid == UUIDS[0]
    assert {c.kind for c in components} == {"cpu", "gpu", "ram"}
    no_amd, _ = detect_components(nvml=False, amdsmi=False)
    assert not [c for c in no_amd if c.kind == "gpu"]


def test_edges_read_several_amd_counters_concurrently():
    gpus, _, clock, amdsmi = _detect(_gpu_specs(2), environ={})
    for gpu in gpus:
        gpu.start(0.0)
    values = read_energy_concurrently(gpus, 0.5)
    assert len(values) == 2 and all(v >= 0 for v in values)
    assert amdsmi.calls["amdsmi_get_energy_count"] >= 4  # 2 probes + 2 edge reads


def test_amdsmi_without_rocm_library_is_absent_and_prints_nothing(tmp_path, monkeypatch, capsys):
    """amdsmi 7.0 without libamd_smi.so prints two lines, then fails with KeyError."""
    import sys

    (tmp_path / "amdsmi.py").write_text(
        "print('libamd_smi.so: cannot open shared object file')\n"
        "print('Unable to find libamd_smi.so library')\n"
        "_libraries = {}\n"
        "_libraries['libamd_smi.so'].amdsmi_free_name_value_pairs\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    (tmp_path / "drm" / "card1" / "device").mkdir(parents=True)
    (tmp_path / "drm" / "card1" / "device" / "vendor").write_text("0x1002\n")
    finding = diagnose_amdsmi(drm_root=tmp_path / "drm")
    assert finding.state == "absent" and "KeyError" in finding.reason
    assert "Unable to find libamd_smi.so" in finding.reason
    assert capsys.readouterr().out == ""
    gpus, notes = detect_amdsmi(drm_root=str(tmp_path / "drm"), environ={})
    assert gpus == [] and len(notes) == 1 and "[amd]" in notes[0]  # never silently


# -- uncertainty -------------------------------------------------------------------------------


def _edges_with_half_widths(gpu, clock, start_s, edges_s, tick_s=0.025):
    """(energy J, half-width J) at each edge, the sampler ticking between edges (virtual time)."""
    clock.jump(start_s)
    gpu.start(start_s)
    gpu.energy_j(start_s)
    out, tick = [], start_s + tick_s
    for edge in edges_s:
        while tick < edge:
            clock.jump(max(tick, clock.now()))
            gpu.sample(clock.now())
            tick += tick_s
        clock.jump(edge)
        out.append((gpu.energy_j(edge), gpu.edge_uncertainty_j(edge)))
    return out


@pytest.mark.parametrize(("counter", "median_bound"), [(True, 0.02), (False, 0.15)])
def test_edge_half_widths_cover_the_window_errors_and_stay_tight(counter, median_bound):
    """Windows of 0.2-0.9 s over a load switching between 150 and 650 W every 0.35 s: the two
    edges' half-widths in quadrature cover >= 95 % of the window errors, and stay tight at the
    median (2 % of the window's energy by counter, 15 % by power sampled every 25 ms)."""
    import math
    import random

    def power(t):
        return 150.0 if int(t / 0.35) % 2 else 650.0

    rng = random.Random(3)
    edges = list(itertools.accumulate(rng.uniform(0.2, 0.9) for _ in range(40)))
    edges = [1.0 + e for e in edges]
    device = FakeAmdGpu(uuid=UUIDS[0], power_at=power, energy_counter=counter)
    gpus, _, clock, _ = _detect([device], environ={})
    gpu = gpus[0]
    assert gpu.sensor_accuracy_fraction == 0.05 and "AMD states no accuracy" in (
        gpu.sensor_accuracy_source
    )
    readings = _edges_with_half_widths(gpu, clock, 0.6, edges)
    covered, relative = 0, []
    for (a, ha), (b, hb), ta, tb in zip(readings, readings[1:], edges, edges[1:]):
        true_j = device.energy_j(tb) - device.energy_j(ta)
        half_width = math.hypot(ha, hb)
        covered += abs((b - a) - true_j) <= half_width
        relative.append(half_width / true_j)
    assert covered >= 0.95 * (len(readings) - 1)
    assert sorted(relative)[len(relative) // 2] < median_bound
    # the window's terms name the amdsmi method: counter edges, or power sampled
    from codecarbon_callbacks_core.hardware.base import EdgeReading

    a = EdgeReading(edges[0], readings[0][0], readings[0][1], 0.0)
    b = EdgeReading(edges[1], readings[1][0], readings[1][1], 0.0)
    method, sensor = gpu.uncertainty_terms(a, b)
    assert method.name == ("counter_edges" if counter else "power_sampling")
    assert "amdsmi" in method.source and "NVML" not in method.source
    assert method.half_width_j == pytest.approx(math.hypot(readings[0][1], readings[1][1]))
    assert sensor.half_width_j == pytest.approx(0.05 * (readings[1][0] - readings[0][0]))


def test_with_the_real_meter_threads_and_clock():
    """The sampler thread and the shared edge-read pool in real time, two AMD GPUs at 500 and
    300 W: monotonic, no failure, the fine step measured, the energy within 2 %."""
    import time

    from codecarbon_callbacks_core.meter import Meter
    from fakes.fake_nvml import RealClock

    devices = [FakeAmdGpu(uuid=UUIDS[i], power_w=w) for i, w in enumerate((500.0, 300.0))]
    gpus, _ = detect_amdsmi(amdsmi=FakeAmdsmi(devices, clock=RealClock()), environ={})
    meter = Meter(gpus)
    first = meter.start()
    snapshots = [first]
    for _ in range(4):
        time.sleep(0.15)
        snapshots.append(meter.snapshot(sync_cuda=False))
    last = meter.stop()
    elapsed = last.monotonic_s - first.monotonic_s
    for gpu, device in zip(gpus, devices):
        series = [s.energy_j[gpu.name] for s in [*snapshots, last]]
        assert all(b >= a for a, b in itertools.pairwise(series))
        assert gpu.failure is None and gpu.fine_step_s is not None
        assert last.energy_j[gpu.name] == pytest.approx(device.power_w * elapsed, rel=0.02)
