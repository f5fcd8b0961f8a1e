"""Real tiny Lightning trainings on CPU with codecarbon_callbacks.lightning.EmissionsCallback."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
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

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")

from codecarbon_callbacks_core.output.boamps import validate_report
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from codecarbon_callbacks.lightning import EmissionsCallback

N_SAMPLES, BATCH = 256, 32


class TinyRegressor(pl.LightningModule):
    def __init__(
        self, fail_at_epoch: int | None = None, error: type[BaseException] = RuntimeError
    ) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)
        )
        self.fail_at_epoch = fail_at_epoch
        self.error = error

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if (
            self.fail_at_epoch is not None
            and self.current_epoch == self.fail_at_epoch
            and batch_idx == 2
        ):
            raise self.error("boom")
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def predict_step(self, batch: Any, batch_idx: int) -> Any:
        return self.net(batch[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loaders(n: int = N_SAMPLES) -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(n, 8, generator=generator), torch.randn(n, 1, generator=generator)
    )
    return DataLoader(data, batch_size=BATCH), DataLoader(data, batch_size=64)


def trainer(tmp_path: Path, callback: Any, **kwargs: Any) -> Any:
    options = dict(
        max_epochs=3,
        logger=CSVLogger(tmp_path / "logs"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=[callback], **options)


def logged_epochs(trainer_: Any) -> list[dict[str, float]]:
    import pandas as pd

    metrics = pd.read_csv(Path(trainer_.logger.log_dir) / "metrics.csv")
    rows = metrics.dropna(subset=["epoch_energy_kwh"])
    return [
        {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and v == v}
        for row in rows.to_dict("records")
    ]


def test_fit_test_predict_windows_logs_metadata(tracker_kwargs, tmp_path):
    from codecarbon_callbacks import BoAmpsOutput

    callback = EmissionsCallback(
        task_family="regression", output_handlers=[BoAmpsOutput(tmp_path)], **tracker_kwargs
    )
    pickle.dumps(EmissionsCallback(country_iso_code="FRA", output_dir=str(tmp_path)))  # ddp_spawn
    train, val = loaders()
    t = trainer(tmp_path, callback)
    t.fit(TinyRegressor(), train, val)

    runs, windows = read_runs(tmp_path), read_windows(tmp_path)
    fit_run = runs.iloc[0]
    assert fit_run["status"] == "completed"
    fit_windows = windows[windows["run_id"] == fit_run["run_id"]]
    check_tiling(fit_windows, fit_run)
    sequence = [
        (r.kind, r.phase, None if r.epoch != r.epoch else int(r.epoch))
        for r in fit_windows.itertuples()
    ]
    assert sequence[:3] == [
        ("phase", "other", None),
        ("phase", "validation", None),
        ("phase", "other", None),
    ]
    for epoch in range(3):  # train, its validation, then what follows (checkpointing, hooks)
        assert sequence[3 + 3 * epoch : 6 + 3 * epoch] == [
            ("epoch", "train", epoch),
            ("phase", "validation", epoch),
            ("phase", "other", epoch),
        ]
    assert len(sequence) == 12

    rows = logged_epochs(t)
    check_epoch_metrics(rows, 3)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    # at the epoch's own step: Lightning's epoch figures (val_loss) are logged there too
    assert [int(r["step"]) for r in rows] == [8 * (e + 1) - 1 for e in range(3)]
    import pandas as pd

    every_row = pd.read_csv(Path(t.logger.log_dir) / "metrics.csv")
    val_steps = every_row.dropna(subset=["val_loss"])["step"]
    assert [int(r["step"]) for r in rows] == [int(step) for step in val_steps]
    assert t.callback_metrics["total_energy_kwh"].item() == rows[-1]["total_energy_kwh"]
    assert t.logged_metrics["epoch_energy_kwh"].item() == rows[-1]["epoch_energy_kwh"]
    assert all(r["val_energy_kwh"] > 0 for r in rows)
    assert (
        "forecast_energy_kwh" not in rows[0]
        and rows[1]["forecast_energy_kwh"] > rows[1]["total_energy_kwh"]
    )
    train_windows = fit_windows[fit_windows["phase"] == "train"]
    assert [r["epoch_energy_kwh"] for r in rows] == pytest.approx(
        list(train_windows["energy_consumed"]), rel=1e-9
    )
    # work per epoch: 256 samples in 8 optimizer steps; no token count in Lightning
    assert list(train_windows["samples"]) == [N_SAMPLES] * 3
    assert list(train_windows["optimizer_steps"]) == [N_SAMPLES // BATCH] * 3
    assert (
        train_windows["tokens"].isna().all() and train_windows["energy_per_token_kwh"].isna().all()
    )
    assert list(train_windows["energy_per_sample_kwh"]) == pytest.approx(
        list(train_windows["energy_consumed"] / N_SAMPLES), rel=1e-9
    )
    assert [r["epoch_energy_per_step_kwh"] for r in rows] == pytest.approx(
        list(train_windows["energy_consumed"] / (N_SAMPLES // BATCH)), rel=1e-9
    )
    assert [r["epoch_samples"] for r in rows] == [N_SAMPLES] * 3
    assert not any("epoch_tokens" in r or "epoch_energy_per_token_kwh" in r for r in rows)
    other = fit_windows[fit_windows["phase"] != "train"]
    assert other["samples"].isna().all() and other["energy_per_step_kwh"].isna().all()
    assert rows[-1]["total_energy_kwh"] <= fit_run["energy_consumed"]

    summary = callback.summary()
    assert summary["run_id"] == fit_run["run_id"] and len(summary["windows"]) == 12
    assert summary["totals"]["energy_kwh"] == pytest.approx(fit_run["energy_consumed"], rel=1e-9)

    report = boamps_report(tmp_path, fit_run["run_id"])
    assert validate_report(report) == []
    task = report["task"]
    algorithm = task["algorithms"][0]
    assert task["taskStage"] == "training" and task["taskFamily"] == "regression"
    assert algorithm["classPath"].endswith("TinyRegressor")
    assert algorithm["parametersNumber"] == pytest.approx((8 * 16 + 16 + 16 + 1) / 1e9)
    assert (
        algorithm["layersNumber"] == 2
        and algorithm["epochsNumber"] == 3
        and algorithm["optimizer"] == "Adam"
    )
    assert algorithm["quantization"] == "fp32"
    assert task["dataset"][0] == {
        "dataUsage": "input",
        "dataType": "tabular",
        "dataQuantity": N_SAMPLES,
        "shape": f"({N_SAMPLES}, 8)",
    }
    metadata = json.loads(fit_run["metadata"])
    assert metadata["framework"] == "lightning" and metadata["task_family"] == "regression"

    # trainer.validate, trainer.test and trainer.predict are runs of their own stage
    t.validate(TinyRegressor(), val)
    t.test(TinyRegressor(), val)
    t.predict(TinyRegressor(), val)
    runs, windows = read_runs(tmp_path), read_windows(tmp_path)
    assert len(runs) == 4 and list(runs["status"]) == ["completed"] * 4
    assert len(set(runs["run_id"])) == 4
    phases = [list(windows[windows["run_id"] == r]["phase"]) for r in runs["run_id"][1:]]
    assert phases == [["validation"], ["test"], ["predict"]]
    test_task = json.loads(runs.iloc[2]["metadata"])["boamps_task"]
    assert test_task["taskStage"] == "inference" and test_task["nbRequest"] == N_SAMPLES

    logged = pd.read_csv(Path(t.logger.log_dir) / "metrics.csv")
    assert logged["test_energy_kwh"].dropna().iloc[0] == pytest.approx(
        runs.iloc[2]["energy_consumed"], rel=1e-9
    )
    assert logged["val_energy_kwh"].dropna().iloc[-1] == pytest.approx(
        runs.iloc[1]["energy_consumed"], rel=1e-9
    )


def test_fit_ends_with_one_line_unless_verbose_is_false(tracker_kwargs, tmp_path, capsys):
    train, val = loaders(64)
    trainer(tmp_path, EmissionsCallback(**tracker_kwargs), max_epochs=1).fit(
        TinyRegressor(), train, val
    )
    check_closing_line(capsys.readouterr().out, tmp_path)
    quiet = EmissionsCallback(verbose=False, **tracker_kwargs)
    trainer(tmp_path, quiet, max_epochs=1).fit(TinyRegressor(), train, val)
    assert "codecarbon-callbacks:" not in capsys.readouterr().out
    assert len(read_runs(tmp_path)) == 2  # the quiet run was written all the same


def test_resume_from_checkpoint_keeps_run_and_totals(tracker_kwargs, tmp_path):
    train, val = loaders()
    checkpoints = tmp_path / "ckpt"
    first = EmissionsCallback(**tracker_kwargs)
    t = pl.Trainer(
        max_epochs=2,
        callbacks=[first, ModelCheckpoint(dirpath=checkpoints, save_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    t.fit(TinyRegressor(), train, val)
    first_run = read_runs(tmp_path).iloc[-1]
    saved = torch.load(checkpoints / "last.ckpt", weights_only=False)["callbacks"]
    state = next(v for k, v in saved.items() if "EmissionsCallback" in k)
    json.dumps(state)  # plain numbers and ids
    assert state["tracker"]["run_id"] == first_run["run_id"]

    second = EmissionsCallback(**tracker_kwargs)
    t2 = pl.Trainer(
        max_epochs=3,
        callbacks=[second],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
    )
    t2.fit(TinyRegressor(), train, val, ckpt_path=checkpoints / "last.ckpt")
    resumed = read_runs(tmp_path).iloc[-1]
    assert resumed["run_id"] == first_run["run_id"]
    assert (
        resumed["energy_consumed"]
        > state["tracker"]["cpu_energy_kwh"] + state["tracker"]["ram_energy_kwh"]
    )
    assert resumed["duration"] > state["tracker"]["duration_s"]
    assert [e["epoch"] for e in second.summary()["epochs"]] == [0, 1, 2]
    windows = read_windows(tmp_path)
    resumed_train = windows[(windows["phase"] == "train")]
    assert list(resumed_train["epoch"]) == [0, 1, 2]  # the resumed process adds epoch 2 only
    assert set(resumed_train["run_id"]) == {first_run["run_id"]}


@pytest.mark.parametrize(
    "error,status", [(RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")]
)
def test_exception_writes_partial_run_with_status(tracker_kwargs, tmp_path, error, status):
    callback = EmissionsCallback(**tracker_kwargs)
    train, val = loaders()
    t = trainer(tmp_path, callback, logger=False)
    # Lightning turns KeyboardInterrupt into a graceful shutdown and sys.exit(1)
    with pytest.raises(SystemExit if error is KeyboardInterrupt else error):
        t.fit(TinyRegressor(fail_at_epoch=1, error=error), train, val)
    tracker = callback.tracker
    assert not tracker.is_running  # sampler thread joined
    run = read_runs(tmp_path).iloc[-1]
    assert run["status"] == status
    windows = read_windows(tmp_path)
    assert windows.iloc[-1]["phase"] == "train" and windows.iloc[-1]["epoch"] == 1
    assert windows.iloc[-1]["status"] == status
    check_tiling(windows, run)


def test_budget_stop_asks_the_trainer_to_stop(tracker_kwargs, tmp_path, caplog):
    callback = EmissionsCallback(max_energy_kwh=1e-12, **tracker_kwargs)
    train, val = loaders()
    t = trainer(tmp_path, callback, max_epochs=5, logger=False)
    t.fit(TinyRegressor(), train, val)
    assert t.current_epoch < 5 and t.should_stop
    run = read_runs(tmp_path).iloc[-1]
    assert run["status"] == "budget_stop"
    assert len(read_windows(tmp_path).query("phase == 'train'")) == 1
    assert "max_energy_kwh" in callback.summary()["stop_reason"]


class MetricsProbe(pl.Callback):
    """What a monitoring callback placed after the EmissionsCallback reads, and when."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, float]]] = []

    def _keep(self, hook: str, trainer: Any) -> None:
        metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if "energy" in k}
        self.seen.append((hook, metrics))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._keep("validation_end", trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._keep("train_epoch_end", trainer)


def test_mid_epoch_validation_is_subtracted_from_the_epoch(tracker_kwargs, tmp_path):
    callback, probe = EmissionsCallback(**tracker_kwargs), MetricsProbe()
    train, val = loaders()
    t = trainer(tmp_path, callback, max_epochs=2, val_check_interval=0.5, num_sanity_val_steps=0)
    # a checkpoint monitoring the total checks at every validation end, the first one mid-epoch 0
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="total_energy_kwh", mode="max")
    t.callbacks.extend([probe, best])
    t.fit(TinyRegressor(), train, val)
    assert best.best_model_score is not None
    windows = read_windows(tmp_path)
    run = read_runs(tmp_path).iloc[-1]
    check_tiling(windows, run)
    per_epoch = [(w.phase, w.name) for w in windows.itertuples() if w.epoch == 0]
    assert per_epoch == [
        ("train", "epoch 0"),
        ("validation", "validation epoch 0"),
        ("train", "epoch 0 (continued)"),
        ("validation", "validation epoch 0"),
        ("other", "between phases"),
    ]
    rows = logged_epochs(t)
    check_epoch_metrics(rows, 2)
    epoch0 = windows[(windows["epoch"] == 0)]
    assert rows[0]["epoch_energy_kwh"] == pytest.approx(
        epoch0[epoch0["phase"] == "train"]["energy_consumed"].sum(), rel=1e-9
    )
    assert rows[0]["val_energy_kwh"] == pytest.approx(
        epoch0[epoch0["phase"] == "validation"]["energy_consumed"].sum(), rel=1e-9
    )
    # what a monitor sees: at validation end, the epoch so far (its training and its validation
    # passes up to this one); at train-epoch end, the whole epoch
    train0 = list(epoch0[epoch0["phase"] == "train"]["energy_consumed"])
    val0 = list(epoch0[epoch0["phase"] == "validation"]["energy_consumed"])
    hooks = [hook for hook, _ in probe.seen]
    assert hooks[:3] == ["validation_end", "validation_end", "train_epoch_end"]
    first, second, end = (seen for _, seen in probe.seen[:3])
    assert first["val_energy_kwh"] == pytest.approx(val0[0], rel=1e-9)
    assert first["epoch_energy_kwh"] == pytest.approx(train0[0], rel=1e-9)
    assert second["val_energy_kwh"] == pytest.approx(sum(val0), rel=1e-9)
    assert second["epoch_energy_kwh"] == pytest.approx(sum(train0), rel=1e-9)
    assert end["val_energy_kwh"] == pytest.approx(sum(val0), rel=1e-9)
    assert end["epoch_energy_kwh"] == pytest.approx(sum(train0), rel=1e-9)
    assert end["epoch_energy_per_sample_kwh"] == pytest.approx(sum(train0) / N_SAMPLES, rel=1e-9)
    # the run's total so far at each validation end: at least what the epoch holds, and growing
    assert first["total_energy_kwh"] >= train0[0] + val0[0] - 1e-15
    assert first["total_energy_kwh"] < second["total_energy_kwh"] <= end["total_energy_kwh"]


