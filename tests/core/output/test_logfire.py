from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("logfire")

from codecarbon_callbacks_core.output.fanout import OutputFanout
from codecarbon_callbacks_core.output.logfire_output import LogfireOutput
from codecarbon_callbacks_core.records import totals_from_state
from output_records import constant_components, make_total, make_window


def collected(capfire):
    return {m["name"]: m for m in capfire.get_collected_metrics()}


def points(metric):
    return metric["data"]["data_points"]


def test_metrics_with_real_units_and_no_double_counting(capfire):
    out = LogfireOutput()
    fanout = OutputFanout([out])  # the tracker's: it hands each output its own deltas
    run_id = str(uuid.uuid4())
    fanout.begin_run(run_id)
    first = make_total(
        run_id=run_id,
        energy_consumed=0.5,
        cpu_energy=0.1,
        gpu_energy=0.35,
        ram_energy=0.05,
        emissions=0.02,
        duration=60.0,
        gpu_power=300.0,
        metadata={"framework": "keras", "components": []},
    )
    fanout.live_out(first)
    second = make_total(
        **{
            **first.to_dict(),
            "energy_consumed": 0.8,
            "cpu_energy": 0.2,
            "gpu_energy": 0.55,
            "emissions": 0.03,
            "duration": 100.0,
        }
    )
    fanout.out(second)
    fanout.out(second)  # a repeated total adds nothing
    metrics = collected(capfire)
    energy = metrics["codecarbon_energy_consumed"]
    assert energy["unit"] == "kWh"
    assert sum(p["value"] for p in points(energy)) == pytest.approx(0.8)
    assert points(energy)[0]["attributes"]["run_id"] == run_id
    assert points(energy)[0]["attributes"]["framework"] == "keras"
    assert metrics["codecarbon_emissions"]["unit"] == "kg"
    assert sum(p["value"] for p in points(metrics["codecarbon_emissions"])) == pytest.approx(0.03)
    assert metrics["codecarbon_duration"]["unit"] == "s"
    assert sum(p["value"] for p in points(metrics["codecarbon_duration"])) == pytest.approx(100.0)
    per = {
        p["attributes"]["component"]: p["value"]
        for p in points(metrics["codecarbon_component_energy"])
    }
    assert per == pytest.approx({"cpu": 0.2, "gpu": 0.55, "ram": 0.05})
    power = {
        p["attributes"]["component"]: p["value"]
        for p in points(metrics["codecarbon_component_power"])
    }
    assert metrics["codecarbon_component_power"]["unit"] == "W" and power["gpu"] == 300.0
    assert metrics["codecarbon_carbon_intensity"]["unit"] == "g/kWh"


def test_resumed_run_does_not_count_the_earlier_process_again(capfire):
    out = LogfireOutput()
    offsets = {
        "cpu_energy_kwh": 0.1,
        "gpu_energy_kwh": 0.3,
        "ram_energy_kwh": 0.0,
        "emissions_kg": 0.01,
        "duration_s": 50.0,
    }
    resumed = make_total(
        energy_consumed=0.5,
        cpu_energy=0.12,
        gpu_energy=0.38,
        ram_energy=0.0,
        emissions=0.0125,
        duration=60.0,
        metadata={"components": []},
    )
    fanout = OutputFanout([out])
    fanout.begin_run(resumed.run_id, resumed_from=totals_from_state(offsets))
    fanout.out(resumed)
    metrics = collected(capfire)
    assert sum(p["value"] for p in points(metrics["codecarbon_energy_consumed"])) == pytest.approx(
        0.1
    )
    assert sum(p["value"] for p in points(metrics["codecarbon_duration"])) == pytest.approx(10.0)


def test_windows_are_logged_and_in_a_histogram(capfire):
    out = LogfireOutput()
    out.window_out(make_window(kind="epoch", epoch=2, phase="train", energy_consumed=0.125))
    out.exit()
    hist = collected(capfire)["codecarbon_window_energy"]
    [point] = points(hist)
    assert point["sum"] == pytest.approx(0.125) and point["attributes"]["kind"] == "epoch"
    spans = capfire.exporter.exported_spans_as_dict()
    logs = [s for s in spans if s["name"].startswith("codecarbon window")]
    assert logs and logs[0]["attributes"]["epoch"] == 2
    assert logs[0]["attributes"]["energy_consumed_kwh"] == 0.125


