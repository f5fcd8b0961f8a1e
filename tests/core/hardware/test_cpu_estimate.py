"""CPU model names, the bundled TDP table, the TDP x load model and the constants."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.hardware import detect_components, report_notes
from codecarbon_callbacks_core.hardware.base import MeasurementMethod
from codecarbon_callbacks_core.hardware.cpu_estimate import (
    IDLE_FRACTION,
    UNKNOWN_CPU_W_PER_THREAD,
    ConstantPowerComponent,
    CpuLoadComponent,
    logical_cpu_count,
)
from codecarbon_callbacks_core.hardware.cpu_model import (
    load_tdp_table,
    lookup_tdp_w,
    normalize_cpu_model,
    read_cpu_info,
)

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "core" / "codecarbon_callbacks_core" / "data"


def _bundled_rows() -> dict[str, str]:
    """Our own table, read as plain CSV: normalised model -> TDP in W."""
    with open(DATA / "cpu_tdp.csv", newline="", encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return {row["model"]: row["tdp_w"] for row in csv.DictReader(lines)}


def _source_rows(reference_dir: Path) -> dict[str, str]:
    """The reference copy of CodeCarbon's cpu_power.csv: table name -> TDP in W."""
    with open(reference_dir / "data" / "cpu_power.csv", newline="", encoding="utf-8") as handle:
        return {row["Name"]: row["TDP"] for row in csv.DictReader(handle)}


REAL_MODEL_NAMES = pytest.mark.parametrize(
    ("cpuinfo_name", "table_name"),
    [
        ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "Intel Xeon Gold 6248"),
        ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763"),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "Intel Core i7-8700K"),
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "Intel Core i7-8700"),
        ("AMD Ryzen 9 7950X 16-Core Processor", "AMD Ryzen 9 7950X"),
        ("AMD EPYC 9654 96-Core Processor", "AMD EPYC 9654"),
        ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", "Intel Xeon E5-2686 v4"),
        ("Apple M1", "Apple M1"),
    ],
)


@REAL_MODEL_NAMES
def test_real_model_names_match_the_table_row(cpuinfo_name, table_name):
    match = lookup_tdp_w(cpuinfo_name)
    assert match is not None
    assert match[0] == normalize_cpu_model(table_name)
    assert match[1] == pytest.approx(float(_bundled_rows()[match[0]]))


@REAL_MODEL_NAMES
def test_bundled_tdp_is_the_source_tdp(cpuinfo_name, table_name, reference_dir):
    """Reference: the TDP we bundle for a real model is the source table's figure."""
    bundled = _bundled_rows()[normalize_cpu_model(table_name)]
    assert float(bundled) == pytest.approx(float(_source_rows(reference_dir)[table_name]))


def test_token_match_for_variants_not_in_the_table():
    # cloud SKUs and marketing suffixes: the best row sharing the model number
    match = lookup_tdp_w("Intel(R) Xeon(R) Platinum 8480C")
    assert match is not None and match[0] == "intel xeon platinum 8480+"
    match = lookup_tdp_w("13th Gen Intel(R) Core(TM) i9-13900K")
    assert match is not None and match[0] == "intel core i9-13900k"
    match = lookup_tdp_w("AMD Ryzen 7 PRO 7840U w/ Radeon 780M Graphics")
    assert match is not None and "7840u" in match[0]


def test_no_guess_without_a_model_number():
    assert lookup_tdp_w("AMD EPYC") is None
    assert lookup_tdp_w("") is None
    assert lookup_tdp_w("Intel(R) Xeon(R) Platinum 9999Q") is None


def test_normalisation():
    assert normalize_cpu_model("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz") == "intel xeon gold 6248"
    assert normalize_cpu_model("AMD EPYC 7763 64-Core Processor") == "amd epyc 7763"
    assert normalize_cpu_model("Intel® Core™ i9-13900K Processor") == "intel core i9-13900k"


def test_bundled_table_is_ours_and_clean():
    text = (DATA / "cpu_tdp.csv").read_text(encoding="utf-8")
    rows = [line.split(",") for line in text.splitlines() if line and not line.startswith("#")]
    assert rows[0] == ["model", "tdp_w"]
    values = [float(tdp) for _, tdp in rows[1:]]
    assert min(values) > 0  # the 0.0 row is gone
    models = [model for model, _ in rows[1:]]
    assert models == sorted(models) and len(set(models)) == len(models)
    assert len(models) > 4800
    table = load_tdp_table()
    assert table.exact["intel celeron 1200"] == 32.9  # malformed "29.32.9" read as 29-32.9 W
    assert "intel quark microcontroller d1000" not in table.exact
    provenance = (DATA / "cpu_tdp.md").read_text(encoding="utf-8")
    assert "MIT" in provenance and "b05965e43b690cdc53787c7577adbe6e2caf4ed9" in provenance


def test_build_script_reproduces_the_bundled_file(tmp_path, reference_dir):
    """Reference: the bundled table is built from the source (not a copy of it), reproducibly."""
    source = reference_dir / "data" / "cpu_power.csv"
    assert (DATA / "cpu_tdp.csv").read_text(encoding="utf-8") != source.read_text(encoding="utf-8")
    target = tmp_path / "cpu_tdp.csv"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_cpu_tdp.py"),
            "--source",
            str(source),
            "--target",
            str(target),
        ],
        check=True,
        capture_output=True,
    )
    assert target.read_text() == (DATA / "cpu_tdp.csv").read_text()


