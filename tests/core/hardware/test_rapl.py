"""RAPL through a fake powercap tree: zones, wraparound, refusals, dram and psys options."""

from __future__ import annotations

import logging
import warnings

import pytest
from codecarbon_callbacks_core.errors import HardwareError
from codecarbon_callbacks_core.hardware import DetectionHint, detect_components, report_notes
from codecarbon_callbacks_core.hardware.base import MeasurementMethod
from codecarbon_callbacks_core.hardware.rapl import detect_rapl
from fakes.sysfs import FakePowercap


@pytest.fixture()
def two_sockets(tmp_path):
    fake = FakePowercap(tmp_path)
    pkg0 = fake.add_zone("intel-rapl:0", "package-0", energy_uj=1_000_000)
    pkg1 = fake.add_zone("intel-rapl:1", "package-1", energy_uj=7_000_000)
    fake.add_zone("intel-rapl:0:0", "core", parent=pkg0)
    dram0 = fake.add_zone("intel-rapl:0:2", "dram", energy_uj=50, parent=pkg0)
    fake.add_zone("intel-rapl-mmio:0", "package-0", energy_uj=1)
    return fake, pkg0, pkg1, dram0


def test_one_component_per_package_and_energy_from_counter_deltas(two_sockets):
    fake, pkg0, pkg1, _ = two_sockets
    components, notes = detect_rapl(powercap_root=fake.root, opener=fake.opener, model="Xeon")
    assert [c.name for c in components] == ["cpu:package-0", "cpu:package-1"]
    assert all(c.method is MeasurementMethod.RAPL and c.kind == "cpu" for c in components)
    assert any("DRAM" in n for n in notes)  # found, not used, and says how to use it
    for c in components:
        c.start(0.0)
    fake.advance(pkg0, 25_000_000)  # 25 J
    fake.advance(pkg1, 3_500_000)
    assert components[0].energy_j(1.0) == pytest.approx(25.0)
    assert components[1].energy_j(1.0) == pytest.approx(3.5)
    assert components[0].power_w() == pytest.approx(25.0)


def test_wraparound_is_added_back(tmp_path):
    fake = FakePowercap(tmp_path)
    zone = fake.add_zone(
        "intel-rapl:0", "package-0", energy_uj=990_000, max_energy_range_uj=1_000_000
    )
    (domain,), _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    domain.start(0.0)
    total_uj = 0
    for step in range(1, 40):
        fake.advance(zone, 300_000)  # wraps every few samples
        total_uj += 300_000
        domain.sample(step * 0.001)
    assert fake.energy_uj(zone) < 1_000_000
    assert domain.energy_j(0.05) == pytest.approx(total_uj / 1e6)


def test_interval_from_range(tmp_path):
    """The sampler reads often enough that at most one wrap can happen between two reads."""
    fake = FakePowercap(tmp_path)
    fake.add_zone("intel-rapl:0", "package-0", max_energy_range_uj=400_000_000)  # 400 J
    (domain,), _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    assert domain.sample_interval_s == pytest.approx(0.2)  # 400 J / (2 x 1000 W)
    assert domain.max_energy_range_uj == 400_000_000
    fake.add_zone("intel-rapl:1", "package-1", max_energy_range_uj=10**15)
    _, big = detect_rapl(powercap_root=fake.root, opener=fake.opener)[0]
    assert big.sample_interval_s == 1.0  # capped: cheap enough, and live outputs stay fresh


def test_permission_denied_raises_with_how_to_fix(two_sockets):
    fake, pkg0, _, _ = two_sockets
    fake.deny(pkg0)
    with pytest.raises(HardwareError) as info:
        detect_rapl(powercap_root=fake.root, opener=fake.opener)
    message = str(info.value)
    assert "permission denied" in message
    assert "chmod -R a+r /sys/class/powercap/intel-rapl" in message
    assert "udev" in message