def test_unconfigured_logfire_is_configured_without_login_or_network(tmp_path):
    """In a clean interpreter: no prompt, no token -> send_to_logfire stays off."""
    script = f"""
import sys, json
sys.path.insert(0, {str(Path(__file__).parent)!r})
import logfire
from codecarbon_callbacks_core.output.fanout import OutputFanout
from codecarbon_callbacks_core.output.logfire_output import LogfireOutput
from codecarbon_callbacks_core.records import totals_from_state
from output_records import make_total
assert not logfire.DEFAULT_LOGFIRE_INSTANCE.config._initialized
out = LogfireOutput(exit_timeout_s=0.5)
t = make_total()
out.out(t, t)
out.exit()
cfg = logfire.DEFAULT_LOGFIRE_INSTANCE.config
print(json.dumps({{"initialized": cfg._initialized, "send": cfg.send_to_logfire,
                  "token": cfg.token}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFIRE")}
    env["HOME"] = str(tmp_path)  # no stored credentials
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state == {"initialized": True, "send": "if-token-present", "token": None}
    assert "login" not in result.stderr.lower()
    assert not (tmp_path / ".logfire").exists()


def test_codecarbon_logfire_names_and_opentelemetry_hardware_conventions(capfire):
    """CodeCarbon 3.3.2's Logfire names beside OpenTelemetry's hw.energy / hw.host.energy."""
    out = LogfireOutput()
    fanout = OutputFanout([out])
    run_id = str(uuid.uuid4())
    fanout.begin_run(run_id)
    first = make_total(
        run_id=run_id,
        energy_consumed=0.5,
        cpu_energy=0.1,
        gpu_energy=0.35,
        ram_energy=0.05,
        emissions=0.02,
        duration=60.0,
        metadata={"components": []},  # no instance described: one series per kind
    )
    fanout.live_out(first)
    second = make_total(
        **{
            **first.to_dict(),
            "energy_consumed": 0.8,
            "cpu_energy": 0.2,
            "gpu_energy": 0.55,
            "emissions": 0.03,
            "duration": 100.0,
        }
    )
    fanout.out(second)
    metrics = collected(capfire)
    # CodeCarbon's per-component gauges: latest power, the last update's energy (kWh)
    assert points(metrics["codecarbon_gpu_power"])[0]["value"] == 250.0
    assert points(metrics["codecarbon_gpu_energy"])[0]["value"] == pytest.approx(0.2)
    assert points(metrics["codecarbon_ram_energy"])[0]["value"] == pytest.approx(0.0)
    assert metrics["codecarbon_cpu_energy"]["unit"] == "kWh"
    rate = points(metrics["codecarbon_emissions_rate"])[0]["value"]
    assert rate == pytest.approx(0.01 / 40.0)  # the update's emissions / its duration
    # OpenTelemetry hardware conventions, in joules
    energy = metrics["hw.energy"]
    assert energy["unit"] == "J"
    by_type = {p["attributes"]["hw.type"]: p for p in points(energy)}
    assert {k: p["value"] for k, p in by_type.items()} == pytest.approx(
        {"cpu": 0.2 * 3.6e6, "gpu": 0.55 * 3.6e6, "memory": 0.05 * 3.6e6}
    )
    assert all(p["attributes"]["hw.id"] == t for t, p in by_type.items())
    assert by_type["gpu"]["attributes"]["hw.name"] == first.gpu_model
    assert by_type["cpu"]["attributes"]["run_id"] == run_id
    [host] = points(metrics["hw.host.energy"])
    assert metrics["hw.host.energy"]["unit"] == "J" and host["attributes"]["hw.id"] == "host"
    assert host["value"] == pytest.approx(0.8 * 3.6e6)
    assert "hw.type" not in host["attributes"]  # never summed with the components
    [host_power] = points(metrics["hw.host.power"])
    assert host_power["value"] == pytest.approx(40.0 + 250.0 + 5.0)


def _described(name, kind, model, energy_kwh, **extra):
    """A component as the tracker describes it in metadata["components"] (cumulative kWh)."""
    return {
        "kind": kind,
        "name": name,
        "model": model,
        "method": "rapl",
        "failure": None,
        "energy_kwh": energy_kwh,
        **extra,
    }


def test_hw_energy_is_one_series_per_hardware_instance(capfire):
    """OpenTelemetry hardware conventions: each CPU package, each GPU and the RAM get their own
    hw.energy series (hw.id), with the deltas of their cumulative energies; the host's total
    stays in hw.host.energy."""
    out = LogfireOutput()
    fanout = OutputFanout([out])
    run_id = str(uuid.uuid4())
    fanout.begin_run(run_id)

    def total(p0, p1, g0, g1, ram, **figures):
        components = [
            _described("cpu:package-0", "cpu", "EPYC", p0),
            _described("cpu:package-1", "cpu", "EPYC", p1),
            _described("gpu:0", "gpu", "NVIDIA H200", g0),
            _described("gpu:1", "gpu", "NVIDIA H200", g1),
            _described("ram", "ram", "", ram),
        ]
        return make_total(
            run_id=run_id,
            cpu_energy=p0 + p1,
            gpu_energy=g0 + g1,
            ram_energy=ram,
            energy_consumed=p0 + p1 + g0 + g1 + ram,
            metadata={"components": components, "run_start_timestamp": "2026-11-28T20:00:00"},
            **figures,
        )

    fanout.live_out(total(0.1, 0.05, 0.3, 0.1, 0.01, cpu_power=60.0, gpu_power=400.0))
    fanout.out(total(0.3, 0.05, 0.5, 0.4, 0.02, cpu_power=40.0, gpu_power=500.0))
    fanout.out(total(0.3, 0.05, 0.5, 0.4, 0.02, cpu_power=40.0, gpu_power=500.0))  # no change
    metrics = collected(capfire)
    energy = {p["attributes"]["hw.id"]: p for p in points(metrics["hw.energy"])}
    assert {k: p["value"] / 3.6e6 for k, p in energy.items()} == pytest.approx(
        {"cpu:package-0": 0.3, "cpu:package-1": 0.05, "gpu:0": 0.5, "gpu:1": 0.4, "ram": 0.02}
    )
    assert energy["gpu:1"]["attributes"]["hw.type"] == "gpu"
    assert energy["gpu:1"]["attributes"]["hw.name"] == "NVIDIA H200"
    assert energy["ram"]["attributes"]["hw.type"] == "memory"
    assert energy["cpu:package-1"]["attributes"]["run_id"] == run_id
    [host] = points(metrics["hw.host.energy"])
    assert host["value"] == pytest.approx(sum(p["value"] for p in energy.values()))
    # the last update: CPU 0.2 kWh all on package 0, GPUs 0.2 and 0.3 kWh
    power = {p["attributes"]["hw.id"]: p["value"] for p in points(metrics["hw.power"])}
    assert power["cpu:package-0"] == pytest.approx(40.0)
    assert power["cpu:package-1"] == pytest.approx(0.0)
    assert power["gpu:0"] == pytest.approx(500.0 * 0.2 / 0.5)
    assert power["gpu:1"] == pytest.approx(500.0 * 0.3 / 0.5)
    assert power["ram"] == pytest.approx(5.0)


def test_hw_instances_of_two_runs_and_of_a_restart_keep_their_own_baselines(capfire):
    out = LogfireOutput()
    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    def total(run_id, gpu_kwh, started):
        return make_total(
            run_id=run_id,
            gpu_energy=gpu_kwh,
            metadata={
                "components": [_described("gpu:0", "gpu", "H200", gpu_kwh)],
                "run_start_timestamp": started,
            },
        )

    out.live_out(total(first, 0.5, "t0"), make_total())
    out.live_out(total(second, 0.2, "t0"), make_total())
    out.out(total(first, 0.7, "t0"), make_total())
    out.out(total(first, 0.1, "t1"), make_total())  # the run started again: a new segment
    energy = {}
    for p in points(collected(capfire)["hw.energy"]):
        energy[p["attributes"]["run_id"]] = p["value"] / 3.6e6
    assert energy == pytest.approx({first: 0.7 + 0.1, second: 0.2})


def test_distributed_components_are_told_apart_by_machine_and_rank(capfire):
    out = LogfireOutput()
    components = [
        _described("gpu:0", "gpu", "H200", 0.1, rank=0, machine="m1"),
        _described("gpu:0", "gpu", "H200", 0.2, rank=1, machine="m1"),
        _described("gpu:0", "gpu", "H200", 0.3, rank=2, machine="m2"),
    ]
    record = make_total(gpu_energy=0.6, metadata={"components": components})
    out.out(record, record)
    energy = {
        p["attributes"]["hw.id"]: p["value"] / 3.6e6
        for p in points(collected(capfire)["hw.energy"])
    }
    assert energy == pytest.approx(
        {"m1/rank0/gpu:0": 0.1, "m1/rank1/gpu:0": 0.2, "m2/rank2/gpu:0": 0.3}
    )


def test_a_tracker_run_sends_each_component_and_the_host_apart(capfire, tmp_path):
    """End to end: the tracker's own component descriptions become the hw.id series."""
    from codecarbon_callbacks import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_dir=str(tmp_path),
        output_methods=["logfire"],
        components=constant_components(cpu_w=50.0, gpu_w=300.0, ram_w=5.0),
        measure_power_secs=60,
    )
    tracker.start()
    try:
        time.sleep(0.05)
        tracker.flush()
        time.sleep(0.05)
        tracker.flush()
        # read before stop(): its exit() flushes the exporter, and counters read after it
        # came back empty from capfire's reader
        metrics = collected(capfire)
    finally:
        tracker.stop()
    energy: dict[str, float] = {}
    for p in points(metrics["hw.energy"]):
        energy[p["attributes"]["hw.id"]] = energy.get(p["attributes"]["hw.id"], 0.0) + p["value"]
    assert set(energy) == {"cpu:package-0", "gpu:0", "ram"}
    assert energy["cpu:package-0"] / energy["gpu:0"] == pytest.approx(50.0 / 300.0, rel=1e-3)
    assert energy["ram"] / energy["gpu:0"] == pytest.approx(5.0 / 300.0, rel=1e-3)
    host = sum(p["value"] for p in points(metrics["hw.host.energy"]))
    assert host == pytest.approx(sum(energy.values()), rel=1e-6)
    power = {p["attributes"]["hw.id"]: p["value"] for p in points(metrics["hw.power"])}
    assert power["gpu:0"] == pytest.approx(300.0, rel=0.05)