def test_early_stopping_and_checkpoint_monitor_energy(tracker_kwargs, tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping

    # the total only grows: a monitor minimising it stops after one epoch without improvement
    # and keeps epoch 0 as the best checkpoint; val_energy_kwh is read at validation end
    stop = EarlyStopping(monitor="total_energy_kwh", mode="min", patience=0)
    at_validation = EarlyStopping(
        monitor="val_energy_kwh", mode="min", patience=9, check_on_train_epoch_end=False
    )
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="total_energy_kwh", mode="min")
    callback = EmissionsCallback(**tracker_kwargs)
    train, val = loaders()
    t = trainer(tmp_path, callback, max_epochs=4, enable_checkpointing=True, num_sanity_val_steps=0)
    t.callbacks[:0] = [stop, best]  # before ours in the list: Lightning still runs them after
    t.callbacks.append(at_validation)
    t.fit(TinyRegressor(), train, val)
    rows = logged_epochs(t)
    assert len(rows) == 2 and stop.stopped_epoch == 1
    assert stop.best_score.item() == rows[0]["total_energy_kwh"]
    assert best.best_model_score.item() == rows[0]["total_energy_kwh"]
    assert "epoch=0" in Path(best.best_model_path).name
    assert at_validation.best_score.item() == min(r["val_energy_kwh"] for r in rows)