def test_permission_denied_falls_back_to_estimate_with_the_warning(
    two_sockets, tmp_path, monkeypatch
):
    fake, pkg0, _, _ = two_sockets
    fake.deny(pkg0)
    from codecarbon_callbacks_core import hardware

    real = hardware.detect_cpu

    def detect_cpu_with_fake_opener(**kwargs):
        return real(rapl_opener=fake.opener, **kwargs)

    monkeypatch.setattr(hardware, "detect_cpu", detect_cpu_with_fake_opener)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\n")
    components, notes = detect_components(
        powercap_root=fake.root, cpuinfo_path=str(cpuinfo), nvml=False
    )
    cpu = [c for c in components if c.kind == "cpu"]
    assert [c.method for c in cpu] == [MeasurementMethod.TDP_ESTIMATE]
    assert any("RAPL refused" in n and "chmod" in n for n in notes)


def test_include_dram_measures_ram_instead_of_the_model(two_sockets):
    fake, _, _, dram0 = two_sockets
    components, _notes = detect_rapl(powercap_root=fake.root, opener=fake.opener, include_dram=True)
    names = [c.name for c in components]
    assert names == ["cpu:package-0", "cpu:package-1", "ram:dram-0"]
    dram = components[-1]
    assert dram.kind == "ram" and dram.method is MeasurementMethod.RAPL
    dram.start(0.0)
    fake.advance(dram0, 2_000_000)
    assert dram.energy_j(1.0) == pytest.approx(2.0)


def test_include_dram_in_detect_components_replaces_ram_model(two_sockets):
    fake, *_ = two_sockets
    components, _ = detect_components(powercap_root=fake.root, rapl_include_dram=True, nvml=False)
    ram = [c for c in components if c.kind == "ram"]
    assert [c.name for c in ram] == ["ram:dram-0"]


def test_psys_preferred_when_asked_and_present(tmp_path):
    fake = FakePowercap(tmp_path)
    fake.add_zone("intel-rapl:0", "package-0", energy_uj=10)
    psys = fake.add_zone("intel-rapl:1", "psys", energy_uj=20)
    plain, notes = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    assert [c.name for c in plain] == ["cpu:package-0"]
    assert any("psys" in n for n in notes)
    preferred, notes = detect_rapl(powercap_root=fake.root, opener=fake.opener, prefer_psys=True)
    assert [c.name for c in preferred] == ["cpu:psys"]
    preferred[0].start(0.0)
    fake.advance(psys, 4_000_000)
    assert preferred[0].energy_j(2.0) == pytest.approx(4.0)


def test_prefer_psys_without_psys_uses_packages(two_sockets):
    fake, *_ = two_sockets
    components, notes = detect_rapl(powercap_root=fake.root, opener=fake.opener, prefer_psys=True)
    assert [c.name for c in components] == ["cpu:package-0", "cpu:package-1"]
    assert any("no psys" in n for n in notes)


def test_amd_rapl_naming(tmp_path):
    fake = FakePowercap(tmp_path)
    fake.add_zone("amd-rapl:0", "package-0", energy_uj=5)
    components, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    assert [c.name for c in components] == ["cpu:package-0"]


def test_no_powercap_raises_hardware_error(tmp_path):
    with pytest.raises(HardwareError, match="no RAPL"):
        detect_rapl(powercap_root=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HardwareError, match="no RAPL package zone"):
        detect_rapl(powercap_root=tmp_path / "empty")


def test_read_failure_mid_run_keeps_last_value_and_warns_once(two_sockets, caplog):
    fake, pkg0, _, _ = two_sockets
    components, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    domain = components[0]
    domain.start(0.0)
    fake.advance(pkg0, 1_000_000)
    assert domain.energy_j(1.0) == pytest.approx(1.0)
    fake.deny(pkg0)
    with caplog.at_level("WARNING"):
        for t in (2.0, 3.0, 4.0):
            assert domain.energy_j(t) == pytest.approx(1.0)
    assert domain.failure and "permission denied" in domain.failure
    assert sum("RAPL read failed" in r.message for r in caplog.records) == 1


def test_force_mode_cpu_load_skips_rapl(two_sockets):
    fake, *_ = two_sockets
    components, _ = detect_components(powercap_root=fake.root, force_mode_cpu_load=True, nvml=False)
    cpu = [c for c in components if c.kind == "cpu"]
    assert len(cpu) == 1 and cpu[0].method is MeasurementMethod.TDP_ESTIMATE


