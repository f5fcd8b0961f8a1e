"""Every example runs on CPU with fast settings, writes real reports and says where they are."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from codecarbon_callbacks_core.output.boamps import validate_report
from codecarbon_callbacks_core.output.file import read_emissions
from examples.conftest import EPOCHS, EXAMPLES, EXAMPLES_DIR, ExampleRun


def _ok(run: ExampleRun) -> ExampleRun:
    assert run.returncode == 0, (
        f"{run.name} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    )
    assert "Traceback" not in run.stderr, run.stderr[-5000:]
    return run


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_writes_reports_and_prints_where(
    example_runs: dict[str, ExampleRun], name: str
) -> None:
    run = _ok(example_runs[name])
    runs_csv = run.output_dir / "emissions.csv"
    windows_csv = run.output_dir / "emissions_windows.csv"
    assert str(runs_csv.resolve()) in run.stdout and str(windows_csv.resolve()) in run.stdout
    rows = read_emissions(runs_csv)
    final = rows[rows["status"] == "completed"]
    assert len(final) >= 1
    for _, row in final.iterrows():
        assert row["energy_consumed"] > 0 and row["duration"] > 0 and row["emissions"] > 0
        assert row["country_iso_code"] == "FRA"
        assert row["energy_consumed"] == pytest.approx(
            row["cpu_energy"] + row["gpu_energy"] + row["ram_energy"]
        )
        assert row["cpu_method"]  # how the CPU was measured is always said
    # everything goes into --output-dir: nothing else in the folder the example ran in
    assert sorted(p.name for p in run.output_dir.parent.iterdir()) == [run.output_dir.name]


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n not in ("migrate_from_codecarbon.py",)])
def test_example_measures_each_epoch(example_runs: dict[str, ExampleRun], name: str) -> None:
    run = _ok(example_runs[name])
    windows = read_emissions(run.output_dir / "emissions_windows.csv")
    epochs = windows[(windows["kind"] == "epoch") & (windows["phase"] == "train")]
    assert sorted(set(epochs["epoch"].dropna().astype(int))) == list(range(EPOCHS))
    assert (epochs["energy_consumed"] > 0).all() and (epochs["status"] == "completed").all()
    (run_id,) = set(epochs["run_id"])
    total = read_emissions(run.output_dir / "emissions.csv")
    total = total[(total["run_id"] == run_id) & (total["status"] == "completed")].iloc[-1]
    # the epochs are part of the run: less energy than it, but most of it
    assert epochs["energy_consumed"].sum() <= total["energy_consumed"] * (1 + 1e-9)
    # the per-epoch table is printed at the end, one row per epoch
    assert "Per-epoch energy and emissions" in run.stdout
    table = run.stdout.split("Per-epoch energy and emissions", 1)[1]
    for epoch in range(EPOCHS):
        assert f"{run_id[:8]}      {epoch}" in table


@pytest.mark.parametrize(
    "name",
    [
        "lightning_example.py",
        "transformers_example.py",
        "keras_example.py",
        "plain_loop_example.py",
    ],
)
def test_framework_examples_tile_the_run_with_validation(
    example_runs: dict[str, ExampleRun], name: str
) -> None:
    """Train and validation windows of each epoch; with the windows between, they sum to the run."""
    run = _ok(example_runs[name])
    windows = read_emissions(run.output_dir / "emissions_windows.csv")
    validation = windows[windows["phase"] == "validation"]
    assert sorted(set(validation["epoch"].dropna().astype(int))) == list(range(EPOCHS))
    assert len(set(windows["run_id"])) == 1
    tiling = windows[windows["kind"].isin(["epoch", "phase"])]
    total = read_emissions(run.output_dir / "emissions.csv").iloc[-1]
    assert tiling["energy_consumed"].sum() <= total["energy_consumed"] * (1 + 1e-9)
    assert tiling["duration"].sum() == pytest.approx(total["duration"], rel=0.25)


def test_framework_metrics_reach_the_framework(example_runs: dict[str, ExampleRun]) -> None:
    keras = _ok(example_runs["keras_example.py"])
    line = next(
        line
        for line in keras.stdout.splitlines()
        if line.startswith("history.history['epoch_energy_kwh']")
    )
    assert line.count("e-") + line.count("e+") == EPOCHS
    hf = _ok(example_runs["transformers_example.py"])
    assert hf.stdout.count("epoch_energy_kwh=") == EPOCHS
    lightning = _ok(example_runs["lightning_example.py"])
    metrics = next(lightning.output_dir.glob("lightning_logs/version_*/metrics.csv"))
    assert "epoch_energy_kwh" in metrics.read_text().splitlines()[0]


def _boamps_example_report(run: ExampleRun) -> tuple[Path, dict]:
    (report_path,) = run.output_dir.glob("boamps_report_*.json")
    return report_path, json.loads(report_path.read_text())


def test_boamps_example_report_validates(example_runs: dict[str, ExampleRun]) -> None:
    run = _ok(example_runs["boamps_example.py"])
    report_path, report = _boamps_example_report(run)
    assert str(report_path.resolve()) in run.stdout
    context = json.loads((EXAMPLES_DIR / "boamps_context.json").read_text())
    # the context file's facts are in the report
    assert report["task"]["taskFamily"] == context["task"]["taskFamily"]
    assert report["task"]["algorithms"][0]["algorithmName"] == "mlp"
    assert report["header"]["publisher"]["name"] == context["header"]["publisher"]["name"]
    assert report["infrastructure"]["infraType"] == "onPremise"
    # ... and the measured ones
    rows = read_emissions(run.output_dir / "emissions.csv")
    assert report["measures"][0]["powerConsumption"] == pytest.approx(
        rows.iloc[-1]["energy_consumed"]
    )
    assert validate_report(report) == []
    assert "validates against the BoAmps 1.1 required fields: yes" in run.stdout


def test_boamps_example_report_matches_the_official_schema(
    example_runs: dict[str, ExampleRun], boamps_validator
) -> None:
    """Reference: the example's report, against the official BoAmps 1.1 schemas."""
    from boamps_checks import schema_errors

    _, report = _boamps_example_report(_ok(example_runs["boamps_example.py"]))
    assert schema_errors(boamps_validator, report) == []