def test_step_windows_for_max_steps_runs(tracker_kwargs, tmp_path):
    callback = EmissionsCallback(window_every_n_steps=4, **tracker_kwargs)
    train, _ = loaders(N_SAMPLES * 2)
    t = trainer(tmp_path, callback, max_epochs=-1, max_steps=12, limit_val_batches=0)
    t.fit(TinyRegressor(), train)
    windows = read_windows(tmp_path)
    steps = windows[windows["kind"] == "step"]
    assert list(steps["name"])[:3] == ["steps from 0", "steps from 4", "steps from 8"]
    run = read_runs(tmp_path).iloc[-1]
    check_tiling(windows, run)
    assert steps["energy_consumed"].sum() <= run["energy_consumed"]
    import pandas as pd

    logged = pd.read_csv(Path(t.logger.log_dir) / "metrics.csv").dropna(
        subset=["window_energy_kwh"]
    )
    assert len(logged) == 3
    assert logged["forecast_energy_kwh"].dropna().size >= 1  # counted in steps, from the 2nd window


def test_pytorch_lightning_package_uses_the_same_implementation(tracker_kwargs, tmp_path):
    legacy = pytest.importorskip("pytorch_lightning")
    from codecarbon_callbacks._lightning_impl import LightningEmissionsMixin
    from codecarbon_callbacks.pytorch_lightning import EmissionsCallback as LegacyCallback

    assert issubclass(LegacyCallback, legacy.Callback) and issubclass(
        LegacyCallback, LightningEmissionsMixin
    )

    class LegacyRegressor(legacy.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    callback = LegacyCallback(**tracker_kwargs)
    train, _ = loaders()
    legacy.Trainer(
        max_epochs=2,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    ).fit(LegacyRegressor(), train)
    run = read_runs(tmp_path).iloc[-1]
    assert run["status"] == "completed"
    assert json.loads(run["metadata"])["framework"] == "pytorch_lightning"
    assert list(read_windows(tmp_path).query("phase == 'train'")["epoch"]) == [0, 1]


def test_no_secret_reaches_a_checkpoint_a_file_or_a_log_and_resume_works(tmp_path, caplog, capsys):
    """Every secret given as an argument, checkpoints saved, every sending output failing: no
    secret in the .ckpt files, any other file or any log line; the resumed callback takes its
    secrets from its own arguments."""
    import logging

    output, checkpoints = tmp_path / "emissions", tmp_path / "ckpt"
    kwargs = secret_tracker_kwargs(output)
    train, val = loaders(64)

    def fit(epochs: int, ckpt_path: Path | None = None) -> Any:
        callback = EmissionsCallback(**kwargs)
        pl.Trainer(
            max_epochs=epochs,
            callbacks=[callback, ModelCheckpoint(dirpath=checkpoints, save_last=True)],
            logger=CSVLogger(tmp_path / "logs"),
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=tmp_path,
        ).fit(TinyRegressor(), train, val, ckpt_path=ckpt_path)
        return callback

    with caplog.at_level(logging.DEBUG):
        fit(1)
        second = fit(2, ckpt_path=checkpoints / "last.ckpt")
    runs = read_runs(output)
    assert len(runs) == 2 and runs.iloc[1]["run_id"] == runs.iloc[0]["run_id"]  # resumed
    assert runs.iloc[1]["energy_consumed"] > runs.iloc[0]["energy_consumed"]
    check_secrets_given(second.tracker, kwargs)

    searched = check_no_secret([tmp_path], caplog.text, capsys.readouterr().out)
    ckpts = [path for path in searched if path.suffix == ".ckpt"]
    assert ckpts and all(runs.iloc[0]["run_id"].encode() in p.read_bytes() for p in ckpts)
    for path in ckpts:  # what torch.load gives back holds none either
        check_no_secret([], repr(torch.load(path, weights_only=False)))
    assert any(".codecarbon_spool" in str(path) for path in searched)  # the outputs failed
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # and said so


def two_callbacks_each_write_and_resume_their_own_run(
    package: Any, callback_class: Any, module_class: Any, tracker_kwargs: dict, tmp_path: Path
) -> None:
    """Two callbacks writing to two folders in one Trainer: no duplicate-state error; each folder
    gets its own run, and a resume continues each run from its own state in the checkpoint."""
    folders = [tmp_path / "a", tmp_path / "b"]
    checkpoints = tmp_path / "ckpt"
    train, _ = loaders(64)

    def fit(epochs: int, ckpt_path: Path | None = None) -> list[Any]:
        callbacks = [
            callback_class(**{**tracker_kwargs, "output_dir": str(folder)}) for folder in folders
        ]
        package.Trainer(
            max_epochs=epochs,
            callbacks=[
                *callbacks,
                package.callbacks.ModelCheckpoint(dirpath=checkpoints, save_last=True),
            ],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        ).fit(module_class(), train, ckpt_path=ckpt_path)
        return callbacks

    from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning

    # the figures share their keys in the framework's logs: said once, the reports stay apart
    with pytest.warns(CodeCarbonCallbacksWarning, match="2 EmissionsCallbacks in one trainer"):
        first = fit(1)
    assert first[0].state_key != first[1].state_key
    assert (
        first[0].state_key
        == callback_class(**{**tracker_kwargs, "output_dir": str(folders[0])}).state_key
    )  # the same in the resumed process
    run_ids = [read_runs(folder).iloc[-1]["run_id"] for folder in folders]
    assert run_ids[0] != run_ids[1] and [c.summary()["run_id"] for c in first] == run_ids
    saved = torch.load(checkpoints / "last.ckpt", weights_only=False)["callbacks"]
    assert saved[first[0].state_key]["tracker"]["run_id"] == run_ids[0]
    assert saved[first[1].state_key]["tracker"]["run_id"] == run_ids[1]

    second = fit(2, ckpt_path=checkpoints / "last.ckpt")
    for folder, run_id, callback in zip(folders, run_ids, second):
        runs = read_runs(folder)
        assert list(runs["run_id"]) == [run_id, run_id]  # its own run, resumed
        assert runs.iloc[1]["energy_consumed"] > runs.iloc[0]["energy_consumed"]
        assert [e["epoch"] for e in callback.summary()["epochs"]] == [0, 1]


class TinyModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_two_callbacks_in_one_trainer_each_write_and_resume_their_own_run(tracker_kwargs, tmp_path):
    two_callbacks_each_write_and_resume_their_own_run(
        pl, EmissionsCallback, TinyModule, tracker_kwargs, tmp_path
    )


def test_two_pytorch_lightning_callbacks_in_one_trainer_each_write_their_own_run(
    tracker_kwargs, tmp_path
):
    legacy = pytest.importorskip("pytorch_lightning")
    from codecarbon_callbacks.pytorch_lightning import EmissionsCallback as LegacyCallback

    class LegacyModule(legacy.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    two_callbacks_each_write_and_resume_their_own_run(
        legacy, LegacyCallback, LegacyModule, tracker_kwargs, tmp_path
    )


# Lightning ddp_spawn (2 CPU processes, gloo: the callback crosses the spawn pickled, one run
# row, one train row per epoch, combined figures) is in tests/distributed/test_launches.py, with
# the `ddp` strategy under torchrun and the Hugging Face Trainer.


def test_figures_unchanged_since_the_last_call_keep_their_tensors(tracker_kwargs):
    """The epoch's end repeats its validation end's figures: those keep their tensors; a figure
    that changed gets a new one with its own value."""
    from types import SimpleNamespace

    callback = EmissionsCallback(**tracker_kwargs)
    trainer_ = SimpleNamespace(callback_metrics={}, logged_metrics={})
    callback._set_callback_metrics(trainer_, {"a": 1.0, "b": 2.0})
    a, b = trainer_.callback_metrics["a"], trainer_.callback_metrics["b"]
    callback._set_callback_metrics(trainer_, {"a": 1.0, "b": 3.0, "c": 4.0}, logged=True)
    metrics = trainer_.callback_metrics
    assert metrics["a"] is a and metrics["b"] is not b
    assert {k: float(v) for k, v in metrics.items()} == {"a": 1.0, "b": 3.0, "c": 4.0}
    assert float(b) == 2.0  # a tensor given out is never changed in place
    assert trainer_.logged_metrics.keys() == {"a", "b", "c"}
    assert all(v.dtype == torch.float64 and v.dim() == 0 for v in metrics.values())
    callback._set_callback_metrics(trainer_, {"a": float("nan")})
    assert torch.isnan(metrics["a"])


def test_the_state_key_is_built_once(tracker_kwargs, monkeypatch):
    """Lightning reads every callback's state_key at each hook call (some ten per batch): a
    digest computed at each read made every training batch slower (0.2 ms a batch here)."""
    import codecarbon_callbacks.arguments as arguments_module

    calls = []
    real = arguments_module.configuration_key
    monkeypatch.setattr(
        arguments_module, "configuration_key", lambda arguments: calls.append(1) or real(arguments)
    )
    callback = EmissionsCallback(**tracker_kwargs)
    keys = {callback.state_key for _ in range(100)}
    assert len(calls) == 1 and len(keys) == 1
    assert keys == {f"EmissionsCallback{{'config': {real(callback.session._arguments)!r}}}"}
    copy = pickle.loads(pickle.dumps(callback))  # the same key in another process
    assert copy.state_key == callback.state_key and len(calls) == 1


def _pairs(items: list[Any]) -> Any:
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


@pytest.mark.parametrize(
    ("loader_kwargs", "fit_kwargs", "per_epoch", "fixed"),
    [
        # fixed batching: the samples follow from the number of batches (a short last one of 6)
        ({"batch_size": 32}, {}, [70, 70], True),
        ({"batch_size": 32, "drop_last": True}, {}, [64, 64], True),
        ({"batch_size": 32, "shuffle": True}, {"limit_train_batches": 2}, [64, 64], True),
        # a collate function of the user's: every batch's size is read
        ({"batch_size": 32, "collate_fn": _pairs}, {}, [70, 70], False),
    ],
    ids=["short last batch", "drop_last", "limited", "own collate"],
)
def test_samples_per_train_window_whatever_the_loader(
    tracker_kwargs, tmp_path, loader_kwargs, fit_kwargs, per_epoch, fixed
):
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(70, 8, generator=generator), torch.randn(70, 1))
    callback = EmissionsCallback(**tracker_kwargs)
    t = trainer(tmp_path, callback, max_epochs=2, num_sanity_val_steps=0, **fit_kwargs)
    t.fit(TinyRegressor(), DataLoader(data, **loader_kwargs), DataLoader(data, batch_size=64))
    assert callback._samples.fast is fixed
    assert callback._samples.loader is None  # the fit's data is not kept alive after it
    pickle.dumps(callback)  # nor pickled with the callback (a loader with a local collate)
    train = read_windows(tmp_path).query("phase == 'train'")
    assert list(train["samples"]) == per_epoch
    assert [r["epoch_samples"] for r in logged_epochs(t)] == per_epoch


@pytest.mark.parametrize(
    ("saver_kwargs", "pattern", "samples"),
    [
        # after epoch 2's second batch: one batch left (the loader is not resumable, so
        # Lightning draws it from the epoch's start: 32 samples, read as they come)
        ({"every_n_train_steps": 4}, "*step=8*", [32, 80]),
        # at epoch 1's last batch: Lightning runs epoch 2 whole, without on_train_epoch_start
        ({"every_n_train_steps": 3}, "*step=6*", [80, 80]),
        # at epoch 1's validation end: nothing left of epoch 1 (no empty window for it)
        ({"every_n_epochs": 1, "save_on_train_epoch_end": False}, "*epoch=1*", [80, 80]),
    ],
    ids=["mid-epoch", "last batch", "validation end"],
)
def test_a_fit_resumed_inside_an_epoch_has_its_train_windows(
    tracker_kwargs, tmp_path, saver_kwargs, pattern, samples
):
    """Lightning calls no on_train_epoch_start for an epoch resumed from a checkpoint saved
    inside it: the epoch's train window opens at the fit's start, with the samples it has."""

    class Stop(pl.Callback):
        def on_train_batch_end(self, trainer_: Any, *args: Any) -> None:
            if trainer_.global_step == 10:
                raise RuntimeError("stop at step 10")

    train, val = loaders(n=80)  # 3 batches of 32, 32, 16 an epoch
    checkpoints = tmp_path / "ckpt"
    saver = ModelCheckpoint(dirpath=checkpoints, save_top_k=-1, **saver_kwargs)
    first = trainer(tmp_path, EmissionsCallback(**tracker_kwargs), max_epochs=4, logger=False)
    first.callbacks.extend([saver, Stop()])
    with pytest.raises(RuntimeError, match="step 10"):
        first.fit(TinyRegressor(), train, val)
    checkpoint = next(checkpoints.glob(pattern))
    t = trainer(tmp_path, EmissionsCallback(**tracker_kwargs), max_epochs=4, logger=False)
    t.fit(TinyRegressor(), train, val, ckpt_path=checkpoint)
    windows = read_windows(tmp_path)
    resumed = windows[windows["timestamp"] > read_runs(tmp_path).iloc[0]["timestamp"]]
    train_windows = resumed[resumed["phase"] == "train"]
    assert list(train_windows["epoch"]) == [2, 3]
    assert list(train_windows["samples"]) == samples