def test_process_mode_splits_package_energy_by_cpu_share(two_sockets, monkeypatch):
    from codecarbon_callbacks_core.hardware import rapl

    fake, pkg0, pkg1, _ = two_sockets
    components, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    share = rapl.ProcessShareComponent(components)
    # a machine whose busy time we control: this process tree uses 1/4 of it, then all of it
    machine = {"busy": 100.0}
    process = {"busy": 10.0}
    monkeypatch.setattr(share, "_machine_busy_s", lambda: machine["busy"])
    monkeypatch.setattr(share._tree, "cpu_seconds", lambda: process["busy"])
    share.start(0.0)
    fake.advance(pkg0, 30_000_000)  # 30 J + 10 J over the first second
    fake.advance(pkg1, 10_000_000)
    machine["busy"] += 4.0
    process["busy"] += 1.0
    share.sample(1.0)
    assert share.energy_j(1.0) == pytest.approx(40.0 / 4)
    fake.advance(pkg0, 20_000_000)
    machine["busy"] += 2.0
    process["busy"] += 2.0
    share.sample(2.0)
    assert share.energy_j(2.0) == pytest.approx(10.0 + 20.0)
    assert share.method is MeasurementMethod.RAPL and share.kind == "cpu"


def test_process_mode_uses_rapl_share_in_detect(two_sockets):
    fake, *_ = two_sockets
    components, _ = detect_components(powercap_root=fake.root, tracking_mode="process", nvml=False)
    cpu = [c for c in components if c.kind == "cpu"]
    assert [c.name for c in cpu] == ["cpu:process-share"]
    ram = [c for c in components if c.kind == "ram"]
    assert [c.name for c in ram] == ["ram"]  # RSS model, not the machine's DRAM


def test_a_hint_about_an_unused_zone_is_logged_not_warned(two_sockets, caplog):
    fake = two_sockets[0]
    _components, notes = detect_components(powercap_root=fake.root, nvml=False)
    hints = [n for n in notes if isinstance(n, DetectionHint)]
    assert hints and "rapl_include_dram=True would measure RAM" in hints[0]
    assert hints == notes  # RAPL works: nothing else to say
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report_notes(notes)
    assert caught == [] and "DRAM zone(s) not used" in caplog.text


# -- mirrored package counters (multi-die parts) ------------------------------------------------


def _dies(tmp_path, raw_uj=(123_456_789, 123_456_789), dram=False):
    """One socket, two dies as the powercap tree lists them (``package-0-die-N``)."""
    fake = FakePowercap(tmp_path)
    zones = [
        fake.add_zone(f"intel-rapl:{i}", f"package-0-die-{i}", energy_uj=raw)
        for i, raw in enumerate(raw_uj)
    ]
    if dram:
        fake.add_zone("intel-rapl:0:0", "dram", energy_uj=10, parent=zones[0])
    return fake, zones


def _interval(fake, zones, domains, t, increments_uj):
    for zone, increment in zip(zones, increments_uj):
        fake.advance(zone, increment)
    for domain in domains:
        domain.sample(t)


def test_amd_mirrored_dies_are_confirmed_while_measuring_and_counted_once(tmp_path, caplog):
    fake, zones = _dies(tmp_path)
    domains, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    for domain in domains:
        domain.start(0.0)
    assert [d.mirror_state for d in domains] == ["distinct", "pending"]  # start() read nothing more
    with caplog.at_level(logging.INFO, logger="codecarbon_callbacks_core.hardware.rapl_mirrors"):
        for step in range(1, 6):  # a 60 W socket, both dies showing the same counter
            _interval(fake, zones, domains, float(step), (60_000_000, 60_000_000))
    assert [d.mirror_state for d in domains] == ["distinct", "mirror"]
    total_j = sum(d.energy_j(5.0) for d in domains)
    assert total_j == pytest.approx(300.0)  # 60 W x 5 s, not 120 W x 5 s
    assert sum(d.power_w() for d in domains) == pytest.approx(60.0)
    assert domains[1].describe()["mirror_of"] == "cpu:package-0-die-0"
    assert "cpu:package-0-die-1 mirrors cpu:package-0-die-0" in caplog.text


def test_intel_dies_with_distinct_counters_are_summed_from_start(tmp_path):
    fake, zones = _dies(tmp_path, raw_uj=(5_000_000_000, 91_000_000_000))
    domains, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    for domain in domains:
        domain.start(0.0)
    assert [d.mirror_state for d in domains] == ["distinct", "distinct"]  # raw values apart
    _interval(fake, zones, domains, 1.0, (60_000_000, 60_000_000))  # same power: still summed
    assert sum(d.energy_j(1.0) for d in domains) == pytest.approx(120.0)


