"""The framework-neutral session: windows tiling the run, forecasts, budgets, resume, metadata."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import time
import warnings

import pytest
from boamps_checks import schema_errors
from callbacks.checks import boamps_report, check_tiling, read_runs, read_windows
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output.base import BaseOutput
from codecarbon_callbacks_core.output.boamps import validate_report

from codecarbon_callbacks.metrics import WorkCounter
from codecarbon_callbacks.session import (
    EmissionsSession,
    checkpoint_arguments,
    configuration_key,
    dataset_info,
    guess_data_type,
    install_hint,
    shape_string,
)


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def run_epochs(
    session: EmissionsSession,
    epochs: int,
    *,
    planned: int | None = None,
    train_s: float = 0.03,
    val_s: float = 0.01,
) -> list[dict[str, float]]:
    rows = []
    for epoch in range(epochs):
        session.begin_epoch(epoch)
        busy(train_s)
        session.begin_phase("validation")
        busy(val_s)
        session.end_phase(training_continues=False)
        rows.append(session.end_epoch(epoch, done=epoch + 1, planned=planned))
        if session.stop_requested:
            break
    return rows


def test_windows_tile_the_run_and_sum_to_its_total(tracker_kwargs, tmp_path):
    session = EmissionsSession("custom", **tracker_kwargs)
    assert session.begin_run("fit", info={"epochs": 3}, planned=3)
    busy(0.01)
    rows = run_epochs(session, 3, planned=3)
    session.end_run()

    runs, windows = read_runs(tmp_path), read_windows(tmp_path)
    assert len(runs) == 1 and runs.loc[0, "status"] == "completed"
    assert set(windows["run_id"]) == {runs.loc[0, "run_id"]}
    check_tiling(windows, runs.iloc[0])
    train = windows[windows["phase"] == "train"]
    assert list(train["epoch"]) == [0, 1, 2] and set(train["kind"]) == {"epoch"}
    assert list(windows[windows["phase"] == "validation"]["epoch"]) == [0, 1, 2]
    # the epoch's figure is its train window only: validation is not double counted
    for row, (_, window) in zip(rows, train.iterrows()):
        assert row["epoch_energy_kwh"] == pytest.approx(window["energy_consumed"], rel=1e-9)
    summary = session.summary()
    assert summary["totals"]["energy_kwh"] == pytest.approx(
        runs.loc[0, "energy_consumed"], rel=1e-9
    )
    assert [w["phase"] for w in summary["windows"]][:3] == ["other", "train", "validation"]
    assert [e["epoch"] for e in summary["epochs"]] == [0, 1, 2]


def test_work_counts_split_over_train_windows_and_epochs(tracker_kwargs, tmp_path):
    session = EmissionsSession("custom", **tracker_kwargs)
    session.begin_run("fit")
    session.begin_epoch(0)
    session.update_counts(samples=30, optimizer_steps=3)
    busy(0.01)
    session.begin_phase("validation")  # the train window closes with 30 samples, 3 steps
    session.end_phase()
    session.update_counts(samples=50, optimizer_steps=5)  # training goes on: 20 more, 2 steps
    busy(0.01)
    row = session.end_epoch(0)
    session.begin_epoch(1)
    session.update_counts(samples=50, optimizer_steps=5)  # nothing counted in epoch 1
    second = session.end_epoch(1)
    session.end_run()
    train = read_windows(tmp_path).query("phase == 'train'")
    assert list(train["samples"]) == [30, 20, 0] and list(train["optimizer_steps"]) == [3, 2, 0]
    assert train["tokens"].isna().all() and train["energy_per_token_kwh"].isna().all()
    assert list(train["energy_per_sample_kwh"])[:2] == pytest.approx(
        list(train["energy_consumed"][:2] / [30, 20]), rel=1e-9
    )
    assert math.isnan(list(train["energy_per_sample_kwh"])[2])  # no sample: none per sample
    assert row["epoch_samples"] == 50 and row["epoch_optimizer_steps"] == 5
    assert row["epoch_energy_per_step_kwh"] == pytest.approx(row["epoch_energy_kwh"] / 5)
    assert "epoch_tokens" not in row and "epoch_energy_per_sample_kwh" not in second
    session.update_counts(samples=1)  # outside a run: nothing to count into
    with pytest.raises(ValueError, match="counts: unknown count 'images'"):
        WorkCounter().update(images=3)


def test_work_counts_pulled_at_edges_match_counts_pushed_every_batch(tracker_kwargs, tmp_path):
    """count_with(): the session reads the adapter's counts at each edge (the Lightning
    callback keeps a plain integer per batch); the windows get what pushing gives."""
    counts = {"samples": 0, "optimizer_steps": 0}
    session = EmissionsSession("custom", **tracker_kwargs)
    session.begin_run("fit")
    session.count_with(lambda: dict(counts))
    session.begin_epoch(0)
    counts.update(samples=30, optimizer_steps=3)
    session.begin_phase("validation")
    session.end_phase()  # an epoch is open: training goes on
    mid = session.epoch_figures()  # what a monitor sees at the validation end
    assert mid["epoch_samples"] == 30
    counts.update(samples=50, optimizer_steps=5)
    busy(0.01)
    row = session.end_epoch(0)
    session.begin_epoch(1)

    def broken() -> dict[str, int]:
        raise RuntimeError("the trainer is gone")

    session.count_with(broken)  # a failing source leaves the counts as they were
    second = session.end_epoch(1)
    session.end_run()
    train = read_windows(tmp_path).query("phase == 'train'")
    assert list(train["samples"]) == [30, 20, 0] and list(train["optimizer_steps"]) == [3, 2, 0]
    assert row["epoch_samples"] == 50 and second["epoch_samples"] == 0
    # the epoch's figures at its end include the training after the validation pass
    assert row["epoch_energy_kwh"] == pytest.approx(
        train[train["epoch"] == 0]["energy_consumed"].sum(), rel=1e-9
    )
    assert row["epoch_duration_s"] > mid["epoch_duration_s"] + 0.009
    assert row["epoch_energy_kwh"] > mid["epoch_energy_kwh"]


def test_edges_between_steps_read_the_meter_and_records_are_built_together(
    tracker_kwargs, tmp_path, monkeypatch
):
    """An epoch's start and a validation's start take the edge only; the figures logged at a
    validation end and an epoch end come from the edges, without building a record, and equal
    the records built later; an output writing windows gets them built in one go by the sampler
    thread once the oldest closed a second ago (however far the next edge), in the order they
    closed; a failing run writes every window closed so far."""
    from codecarbon_callbacks_core import _tracker_windows

    recorded = []

    class Recorder(BaseOutput):
        def window_out(self, record):
            recorded.append(record.name)

    session = EmissionsSession("custom", output_handlers=[Recorder()], **tracker_kwargs)
    session.begin_run("fit")
    tracker = session.tracker
    session.begin_epoch(0)
    busy(0.01)
    session.begin_phase("validation")
    assert recorded == [] and tracker.windows_to_collect == 2  # setup, epoch 0: edges only
    busy(0.01)
    val = session.end_phase(training_continues=False)
    row = session.end_epoch(0)
    assert recorded == [] and tracker.windows_to_collect == 3  # figures without records
    assert row["epoch_energy_kwh"] > 0 and row["val_energy_kwh"] == val["val_energy_kwh"] > 0
    session.begin_epoch(1)
    monkeypatch.setattr(_tracker_windows, "LATER_AGE_S", 0.0)  # long enough ago: written
    deadline = time.monotonic() + 5.0
    while len(recorded) < 4 and time.monotonic() < deadline:  # no edge: the sampler's tick
        time.sleep(0.01)
    assert recorded == ["setup", "epoch 0", "validation epoch 0", "between phases"]
    monkeypatch.setattr(_tracker_windows, "LATER_AGE_S", 1.0)
    busy(0.01)
    session.begin_phase("validation")
    assert len(recorded) == 4
    session.fail(RuntimeError("boom"))
    windows = read_windows(tmp_path)
    assert (
        list(windows["name"])
        == recorded
        == [
            "setup",
            "epoch 0",
            "validation epoch 0",
            "between phases",
            "epoch 1",
            "validation epoch 1",
        ]
    )
    assert list(windows["status"])[-1] == "failed"
    records = {r["name"]: r for r in session.summary()["windows"]}
    assert len(records) == 6
    # the figures logged are the records' own, to the last bit
    assert val["val_energy_kwh"] == records["validation epoch 0"]["energy_kwh"]
    assert val["val_emissions_kg"] == records["validation epoch 0"]["emissions_kg"]
    assert row["epoch_energy_kwh"] == records["epoch 0"]["energy_kwh"]
    assert row["epoch_ram_energy_kwh"] == records["epoch 0"]["ram_energy_kwh"]
    assert row["epoch_energy_uncertainty_kwh"] == pytest.approx(
        windows.set_index("name").loc["epoch 0", "energy_consumed_uncertainty_kwh"], rel=1e-12
    )
    check_tiling(windows, read_runs(tmp_path).iloc[0])


def test_without_window_outputs_records_are_built_when_read(tracker_kwargs, tmp_path):
    """No output writes windows: no record is built during the run nor at its end; the summary
    builds them when read, in the order the windows closed, the run's last one included, and
    they sum to the run; the epoch's logged figures are theirs."""
    session = EmissionsSession("custom", **{**tracker_kwargs, "output_methods": []})
    session.begin_run("fit")
    tracker = session.tracker
    rows = []
    for epoch in range(2):
        session.begin_epoch(epoch)
        busy(0.01)
        session.begin_phase("validation")
        busy(0.005)
        session.end_phase(training_continues=False)
        rows.append(session.end_epoch(epoch))
    session.end_run()
    assert tracker._built == [] and tracker.windows_to_collect == 6  # none built yet
    windows = session.summary()["windows"]
    assert [w["name"] for w in windows] == [
        "setup",
        "epoch 0",
        "validation epoch 0",
        "between phases",
        "epoch 1",
        "validation epoch 1",
        "between phases",
    ]
    assert windows[-1]["end_timestamp"] == tracker.final_emissions_data.timestamp  # at stop()
    assert len(session.summary()["windows"]) == 7  # built once
    assert sum(w["energy_kwh"] for w in windows) == pytest.approx(
        tracker.final_emissions_data.energy_consumed, rel=1e-12
    )
    assert rows[1]["epoch_energy_kwh"] == windows[4]["energy_kwh"]
    assert rows[1]["val_energy_kwh"] == windows[5]["energy_kwh"]


