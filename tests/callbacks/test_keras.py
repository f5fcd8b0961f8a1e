"""Real tiny Keras 3 trainings (torch backend) on CPU with the Keras EmissionsCallback."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from callbacks.checks import (
    boamps_report,
    check_closing_line,
    check_epoch_metrics,
    check_no_secret,
    check_secrets_given,
    check_tiling,
    read_runs,
    read_windows,
    secret_tracker_kwargs,
)

# tests/conftest.py sets KERAS_BACKEND=torch (unless set) before keras loads; nothing here is
# backend-specific.
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from codecarbon_callbacks_core.output.boamps import validate_report

from codecarbon_callbacks.keras import EmissionsCallback

N_SAMPLES = 256


def data(n: int = N_SAMPLES) -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    return rng.random((n, 8), dtype=np.float32), rng.random((n, 1), dtype=np.float32)


def tiny_model() -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    return model


class FailAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if epoch == self.epoch:
            raise RuntimeError("boom")


def test_fit_history_windows_metadata_and_eval_runs(tracker_kwargs, tmp_path, capsys):
    from codecarbon_callbacks import BoAmpsOutput

    callback = EmissionsCallback(
        task_family="regression", output_handlers=[BoAmpsOutput(tmp_path)], **tracker_kwargs
    )
    x, y = data()
    model = tiny_model()
    history = model.fit(
        x, y, epochs=3, batch_size=32, validation_split=0.25, callbacks=[callback], verbose=2
    )
    printed = capsys.readouterr().out
    # the progress bar shows two energy figures a line by default, never a NaN
    epoch_lines = [line for line in printed.splitlines() if "loss" in line]
    assert len(epoch_lines) == 3
    for line in epoch_lines:
        shown = [part.split(":")[0].strip() for part in line.split(" - ") if "_kwh" in part]
        shown += [part.split(":")[0].strip() for part in line.split(" - ") if "_kg" in part]
        assert sorted(shown) == ["epoch_emissions_kg", "epoch_energy_kwh"], line
        assert "nan" not in line

    # History keeps them all; the forecast from the second epoch (no NaN for the warm-up)
    forecast = history.history.pop("forecast_energy_kwh")
    assert len(forecast) == 2 and len(history.history.pop("forecast_emissions_kg")) == 2
    assert {len(v) for v in history.history.values()} == {3}  # one entry per epoch for every key
    rows = [{k: v[i] for k, v in history.history.items()} for i in range(3)]
    check_epoch_metrics(rows, 3)
    assert all(r["val_energy_kwh"] > 0 for r in rows)
    assert forecast[0] > rows[1]["total_energy_kwh"]

    runs, windows = read_runs(tmp_path), read_windows(tmp_path)
    run = runs.iloc[0]
    assert run["status"] == "completed"
    check_tiling(windows, run)
    sequence = [(w.kind, w.phase) for w in windows.itertuples()]
    assert (
        sequence
        == [("phase", "other")]
        + [("epoch", "train"), ("phase", "validation"), ("phase", "other")] * 3
    )
    train = windows[windows["phase"] == "train"]
    assert [r["epoch_energy_kwh"] for r in rows] == pytest.approx(
        list(train["energy_consumed"]), rel=1e-9
    )
    # work per epoch: 192 training samples (a quarter is held out) in 6 batches of 32
    trained = N_SAMPLES * 3 // 4
    assert list(train["samples"]) == [trained] * 3
    assert list(train["optimizer_steps"]) == [trained // 32] * 3
    assert train["tokens"].isna().all()
    assert [r["epoch_energy_per_sample_kwh"] for r in rows] == pytest.approx(
        list(train["energy_consumed"] / trained), rel=1e-9
    )
    assert [r["epoch_samples"] for r in rows] == [trained] * 3
    assert callback.summary()["totals"]["energy_kwh"] == pytest.approx(
        run["energy_consumed"], rel=1e-9
    )

    report = boamps_report(tmp_path, run["run_id"])
    assert validate_report(report) == []
    algorithm = report["task"]["algorithms"][0]
    assert algorithm["framework"] == "keras" and algorithm["frameworkVersion"] == keras.__version__
    assert algorithm["parametersNumber"] == pytest.approx(model.count_params() / 1e9)
    assert (
        algorithm["layersNumber"] == 2
        and algorithm["epochsNumber"] == 3
        and algorithm["optimizer"] == "Adam"
    )
    assert algorithm["quantization"] == "fp32"
    assert report["task"]["dataset"][0] == {
        "dataUsage": "input",
        "dataType": "tabular",
        "shape": "(None, 8)",
    }

    model.evaluate(x, y, callbacks=[callback], verbose=0)
    model.predict(x, callbacks=[callback], verbose=0)
    runs, windows = read_runs(tmp_path), read_windows(tmp_path)
    assert len(runs) == 3 and list(runs["status"]) == ["completed"] * 3
    assert list(windows[windows["run_id"] == runs.iloc[1]["run_id"]]["phase"]) == ["test"]
    assert list(windows[windows["run_id"] == runs.iloc[2]["run_id"]]["phase"]) == ["predict"]
    assert json.loads(runs.iloc[2]["metadata"])["boamps_task"]["taskStage"] == "inference"


def test_fit_ends_with_one_line_unless_verbose_is_false(tracker_kwargs, tmp_path, capsys):
    x, y = data(64)
    for verbose in (True, False):
        callback = EmissionsCallback(verbose=verbose, **tracker_kwargs)
        tiny_model().fit(x, y, epochs=1, batch_size=32, callbacks=[callback], verbose=0)
        out = capsys.readouterr().out
        if verbose:
            check_closing_line(out, tmp_path)
        else:
            assert "codecarbon-callbacks:" not in out
    assert len(read_runs(tmp_path)) == 2


def test_budget_stop_sets_stop_training(tracker_kwargs, tmp_path):
    callback = EmissionsCallback(max_emissions_kg=1e-15, **tracker_kwargs)
    x, y = data()
    history = tiny_model().fit(x, y, epochs=5, batch_size=64, callbacks=[callback], verbose=0)
    assert len(history.history["loss"]) == 1
    assert read_runs(tmp_path).iloc[-1]["status"] == "budget_stop"
    assert "max_emissions_kg" in callback.summary()["stop_reason"]


def test_resume_with_backup_and_restore_and_a_state_file(tracker_kwargs, tmp_path):
    backup_dir = tmp_path / "backup"
    state_path = backup_dir / "emissions_state.json"
    x, y = data()
    model = tiny_model()
    first = EmissionsCallback(state_path=state_path, **tracker_kwargs)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(
            x,
            y,
            epochs=4,
            batch_size=64,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(str(backup_dir)), first, FailAtEpoch(2)],
        )
    state = json.loads(state_path.read_text())
    run_id = state["tracker"]["run_id"]
    assert [e["epoch"] for e in state["epochs"]] == [0, 1]
    first.session.end_run(status="interrupted")  # what the process exit does to a run left open

    second = EmissionsCallback(state_path=state_path, **tracker_kwargs)
    history = tiny_model().fit(
        x,
        y,
        epochs=4,
        batch_size=64,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(str(backup_dir)), second],
    )
    assert len(history.history["loss"]) == 2  # epochs 2 and 3 only
    runs = read_runs(tmp_path)
    assert list(runs["run_id"]) == [run_id, run_id]
    assert list(runs["status"]) == ["interrupted", "completed"]
    assert runs.iloc[1]["energy_consumed"] > runs.iloc[0]["energy_consumed"]
    assert history.history["total_energy_kwh"][0] > state["tracker"]["ram_energy_kwh"]
    assert [e["epoch"] for e in second.summary()["epochs"]] == [0, 1, 2, 3]
    assert not state_path.exists()  # removed when fit completes, like BackupAndRestore's backup


def test_no_secret_reaches_the_state_file_a_file_or_a_log_and_resume_works(
    tmp_path, caplog, capsys
):
    """Every secret given as an argument, the state file written at each epoch, every sending
    output failing: no secret in the state file, any other file or any log line; the resumed
    callback takes its secrets from its own arguments."""
    import logging

    output, backup_dir = tmp_path / "emissions", tmp_path / "backup"
    kwargs = secret_tracker_kwargs(output)
    state_file = backup_dir / "emissions_state_0.json"
    with caplog.at_level(logging.DEBUG):
        x, y = data(64)
        first = EmissionsCallback(state_path=state_file, **kwargs)
        with pytest.raises(RuntimeError, match="boom"):
            tiny_model().fit(
                x,
                y,
                epochs=3,
                batch_size=32,
                verbose=0,
                callbacks=[
                    keras.callbacks.BackupAndRestore(str(backup_dir)),
                    first,
                    FailAtEpoch(1),
                ],
            )
        state_text = state_file.read_text()  # written at epoch 0's end, read at resume
        searched_before = check_no_secret([tmp_path])
        first.session.end_run(status="interrupted")  # what the process exit does
        second = EmissionsCallback(state_path=state_file, **kwargs)
        tiny_model().fit(
            x,
            y,
            epochs=3,
            batch_size=32,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(str(backup_dir)), second],
        )
    runs = read_runs(output)
    assert list(runs["run_id"]) == [json.loads(state_text)["tracker"]["run_id"]] * 2  # resumed
    assert list(runs["status"]) == ["interrupted", "completed"]
    check_secrets_given(second.tracker, kwargs)
    assert state_file in searched_before
    searched = check_no_secret([tmp_path], caplog.text, capsys.readouterr().out)
    assert any(".codecarbon_spool" in str(path) for path in searched)  # the outputs failed
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # and said so


def test_two_callbacks_in_one_fit_each_write_and_resume_their_own_run(tracker_kwargs, tmp_path):
    """Two callbacks writing to two folders, each with its state file: each folder gets its own
    run, and after a crash each resumed callback continues its own run."""
    folders = [tmp_path / "a", tmp_path / "b"]
    backup_dir = tmp_path / "backup"
    x, y = data(64)

    def fit(fail: bool) -> list[Any]:
        callbacks = [
            EmissionsCallback(
                state_path=backup_dir / f"state_{folder.name}.json",
                **{**tracker_kwargs, "output_dir": str(folder)},
            )
            for folder in folders
        ]
        try:
            tiny_model().fit(
                x,
                y,
                epochs=3,
                batch_size=32,
                verbose=0,
                callbacks=[
                    keras.callbacks.BackupAndRestore(str(backup_dir)),
                    *callbacks,
                    *([FailAtEpoch(2)] if fail else []),
                ],
            )
        except RuntimeError:
            for callback in callbacks:  # what the process exit does to the runs left open
                callback.session.end_run(status="interrupted")
        return callbacks

    fit(fail=True)
    states = [json.loads((backup_dir / f"state_{f.name}.json").read_text()) for f in folders]
    run_ids = [state["tracker"]["run_id"] for state in states]
    assert run_ids[0] != run_ids[1]
    second = fit(fail=False)
    for folder, run_id, callback in zip(folders, run_ids, second):
        runs = read_runs(folder)
        assert list(runs["run_id"]) == [run_id, run_id]  # its own run, resumed
        assert list(runs["status"]) == ["interrupted", "completed"]
        assert [e["epoch"] for e in callback.summary()["epochs"]] == [0, 1, 2]


def test_progress_bar_keys_are_checked_and_configurable(tracker_kwargs, capsys):
    with pytest.raises(ValueError, match="progress_bar_keys.*'energy'"):
        EmissionsCallback(progress_bar_keys=["energy"], **tracker_kwargs)
    with pytest.raises(ValueError, match="progress_bar_keys must be a list"):
        EmissionsCallback(progress_bar_keys="epoch_energy_kwh", **tracker_kwargs)
    x, y = data(64)
    callback = EmissionsCallback(progress_bar_keys=["total_energy_kwh"], **tracker_kwargs)
    tiny_model().fit(x, y, epochs=1, batch_size=32, callbacks=[callback], verbose=2)
    line = next(line for line in capsys.readouterr().out.splitlines() if "loss" in line)
    assert "total_energy_kwh" in line and "epoch_energy_kwh" not in line


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_fit_with_the_jax_backend(tmp_path):
    """Keras fixes its backend at import: a process of its own, with KERAS_BACKEND=jax."""
    script = textwrap.dedent(f"""
        import json, numpy as np, keras
        from codecarbon_callbacks.keras import EmissionsCallback

        assert keras.backend.backend() == "jax"
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        callback = EmissionsCallback(country_iso_code="FRA", output_dir={str(tmp_path)!r})
        history = model.fit(np.zeros((40, 4), "float32"), np.zeros((40, 1), "float32"),
                            epochs=2, batch_size=16, verbose=2, callbacks=[callback])
        print("HISTORY", json.dumps({{k: [float(x) for x in v]
                                     for k, v in history.history.items()}}))
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    history = json.loads(next(line for line in lines if line.startswith("HISTORY"))[8:])
    assert history["epoch_samples"] == [40, 40] and history["epoch_optimizer_steps"] == [3, 3]
    assert all(e > 0 for e in history["epoch_energy_kwh"])
    bar = [line for line in lines if "loss" in line and not line.startswith("HISTORY")]
    assert len(bar) == 2 and all("total_energy_kwh" not in line for line in bar)
    assert all("epoch_energy_kwh" in line and "nan" not in line for line in bar)
    train = read_windows(tmp_path).query("phase == 'train'")
    assert list(train["samples"]) == [40, 40]
    assert list(train["energy_consumed"]) == pytest.approx(history["epoch_energy_kwh"], rel=1e-9)


def test_window_options_need_batch_hooks():
    with pytest.raises(ValueError, match="window_every_n_steps.*steps_per_epoch"):
        EmissionsCallback(window_every_n_steps=10, country_iso_code="FRA")


def test_crash_leaves_the_run_written_as_incomplete_at_exit(tmp_path):
    """Keras has no exception hook: the process exit writes the open run, marked incomplete."""
    script = textwrap.dedent(f"""
        import numpy as np, keras
        from codecarbon_callbacks.keras import EmissionsCallback

        class Fail(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    raise RuntimeError("boom")

        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        callback = EmissionsCallback(country_iso_code="FRA", output_dir={str(tmp_path)!r})
        model.fit(np.zeros((32, 4), "float32"), np.zeros((32, 1), "float32"), epochs=3, verbose=0,
                  callbacks=[callback, Fail()])
    """)
    env = dict(os.environ, KERAS_BACKEND="torch", HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "boom" in result.stderr
    run = read_runs(tmp_path).iloc[-1]
    assert run["status"] == "incomplete"
    windows = read_windows(tmp_path)
    assert list(windows["phase"]) == ["other", "train", "other", "train"]
    assert windows.iloc[-1]["status"] == "incomplete" and windows.iloc[-1]["epoch"] == 1
