from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("logfire")

from codecarbon_callbacks_core.output.fanout import OutputFanout
from codecarbon_callbacks_core.output.logfire_output import LogfireOutput
from codecarbon_callbacks_core.records import totals_from_state
from output_records import make_total, make_window


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