def test_distinct_counters_equal_at_start_are_summed_once_they_move_apart(tmp_path):
    fake, zones = _dies(tmp_path)  # equal raw values by coincidence
    domains, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    for domain in domains:
        domain.start(0.0)
    _interval(fake, zones, domains, 1.0, (60_000_000, 40_000_000))
    assert [d.mirror_state for d in domains] == ["distinct", "distinct"]
    assert sum(d.energy_j(1.0) for d in domains) == pytest.approx(100.0)  # nothing lost


def test_a_pending_die_is_not_counted_and_a_late_decision_keeps_energy_non_decreasing(tmp_path):
    fake, zones = _dies(tmp_path)
    domains, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    for domain in domains:
        domain.start(0.0)
    readings = []
    for step, second in enumerate((50_000_000, 50_000_000, 20_000_000), start=1):
        _interval(fake, zones, domains, float(step), (50_000_000, second))
        readings.append(sum(d.energy_j(float(step)) for d in domains))
    assert readings[:2] == pytest.approx([50.0, 100.0])  # the pending die waits
    assert readings[2] == pytest.approx(150.0 + 120.0)  # distinct: all of it since start
    assert domains[1].mirror_state == "distinct"


def test_a_counter_reading_zero_is_never_a_mirror(tmp_path):
    fake, zones = _dies(tmp_path, raw_uj=(0, 0))
    domains, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    for domain in domains:
        domain.start(0.0)
    assert [d.mirror_state for d in domains] == ["distinct", "distinct"]
    fake2, zones2 = _dies(tmp_path / "stuck")  # equal raw values, one counter never moves
    stuck, _ = detect_rapl(powercap_root=fake2.root, opener=fake2.opener)
    for domain in stuck:
        domain.start(0.0)
    for step in range(1, 6):
        _interval(fake2, zones2, stuck, float(step), (30_000_000, 0))
    assert stuck[1].mirror_state != "mirror"


def test_two_sockets_of_mirrored_dies_count_one_counter_per_socket(tmp_path):
    fake = FakePowercap(tmp_path)
    raws = (1_000_000_000, 1_000_000_000, 77_000_000_000, 77_000_000_000)
    names = ("package-0-die-0", "package-0-die-1", "package-1-die-0", "package-1-die-1")
    zones = [
        fake.add_zone(f"intel-rapl:{i}", name, energy_uj=raw)
        for i, (name, raw) in enumerate(zip(names, raws))
    ]
    domains, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    for domain in domains:
        domain.start(0.0)
    for step in range(1, 5):
        _interval(fake, zones, domains, float(step), (10**7, 10**7, 3 * 10**7, 3 * 10**7))
    assert [d.mirror_state for d in domains] == ["distinct", "mirror", "distinct", "mirror"]
    assert [d.mirror_of for d in domains] == [
        None,
        "cpu:package-0-die-0",
        None,
        "cpu:package-1-die-0",
    ]
    assert sum(d.energy_j(4.0) for d in domains) == pytest.approx(40.0 + 120.0)


def test_dram_stays_governed_by_include_dram_with_mirrored_dies(tmp_path):
    fake, zones = _dies(tmp_path, dram=True)
    domains, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener, include_dram=True)
    assert [d.name for d in domains] == [
        "cpu:package-0-die-0",
        "cpu:package-0-die-1",
        "ram:dram-0",
    ]
    assert domains[2].mirror_judge is None
    without, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    assert [d.kind for d in without] == ["cpu", "cpu"]


def test_process_mode_judges_mirrors_too(tmp_path, monkeypatch):
    from codecarbon_callbacks_core.hardware import rapl

    fake, zones = _dies(tmp_path)
    domains, _ = detect_rapl(powercap_root=fake.root, opener=fake.opener)
    share = rapl.ProcessShareComponent(domains)
    monkeypatch.setattr(share, "_machine_busy_s", lambda: 0.0)  # no busy time: share stays 0
    share.start(0.0)
    for step in range(1, 5):
        for zone in zones:
            fake.advance(zone, 10_000_000)
        share.sample(float(step))
    assert [d.mirror_state for d in domains] == ["distinct", "mirror"]