def test_mid_epoch_validation_continues_the_epoch(tracker_kwargs, tmp_path):
    session = EmissionsSession("custom", **tracker_kwargs)
    session.begin_run("fit")
    session.begin_epoch(0)
    busy(0.02)
    session.begin_phase("validation")
    busy(0.01)
    val = session.end_phase()  # an epoch is open: training goes on
    busy(0.02)
    row = session.end_epoch(0)
    session.end_run()
    windows = read_windows(tmp_path)
    train = windows[(windows["phase"] == "train") & (windows["epoch"] == 0)]
    assert list(train["name"]) == ["epoch 0", "epoch 0 (continued)"]
    assert row["epoch_energy_kwh"] == pytest.approx(train["energy_consumed"].sum(), rel=1e-9)
    assert row["val_energy_kwh"] == pytest.approx(val["val_energy_kwh"], rel=1e-9)
    check_tiling(windows, read_runs(tmp_path).iloc[0])


def test_forecast_from_the_second_window_and_budget_stop(tracker_kwargs, tmp_path, caplog):
    session = EmissionsSession("custom", **tracker_kwargs)
    session.begin_run("fit", planned=10)
    rows = run_epochs(session, 3, planned=10)
    assert "forecast_energy_kwh" not in rows[0]  # the first epoch is warm-up
    assert (
        "forecast_energy_kwh" not in rows[1]
        or rows[1]["forecast_energy_kwh"] > rows[1]["total_energy_kwh"]
    )
    forecast = rows[2]["forecast_energy_kwh"]
    assert forecast > rows[2]["total_energy_kwh"] * 2  # 7 more epochs to go
    assert session.stop_requested is False
    session.end_run()

    # a budget a bit above what was used: the next epoch would cross it -> stop, budget_stop
    out = tmp_path / "budget"
    kwargs = dict(tracker_kwargs, output_dir=str(out))
    used = rows[0]["total_energy_kwh"]
    session = EmissionsSession("custom", max_energy_kwh=used * 1.2, **kwargs)
    session.begin_run("fit", planned=10)
    with caplog.at_level(logging.WARNING, logger="codecarbon_callbacks.session"):
        rows = run_epochs(session, 10, planned=10)
    assert session.stop_requested and len(rows) < 10
    assert "max_energy_kwh" in session.stop_reason
    assert any("Asking the trainer to stop" in r.getMessage() for r in caplog.records)
    session.end_run()
    assert read_runs(out).loc[0, "status"] == "budget_stop"
    assert "budget_stop_reason" in json.loads(read_runs(out).loc[0, "metadata"])