def test_prometheus_example_pushes_to_a_gateway(example_runs: dict[str, ExampleRun]) -> None:
    run = _ok(example_runs["prometheus_example.py"])
    if shutil.which("prometheus-pushgateway") is None:
        pytest.skip("prometheus-pushgateway is not installed (apt install prometheus-pushgateway)")
    assert "Started a local Pushgateway" in run.stdout
    rows = read_emissions(run.output_dir / "emissions.csv")
    run_id = rows.iloc[-1]["run_id"]
    assert f"run_id={run_id}" in run.stdout
    pushed = {}
    for line in run.stdout.splitlines():
        if line.strip().startswith("codecarbon_") and " = " in line:
            name, value = line.strip().split(" = ")
            pushed[name] = float(value)
    energy_kwh = rows.iloc[-1]["energy_consumed"]
    assert pushed["codecarbon_energy_total"] == pytest.approx(energy_kwh)  # CodeCarbon's, kWh
    assert pushed["codecarbon_energy_joules_total"] == pytest.approx(energy_kwh * 3.6e6)
    assert pushed["codecarbon_emissions_grams_total"] == pytest.approx(
        rows.iloc[-1]["emissions"] * 1000
    )


def test_migrate_example_keeps_codecarbon_columns_and_tasks(
    example_runs: dict[str, ExampleRun],
) -> None:
    run = _ok(example_runs["migrate_from_codecarbon.py"])
    from codecarbon_callbacks_core.records import CODECARBON_COLUMNS

    header = (run.output_dir / "emissions.csv").read_text().splitlines()[0].split(",")
    assert tuple(header[: len(CODECARBON_COLUMNS)]) == CODECARBON_COLUMNS
    rows = read_emissions(run.output_dir / "emissions.csv")
    assert len(rows[rows["status"] == "completed"]) == 3  # start/stop, context manager, decorator
    windows = read_emissions(run.output_dir / "emissions_windows.csv")
    tasks = windows[windows["kind"] == "task"]
    assert list(tasks["name"]) == [f"epoch {n}" for n in range(EPOCHS)]
    # the command it suggests works: the run it printed, its tables (it has tasks, no epochs)
    [suggested] = [
        line.split("Summarise them again with: ", 1)[1]
        for line in run.stdout.splitlines()
        if "Summarise them again with: " in line
    ]
    import shlex
    import subprocess
    import sys

    argv = shlex.split(suggested)
    assert argv[:2] == ["codecarbon-callbacks", "report"]
    result = subprocess.run(
        [sys.executable, "-m", "codecarbon_callbacks.cli", *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=run.output_dir.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Tasks:" in result.stdout and "Runs (" in result.stdout


def test_examples_are_fast_enough(example_runs: dict[str, ExampleRun]) -> None:
    """Each example, run alongside the others, finishes well within a minute on CPU."""
    slow = {name: round(run.wall_s, 1) for name, run in example_runs.items() if run.wall_s > 120}
    assert slow == {}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_help_is_fast_and_names_the_options(name: str, tmp_path) -> None:
    """``--help`` answers before any framework is imported."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / name), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--output-dir", "--epochs", "--country-iso-code"):
        assert option in result.stdout
    assert list(tmp_path.iterdir()) == []  # --help writes nothing