def test_read_cpu_info_from_injected_file(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 0\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 1\n"
    )
    assert read_cpu_info(str(cpuinfo)) == ("AMD EPYC 7763 64-Core Processor", 2)


def test_detect_uses_tdp_times_sockets(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "model name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 0\n"
        "model name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 1\n"
    )
    components, notes = detect_components(
        powercap_root=tmp_path / "none", cpuinfo_path=str(cpuinfo), nvml=False
    )
    cpu = components[0]
    assert cpu.method is MeasurementMethod.TDP_ESTIMATE
    assert cpu.tdp_w == 560.0
    assert any("TDP x load" in n for n in notes)


def test_unknown_model_is_a_documented_constant_with_a_warning(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Mystery CPU\n")
    components, notes = detect_components(
        powercap_root=tmp_path / "none", cpuinfo_path=str(cpuinfo), nvml=False
    )
    cpu = components[0]
    assert cpu.method is MeasurementMethod.CONSTANT
    assert cpu.power_w() == UNKNOWN_CPU_W_PER_THREAD * logical_cpu_count()
    assert any("not in the TDP table" in n and "force_cpu_power" in n for n in notes)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("Mystery CPU", "counted at a constant"),  # not in the table
        ("AMD EPYC 7763 64-Core Processor", "estimated from TDP x load"),  # no RAPL counter
    ],
)
def test_an_estimated_or_constant_cpu_reaches_the_user_once_as_a_warning(tmp_path, model, words):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"model name\t: {model}\n")
    _, notes = detect_components(
        powercap_root=tmp_path / "none", cpuinfo_path=str(cpuinfo), nvml=False
    )
    with pytest.warns(CodeCarbonCallbacksWarning, match=words) as first:
        report_notes(notes)
    assert len(first) == 1
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        report_notes(notes)  # the next tracker of this process
        report_notes(notes, user_warning=False)
    assert later == []


def test_notes_without_user_warning_are_logged_only(tmp_path, caplog):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Mystery CPU\n")
    _, notes = detect_components(
        powercap_root=tmp_path / "none", cpuinfo_path=str(cpuinfo), nvml=False
    )
    with caplog.at_level("WARNING"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report_notes(notes, user_warning=False)  # a distributed run's rank other than zero
    assert caught == [] and "counted at a constant" in caplog.text


def test_force_cpu_power_is_a_constant(tmp_path):
    components, _ = detect_components(force_cpu_power=42.0, nvml=False)
    cpu = components[0]
    assert cpu.method is MeasurementMethod.CONSTANT and cpu.power_w() == 42.0
    cpu.start(10.0)
    assert cpu.energy_j(12.5) == pytest.approx(105.0)


@pytest.mark.parametrize("bad", [-1, "10", True])
def test_bad_forced_power_names_the_parameter(bad):
    with pytest.raises(ValueError, match="force_cpu_power"):
        detect_components(force_cpu_power=bad, nvml=False)
    with pytest.raises(ValueError, match="force_ram_power"):
        detect_components(force_ram_power=bad, nvml=False)


def test_bad_tracking_mode():
    with pytest.raises(ValueError, match="tracking_mode"):
        detect_components(tracking_mode="gpu", nvml=False)


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def test_machine_load_model_follows_cpu_time():
    cpu = CpuLoadComponent(tdp_w=100.0, model="test", cpu_count=logical_cpu_count())
    start = time.monotonic()
    cpu.start(start)
    _burn(0.3)
    now = time.monotonic()
    cpu.sample(now)
    elapsed = now - start
    energy = cpu.energy_j(now)
    # between idle power and full power, and above idle: we burnt one CPU
    assert 100.0 * IDLE_FRACTION * elapsed < energy <= 100.0 * elapsed + 1e-9
    one_cpu_share = 0.8 * 100.0 * elapsed / logical_cpu_count() * 0.5
    assert energy - 100.0 * IDLE_FRACTION * elapsed > one_cpu_share
    assert cpu.utilization_percent() > 100.0 / logical_cpu_count() * 0.5


def test_process_mode_counts_this_process_and_its_children():
    cpu = CpuLoadComponent(tdp_w=100.0, tracking_mode="process")
    start = time.monotonic()
    cpu.start(start)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend=time.process_time()+0.4\nwhile time.process_time()<end: pass",
        ]
    )
    time.sleep(0.1)
    cpu.sample(time.monotonic())  # sees the child alive
    child.wait()
    now = time.monotonic()
    cpu.sample(now)
    # the child's ~0.4 CPU-seconds (at least what we saw of it) count as load of this tree
    assert cpu._process_busy_s >= 0.05
    assert cpu.energy_j(now) > 0.0


def test_process_mode_idle_process_draws_little():
    cpu = CpuLoadComponent(tdp_w=100.0, tracking_mode="process")
    start = time.monotonic()
    cpu.start(start)
    time.sleep(0.3)
    now = time.monotonic()
    cpu.sample(now)
    machine = 100.0 * (now - start)
    assert cpu.energy_j(now) < 0.5 * machine


def test_constant_component_validates():
    with pytest.raises(ValueError, match="power_w"):
        ConstantPowerComponent(kind="cpu", name="x", power_w=-1)


def test_detect_is_fast_when_nothing_is_found(tmp_path):
    detect_components(nvml=False)  # warm: imports, table
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        detect_components(powercap_root=tmp_path / "none", nvml=False)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.01