def test_resume_keeps_run_id_and_cumulative_totals(tracker_kwargs, tmp_path):
    first = EmissionsSession("custom", **tracker_kwargs)
    first.begin_run("fit")
    run_epochs(first, 2)
    state = json.loads(json.dumps(first.state_dict()))  # checkpoints hold JSON, never the tracker
    first.fail(RuntimeError("preempted"))
    before = read_runs(tmp_path).iloc[-1]
    assert before["status"] == "failed"

    second = EmissionsSession("custom", **tracker_kwargs)
    second.load_state_dict(state)
    second.begin_run("fit", done=2)
    rows = run_epochs(second, 1)
    second.end_run()
    after = read_runs(tmp_path).iloc[-1]
    assert after["run_id"] == before["run_id"] == state["tracker"]["run_id"]
    assert (
        after["energy_consumed"]
        > state["tracker"]["cpu_energy_kwh"] + state["tracker"]["ram_energy_kwh"]
    )
    assert rows[0]["total_energy_kwh"] > state["tracker"]["cpu_energy_kwh"]
    assert [e["epoch"] for e in second.summary()["epochs"]] == [0, 1, 0]


def test_failure_writes_partial_run_and_open_window(tracker_kwargs, tmp_path):
    session = EmissionsSession("custom", **tracker_kwargs)
    session.begin_run("fit")
    session.begin_epoch(0)
    busy(0.01)
    tracker = session.tracker
    session.fail(KeyboardInterrupt())
    assert not tracker.is_running
    windows = read_windows(tmp_path)
    assert windows.iloc[-1]["phase"] == "train" and windows.iloc[-1]["status"] == "interrupted"
    assert read_runs(tmp_path).loc[0, "status"] == "interrupted"


