"""The RAM model: machine (installed RAM), process (RSS of the tree), forced constant."""

from __future__ import annotations

import time

import psutil
import pytest
from codecarbon_callbacks_core.hardware import detect_components
from codecarbon_callbacks_core.hardware.base import MeasurementMethod
from codecarbon_callbacks_core.hardware.ram import (
    RAM_W_PER_GB,
    ProcessRamComponent,
    machine_ram_component,
    ram_power_w,
)


def test_machine_mode_is_installed_ram_times_w_per_gb():
    ram = machine_ram_component()
    expected_w = RAM_W_PER_GB * psutil.virtual_memory().total / 1e9
    assert ram.power_w() == pytest.approx(expected_w)
    assert ram.method is MeasurementMethod.CONSTANT
    ram.start(100.0)
    assert ram.energy_j(110.0) == pytest.approx(10 * expected_w)


def test_process_mode_follows_rss_and_is_below_machine():
    ram = ProcessRamComponent()
    ram.start(0.0)
    rss = psutil.Process().memory_info().rss
    ram.sample(2.0)
    energy = ram.energy_j(2.0)
    assert energy == pytest.approx(2.0 * ram_power_w(rss), rel=0.2)
    assert ram.power_w() < machine_ram_component().power_w()


def test_process_mode_sees_memory_grow():
    ram = ProcessRamComponent()
    ram.start(0.0)
    ram.sample(1.0)
    before_w = ram.power_w()
    block = bytearray(300 * 1024 * 1024)  # 300 MB, touched
    block[::4096] = b"x" * len(block[::4096])
    ram.sample(2.0)
    ram.sample(3.0)
    assert ram.power_w() - before_w == pytest.approx(ram_power_w(300 * 1024 * 1024), rel=0.25)
    del block


def test_forced_ram_power():
    components, _ = detect_components(force_ram_power=7.5, nvml=False)
    ram = next(c for c in components if c.kind == "ram")
    assert ram.power_w() == 7.5 and ram.method is MeasurementMethod.CONSTANT
    ram.start(0.0)
    assert ram.energy_j(4.0) == pytest.approx(30.0)


def test_detect_picks_process_ram_in_process_mode():
    components, _ = detect_components(tracking_mode="process", nvml=False)
    ram = next(c for c in components if c.kind == "ram")
    assert isinstance(ram, ProcessRamComponent)
    assert ram.sample_interval_s and ram.sample_interval_s <= 1.0
    start = time.monotonic()
    ram.start(start)
    assert ram.energy_j(start + 0.5) > 0