def test_given_tracker_is_started_and_stopped_only_if_not_running(tracker_kwargs, tmp_path):
    from codecarbon_callbacks import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(**tracker_kwargs)
    tracker.start()
    session = EmissionsSession("custom", tracker)
    session.begin_run("fit")
    run_epochs(session, 1)
    session.end_run()
    assert tracker.is_running  # not ours to stop
    tracker.stop()

    other = OfflineEmissionsTracker(**tracker_kwargs)
    session = EmissionsSession("custom", other)
    session.begin_run("fit")
    assert other.is_running
    session.end_run()
    assert not other.is_running


def test_bad_arguments_name_the_parameter(tracker_kwargs):
    from codecarbon_callbacks import ConfigError

    with pytest.raises(ValueError, match="max_energy_kwh"):
        EmissionsSession("custom", max_energy_kwh=-1, **tracker_kwargs)
    with pytest.raises(ValueError, match="window_every_n_steps"):
        EmissionsSession("custom", window_every_n_steps=1.5, **tracker_kwargs)
    with pytest.raises(ValueError, match="tracker"):
        EmissionsSession("custom", object())
    with pytest.raises(ConfigError, match="measure_power_secs"):
        EmissionsSession("custom", country_iso_code="FRA", measure_power_secs="often")


def test_picklable_until_the_run_starts(tracker_kwargs):
    kwargs = {k: v for k, v in tracker_kwargs.items() if k != "components"}
    session = EmissionsSession("custom", task_family="x", **kwargs)
    copy = pickle.loads(pickle.dumps(session))
    assert copy.task_family == "x" and copy.tracker is None and not copy.running


def test_non_zero_rank_measures_but_writes_nothing(tracker_kwargs, tmp_path):
    session = EmissionsSession("custom", **tracker_kwargs)
    assert session.begin_run("fit", rank=1)
    assert not session.is_writer
    run_epochs(session, 1)
    session.end_run()
    assert not (tmp_path / "emissions.csv").exists()
    assert session.summary()["totals"]["energy_kwh"] > 0


def _session_boamps_run(tracker_kwargs, tmp_path):
    """A one-epoch session run with framework facts and a BoAmps output: (task, report, runs)."""
    from codecarbon_callbacks import BoAmpsOutput

    session = EmissionsSession(
        "custom",
        task_family="regression",
        output_handlers=[BoAmpsOutput(tmp_path)],
        **tracker_kwargs,
    )
    session.begin_run(
        "fit",
        info={
            "class_path": "pkg.Model",
            "parameters": 2_500_000_000,
            "layers": 4,
            "epochs": 1,
            "optimizer": "Adam",
            "n_samples": 64,
            "data_type": "tabular",
            "input_shape": "(64, 8)",
            "framework_version": "1.0",
        },
    )
    run_epochs(session, 1)
    task = session.boamps_task()
    session.end_run()
    runs = read_runs(tmp_path)
    return task, boamps_report(tmp_path, runs.loc[0, "run_id"]), runs


def test_boamps_task_from_framework_info_validates(tracker_kwargs, tmp_path):
    task, report, runs = _session_boamps_run(tracker_kwargs, tmp_path)
    assert task["algorithms"][0]["parametersNumber"] == pytest.approx(2.5)  # billions
    assert task["taskStage"] == "training" and task["dataset"][0]["dataType"] == "tabular"
    assert validate_report(report) == []
    assert report["task"]["taskFamily"] == "regression"
    metadata = json.loads(runs.loc[0, "metadata"])
    assert metadata["framework"] == "custom" and metadata["task_family"] == "regression"
    assert metadata["boamps_task"]["algorithms"][0]["classPath"] == "pkg.Model"


def test_session_boamps_report_matches_the_official_schema(
    tracker_kwargs, tmp_path, boamps_validator
):
    """Reference: the report a session writes, against the official BoAmps 1.1 schemas."""
    _, report, _ = _session_boamps_run(tracker_kwargs, tmp_path)
    assert schema_errors(boamps_validator, report) == []


def test_user_task_fields_override_automatic_ones(tracker_kwargs):
    session = EmissionsSession(
        "custom",
        task_family="t",
        task_stage="retraining",
        task={"algorithms": [{"algorithmName": "mlp"}], "task_description": "d"},
        dataset={"data_usage": "input", "data_type": "image", "source": "public"},
        **tracker_kwargs,
    )
    session.begin_run("fit", info={"class_path": "a.B", "data_type": "tabular", "pretrained": True})
    task = session.boamps_task()
    session.end_run()
    assert task["taskStage"] == "retraining"
    assert (
        task["algorithms"][0]["algorithmName"] == "mlp"
        and task["algorithms"][0]["classPath"] == "a.B"
    )
    assert task["dataset"] == [{"dataUsage": "input", "dataType": "image", "source": "public"}]
    assert task["taskDescription"] == "d"


def test_data_type_and_shape_guesses():
    import numpy as np

    assert guess_data_type(np.zeros(8, dtype="float32")) == "tabular"
    assert guess_data_type(np.zeros(16, dtype="int64")) == "token"
    assert guess_data_type(np.zeros((3, 32, 32), dtype="float32")) == "image"
    assert guess_data_type(np.zeros((8, 3, 32, 32), dtype="float32")) == "video"
    assert guess_data_type({"input_ids": [1, 2]}) == "token"
    assert guess_data_type("a sentence") == "text"
    assert guess_data_type(np.zeros(4, dtype=bool)) == "boolean"
    assert guess_data_type(object()) == "other"
    assert shape_string(np.zeros((3, 32, 32)), 10) == "(10, 3, 32, 32)"
    data = [(np.zeros(8, dtype="float32"), 1.0)] * 5
    assert dataset_info(data, batch_size=2) == {
        "batch_size": 2,
        "n_samples": 5,
        "data_type": "tabular",
        "input_shape": "(5, 8)",
    }


def test_a_tracker_that_cannot_start_leaves_training_alone(tracker_kwargs, tmp_path, caplog):
    kwargs = dict(tracker_kwargs, allow_multiple_runs=False)
    holder = EmissionsSession("custom", **kwargs)
    assert holder.begin_run("fit")
    blocked = EmissionsSession("custom", **dict(kwargs, output_dir=str(tmp_path / "blocked")))
    with caplog.at_level(logging.WARNING, logger="codecarbon_callbacks.session"):
        assert blocked.begin_run("fit") is False
    assert any("not measured" in r.getMessage() for r in caplog.records)
    blocked.begin_epoch(0)  # every later call is a no-op
    assert blocked.end_epoch(0) == {}
    blocked.end_run()
    holder.end_run()
    assert not (tmp_path / "blocked" / "emissions.csv").exists()


def test_a_corrupt_resume_state_starts_a_new_run(tracker_kwargs, tmp_path, caplog):
    session = EmissionsSession("custom", **tracker_kwargs)
    session.load_state_dict({"tracker": {"cpu_energy_kwh": "lots"}})
    with caplog.at_level(logging.WARNING, logger="codecarbon_callbacks.session"):
        assert session.begin_run("fit")
    assert any("could not resume" in r.getMessage() for r in caplog.records)
    session.end_run()
    assert read_runs(tmp_path).loc[0, "status"] == "completed"


def test_step_and_time_windows_overlap_the_tiling_ones(tracker_kwargs, tmp_path):
    session = EmissionsSession(
        "custom", window_every_n_steps=3, window_every_seconds=0.05, **tracker_kwargs
    )
    session.begin_run("fit", unit="step", planned=12)
    session.begin_epoch(0)
    closed = []
    for step in range(1, 13):
        busy(0.01)
        figures = session.on_step(step, planned_steps=12)
        if figures:
            closed.append((step, figures))
    session.end_epoch(0)
    session.end_run()
    windows = read_windows(tmp_path)
    steps = windows[windows["kind"] == "step"]
    assert list(steps["name"]) == [f"steps from {n}" for n in (0, 3, 6, 9, 12)]
    times = windows[windows["kind"] == "time"]
    assert len(times) >= 2
    assert all(d >= 0.05 for d in times["duration"].iloc[:-1])
    assert all(f["window_energy_kwh"] > 0 for _, f in closed)
    assert any("forecast_energy_kwh" in f for _, f in closed)  # in steps, after the warm-up
    check_tiling(windows, read_runs(tmp_path).iloc[0])


def test_no_gpu_no_rapl_no_network_still_measures_and_says_so_once(tracker_kwargs, caplog):
    from codecarbon_callbacks import session as session_module

    session_module._INFO_ONCE.clear()
    with caplog.at_level(logging.INFO, logger="codecarbon_callbacks.session"):
        for _ in range(2):
            session = EmissionsSession("custom", **tracker_kwargs)
            session.begin_run("fit")
            run_epochs(session, 1)
            session.end_run()
    said = [r.getMessage() for r in caplog.records if "measuring" in r.getMessage()]
    assert len(said) == 1
    methods = {c.method.value for c in session.tracker.components}
    if methods <= {"constant", "tdp_estimate"}:  # this machine: no RAPL, no NVML
        assert "estimated" in said[0]
    assert "carbon intensity" in said[0] and "FRA" in said[0]
    assert session.summary()["totals"]["energy_kwh"] > 0


def test_each_run_builds_its_tracker_once_and_the_config_is_resolved_once(
    tracker_kwargs, monkeypatch
):
    from codecarbon_callbacks_core import tracker as tracker_module

    built, resolved = [], []
    real_setup = tracker_module.BaseEmissionsTracker._setup
    real_resolve = tracker_module.resolve_tracker_config

    def counting_setup(self, config, **kwargs):
        built.append(config)
        return real_setup(self, config, **kwargs)

    def counting_resolve(*args, **kwargs):
        resolved.append(args)
        return real_resolve(*args, **kwargs)

    monkeypatch.setattr(tracker_module.BaseEmissionsTracker, "_setup", counting_setup)
    monkeypatch.setattr(tracker_module, "resolve_tracker_config", counting_resolve)
    session = EmissionsSession("custom", **tracker_kwargs)
    assert (len(resolved), len(built)) == (1, 0)  # checked at construction, nothing built
    for expected in (1, 2):
        session.begin_run("fit")
        run_epochs(session, 1)
        session.end_run()
        assert len(built) == expected
    assert len(resolved) == 1 and built[0] is built[1]  # one resolved config for every run
    with pytest.raises(ValueError, match="measure_power_secs"):
        EmissionsSession("custom", **{**tracker_kwargs, "measure_power_secs": -1})


# -- what the user sees without configuring anything ------------------------------------------

CLOSING = re.compile(
    r"^codecarbon-callbacks: fit (?P<status>\w+): (?P<kwh>\S+) kWh, "
    r"(?P<kg>\S+) kg CO2eq; reports in (?P<dir>.+): (?P<files>.+)$"
)


def test_a_fit_ends_with_one_line_energy_emissions_and_where_the_reports_are(
    tracker_kwargs, tmp_path, capsys
):
    session = EmissionsSession("custom", output_methods=["csv", "boamps"], **tracker_kwargs)
    session.begin_run("fit")
    run_epochs(session, 1)
    assert capsys.readouterr().out == ""  # nothing before the end
    session.end_run()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    match = CLOSING.match(lines[0])
    assert match, lines[0]
    run = read_runs(tmp_path).iloc[0]
    assert match["status"] == "completed"
    assert float(match["kwh"]) == pytest.approx(run["energy_consumed"], rel=1e-5)
    assert float(match["kg"]) == pytest.approx(run["emissions"], rel=1e-5)
    assert match["dir"] == os.path.abspath(tmp_path)
    assert match["files"].split(", ") == [
        "emissions.csv",
        "emissions_windows.csv",
        f"boamps_report_{run['run_id']}.json",
    ]
    assert all((tmp_path / name).is_file() for name in match["files"].split(", "))


@pytest.mark.parametrize(
    ("verbose", "rank", "stage"),
    [
        (False, 0, "fit"),  # silenced
        (True, 1, "fit"),  # a rank other than zero
        (True, 0, "validate"),  # not a fit
    ],
)
def test_no_closing_line_when_silenced_off_rank_zero_or_outside_fit(
    tracker_kwargs, capsys, verbose, rank, stage
):
    session = EmissionsSession("custom", verbose=verbose, **tracker_kwargs)
    session.begin_run(stage, rank=rank)
    run_epochs(session, 1)
    session.end_run()
    assert capsys.readouterr().out == ""


def test_verbose_must_be_a_bool(tracker_kwargs):
    with pytest.raises(ValueError, match="verbose"):
        EmissionsSession("custom", verbose="no", **tracker_kwargs)


@pytest.fixture
def unknown_cpu(tmp_path, monkeypatch):
    """Real detection with a fake /proc/cpuinfo naming a CPU the TDP table lacks, an empty
    powercap tree and no GPU: the CPU is counted at a constant (a note for the user)."""
    from codecarbon_callbacks_core import hardware

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Mystery CPU\n")
    real = hardware.detect_for_config

    def detect(config, **overrides):
        return real(
            config,
            powercap_root=tmp_path / "none",
            cpuinfo_path=str(cpuinfo),
            nvml=False,
            **overrides,
        )

    monkeypatch.setattr(hardware, "detect_for_config", detect)


def _user_warnings(caught):
    return [str(w.message) for w in caught if w.category is CodeCarbonCallbacksWarning]


@pytest.mark.usefixtures("unknown_cpu")
def test_a_constant_cpu_is_warned_once_and_only_on_rank_zero(tracker_kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rank in (1, 0, 0):  # a rank other than zero, then rank zero's two fits
            session = EmissionsSession("custom", verbose=False, **tracker_kwargs)
            session.begin_run("fit", rank=rank)
            run_epochs(session, 1)
            session.end_run()
            if rank == 1:
                assert _user_warnings(caught) == []
    said = _user_warnings(caught)
    assert len(said) == 1 and "counted at a constant" in said[0]


@pytest.mark.usefixtures("unknown_cpu")
def test_distributed_detection_warns_on_rank_zero_only(tracker_kwargs, caplog):
    session = EmissionsSession("custom", **tracker_kwargs)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session._detect(session._config(), user_warning=False)  # global rank 1
        assert _user_warnings(caught) == [] and "counted at a constant" in caplog.text
        session._detect(session._config(), user_warning=True)  # global rank 0
    assert len(_user_warnings(caught)) == 1


def test_gpu_ids_naming_no_visible_gpu_raise_before_the_first_step(tracker_kwargs, monkeypatch):
    """Once a warning, then a run with no GPU at all: now the ConfigError reaches the trainer's
    run start (on_fit_start), naming gpu_ids and the visible GPUs."""
    import sys

    from codecarbon_callbacks_core.errors import ConfigError
    from fakes.fake_nvml import FakeDevice, FakeNvml, RealClock

    uuid = "GPU-0000cccc-0000-0000-0000-000000000000"
    monkeypatch.setitem(
        sys.modules, "pynvml", FakeNvml([FakeDevice(uuid=uuid, power_w=100.0)], clock=RealClock())
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    session = EmissionsSession("custom", **dict(tracker_kwargs, gpu_ids=[5]))
    with pytest.raises(ConfigError, match="gpu_ids") as caught:
        session.begin_run("fit")
    assert uuid in str(caught.value)
    assert not session.running


def test_checkpoint_arguments_keep_no_secret_and_the_key_names_the_configuration():
    secret = "SECRET-0001"
    given = {
        "output_dir": "runs/a",
        "project_name": "p",
        "verbose": True,
        "task_family": None,  # not given
        "output_handlers": [object()],  # not JSON
        "api_key": secret,
        "electricitymaps_api_token": secret,
        "co2_signal_api_token": secret,
        "emissions_endpoint": f"https://hooks.example.com/x?token={secret}",
        "api_endpoint": f"https://user:{secret}@api.example.com",
        "prometheus_url": f"user:{secret}@localhost:9091",
    }
    assert checkpoint_arguments(given) == {
        "output_dir": "runs/a",
        "project_name": "p",
        "verbose": True,
    }
    plain = {"api_endpoint": "https://api.example.com", "prometheus_url": "localhost:9091"}
    assert checkpoint_arguments(plain) == plain  # a URL without a secret is kept
    key = configuration_key(given)
    assert re.fullmatch(r"[0-9a-f]{12}", key)
    # no secret counts: other secrets, same key; another folder or host, another key
    assert (
        configuration_key(
            {
                **given,
                "api_key": "other",
                "prometheus_url": "u:x@localhost:9091",
                "emissions_endpoint": "https://hooks.example.com/x?token=y",
            }
        )
        == key
    )
    assert configuration_key({**given, "output_dir": "runs/b"}) != key
    assert configuration_key({**given, "api_endpoint": f"https://u:{secret}@other.example"}) != key
    session = EmissionsSession(
        "custom", country_iso_code="FRA", output_dir="runs/a", api_key=secret, verbose=False
    )
    assert secret not in json.dumps(session.checkpoint_arguments())
    assert session.configuration_key() == configuration_key(
        {"country_iso_code": "FRA", "output_dir": "runs/a", "verbose": False}
    )


def test_install_hint_quotes_the_extra_and_gives_the_clones_form():
    assert install_hint("keras") == (
        'pip install "codecarbon-callbacks[keras]" '
        '(from a clone, at its root: pip install -e ./core -e ".[keras]")'
    )


def test_a_user_collecting_the_trackers_windows_mid_epoch_costs_no_figure(tracker_kwargs):
    """tracker.collect_windows() is public: a user calling it mid-epoch takes the records, but
    the epoch's figures are still given (the tracker keeps the last windows' figures) and
    training is never interrupted."""
    session = EmissionsSession("custom", **{**tracker_kwargs, "output_methods": []})
    session.begin_run("fit")
    session.begin_epoch(0)
    busy(0.01)
    session.begin_phase("validation")
    busy(0.005)
    session.end_phase(training_continues=True)  # a mid-epoch validation
    taken = session.tracker.collect_windows()  # the user's own call
    busy(0.01)
    row = session.end_epoch(0)
    session.end_run()
    assert [r.name for r in taken] == ["setup", "epoch 0", "validation epoch 0"]
    train = [r for r in taken if r.name == "epoch 0"][0]
    assert row["epoch_energy_kwh"] > train.energy_consumed > 0  # both train windows
    assert row["val_energy_kwh"] == taken[2].energy_consumed
