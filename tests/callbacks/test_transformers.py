"""Real tiny Hugging Face Trainer runs on CPU with the transformers EmissionsCallback."""

from __future__ import annotations

import json
import logging
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

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from codecarbon_callbacks_core.output.boamps import validate_report
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from codecarbon_callbacks.transformers import EmissionsCallback

N_TRAIN, N_EVAL, SEQ, BATCH = 64, 32, 16, 16
STEPS_PER_EPOCH = N_TRAIN // BATCH


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 100, (n, SEQ), generator=generator)
        self.labels = torch.randint(0, 2, (n,), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_bert() -> Any:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def arguments(tmp_path: Path, **kwargs: Any) -> Any:
    options: dict[str, Any] = dict(
        output_dir=str(tmp_path / "trainer"),
        num_train_epochs=3,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    options.update(kwargs)
    return TrainingArguments(**options)


class Recorder(TrainerCallback):
    """Stands for a report_to integration: it sees every on_log."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        self.logs.append(dict(logs or {}))


class FailAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise RuntimeError("boom")


def energy_entries(log_history: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [entry for entry in log_history if key in entry]


def test_attached_logs_reach_history_and_integrations(tracker_kwargs, tmp_path, caplog):
    from codecarbon_callbacks import BoAmpsOutput

    caplog.set_level(logging.INFO, logger="codecarbon_callbacks.transformers")

    callback = EmissionsCallback(
        task_family="text classification",
        output_handlers=[BoAmpsOutput(tmp_path)],
        **tracker_kwargs,
    )
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path),
        train_dataset=TokenDataset(N_TRAIN),
        eval_dataset=TokenDataset(N_EVAL, seed=1),
    )
    callback.attach(trainer)
    integration = Recorder()
    trainer.callback_handler.callbacks.insert(
        0, integration
    )  # before ours, as report_to integrations are
    assert trainer.callback_handler.callbacks[1] is callback
    trainer.train()

    runs, windows = read_runs(tmp_path), read_windows(tmp_path)
    run = runs.iloc[0]
    assert run["status"] == "completed"
    check_tiling(windows, run)
    train = windows[windows["phase"] == "train"]
    validation = windows[windows["phase"] == "validation"]
    assert list(train["epoch"]) == [0, 1, 2] and list(validation["epoch"]) == [0, 1, 2]
    for epoch in range(3):  # each epoch's evaluation follows its training part
        assert train.index[epoch] < validation.index[epoch]

    epochs = energy_entries(trainer.state.log_history, "epoch_energy_kwh")
    check_epoch_metrics(epochs, 3)
    assert [e["step"] for e in epochs] == [STEPS_PER_EPOCH * (i + 1) for i in range(3)]
    assert [e["epoch_energy_kwh"] for e in epochs] == pytest.approx(
        list(train["energy_consumed"]), rel=1e-9
    )
    assert "forecast_energy_kwh" in epochs[1]
    evals = energy_entries(trainer.state.log_history, "eval_energy_kwh")
    assert [e["eval_energy_kwh"] for e in evals] == pytest.approx(
        list(validation["energy_consumed"]), rel=1e-9
    )
    seen = [log for log in integration.logs if "epoch_energy_kwh" in log]
    assert [log["epoch_energy_kwh"] for log in seen] == [e["epoch_energy_kwh"] for e in epochs]
    # our 0-based epoch next to the Trainer's progress float, as in the CSV
    assert [(e["epoch_index"], e["epoch"]) for e in epochs] == [(0, 1.0), (1, 2.0), (2, 3.0)]
    assert [e["epoch_index"] for e in evals] == list(validation["epoch"])
    # work per epoch: samples from steps x batch size, no token count (it is off)
    assert list(train["samples"]) == [N_TRAIN] * 3
    assert list(train["optimizer_steps"]) == [STEPS_PER_EPOCH] * 3
    assert train["tokens"].isna().all() and validation["samples"].isna().all()
    assert [e["epoch_energy_per_sample_kwh"] for e in epochs] == pytest.approx(
        list(train["energy_consumed"] / N_TRAIN), rel=1e-9
    )
    assert not any("epoch_energy_per_token_kwh" in e for e in epochs)
    assert any(
        "include_num_input_tokens_seen=True" in r.getMessage() for r in caplog.records
    )  # how to turn the token count on
    assert (
        sum("eval_loss" in e for e in trainer.state.log_history) == 3
    )  # the loop's own logs are intact
    assert sum("loss" in e for e in trainer.state.log_history) == 3

    report = boamps_report(tmp_path, run["run_id"])
    assert validate_report(report) == []
    task = report["task"]
    algorithm = task["algorithms"][0]
    assert task["taskStage"] == "training" and task["taskFamily"] == "text classification"
    assert (
        algorithm["classPath"]
        == "transformers.models.bert.modeling_bert.BertForSequenceClassification"
    )
    assert (
        algorithm["layersNumber"] == 2
        and algorithm["epochsNumber"] == 3
        and algorithm["optimizer"] == "AdamW"
    )
    assert algorithm["quantization"] == "fp32"
    assert algorithm["parametersNumber"] == pytest.approx(trainer.model.num_parameters() / 1e9)
    assert algorithm["frameworkVersion"] == transformers.__version__
    assert task["dataset"][0] == {
        "dataUsage": "input",
        "dataType": "token",
        "dataQuantity": N_TRAIN,
        "shape": f"({N_TRAIN}, {SEQ})",
    }

    # evaluate() and predict() after training are runs of their own stage, timed from the call
    trainer.evaluate()
    trainer.predict(TokenDataset(8, seed=2))
    runs, windows = read_runs(tmp_path), read_windows(tmp_path)
    assert len(runs) == 3 and list(runs["status"]) == ["completed"] * 3
    assert list(windows[windows["run_id"] == runs.iloc[1]["run_id"]]["phase"]) == ["validation"]
    assert list(windows[windows["run_id"] == runs.iloc[2]["run_id"]]["phase"]) == ["predict"]
    eval_task = json.loads(runs.iloc[1]["metadata"])["boamps_task"]
    assert eval_task["taskStage"] == "inference" and eval_task["nbRequest"] == N_EVAL
    predict_task = json.loads(runs.iloc[2]["metadata"])["boamps_task"]
    assert predict_task["nbRequest"] == 8 and predict_task["dataset"][0]["dataQuantity"] == 8
    last_eval = energy_entries(trainer.state.log_history, "eval_energy_kwh")[-1]
    assert last_eval["eval_energy_kwh"] == pytest.approx(runs.iloc[1]["energy_consumed"], rel=1e-9)


def test_without_attach_figures_reach_log_history_and_integrations(
    tracker_kwargs, tmp_path, caplog
):
    pretrained_dir = tmp_path / "pretrained"
    tiny_bert().save_pretrained(pretrained_dir)
    model = BertForSequenceClassification.from_pretrained(pretrained_dir)
    callback, integration = EmissionsCallback(**tracker_kwargs), Recorder()
    trainer = Trainer(
        model=model,
        args=arguments(tmp_path, num_train_epochs=2, include_num_input_tokens_seen=True),
        train_dataset=TokenDataset(N_TRAIN),
        eval_dataset=TokenDataset(N_EVAL, seed=1),
        callbacks=[integration, callback],  # an integration before ours, as report_to's are
    )
    trainer.train()
    epochs = energy_entries(trainer.state.log_history, "epoch_energy_kwh")
    check_epoch_metrics(epochs, 2)
    evals = energy_entries(trainer.state.log_history, "eval_energy_kwh")
    assert len(evals) == 2
    # every record we add reached the integration's on_log, with our epoch index
    seen = [log for log in integration.logs if "energy_kwh" in " ".join(log)]
    assert seen == [e for e in trainer.state.log_history if "energy_kwh" in " ".join(e)]
    assert [e["epoch_index"] for e in epochs] == [0, 1] and [e["epoch"] for e in epochs] == [1, 2]
    run = read_runs(tmp_path).iloc[0]
    windows = read_windows(tmp_path)
    check_tiling(windows, run)
    # tokens: the Trainer's count of input tokens, SEQ per sample
    train = windows.query("phase == 'train'")
    assert list(train["tokens"]) == [N_TRAIN * SEQ] * 2
    assert list(train["energy_per_token_kwh"]) == pytest.approx(
        list(train["energy_consumed"] / (N_TRAIN * SEQ)), rel=1e-9
    )
    assert [e["epoch_tokens"] for e in epochs] == [N_TRAIN * SEQ] * 2
    # evaluation windows derived from the Trainer's events (no evaluate-begin event exists)
    assert list(windows.query("phase == 'validation'")["epoch"]) == [0, 1]
    assert list(windows.query("phase == 'train'")["epoch"]) == [0, 1]
    task = json.loads(run["metadata"])["boamps_task"]
    assert task["taskStage"] == "finetuning"  # loaded with from_pretrained
    assert task["algorithms"][0]["foundationModelName"] == str(pretrained_dir)

    # a standalone evaluate() is derived from its first prediction step
    trainer.evaluate()
    runs = read_runs(tmp_path)
    assert len(runs) == 2 and runs.iloc[1]["status"] == "completed"
    assert list(read_windows(tmp_path).query(f"run_id == '{runs.iloc[1]['run_id']}'")["phase"]) == [
        "validation"
    ]


def test_warns_when_the_trainers_codecarbon_integration_is_active(tracker_kwargs, tmp_path, caplog):
    from codecarbon_callbacks import transformers as adapter

    adapter._WARNED.clear()
    callback = EmissionsCallback(**tracker_kwargs)
    args = arguments(tmp_path, report_to=["codecarbon"])
    with caplog.at_level(logging.WARNING, logger="codecarbon_callbacks.transformers"):
        callback.on_init_end(args, TrainerState(), TrainerControl())
    assert any("report_to includes 'codecarbon'" in r.getMessage() for r in caplog.records)
    caplog.clear()
    adapter._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="codecarbon_callbacks.transformers"):
        callback.on_init_end(arguments(tmp_path), TrainerState(), TrainerControl())
    assert not any("codecarbon" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("attach", [True, False])
def test_resume_from_checkpoint_restores_the_run(tracker_kwargs, tmp_path, attach):
    args = arguments(
        tmp_path,
        num_train_epochs=2,
        save_strategy="epoch",
        eval_strategy="no",
        restore_callback_states_from_checkpoint=True,
    )
    first = EmissionsCallback(**tracker_kwargs)
    trainer = Trainer(
        model=tiny_bert(),
        args=args,
        train_dataset=TokenDataset(N_TRAIN),
        callbacks=None if attach else [first],
    )
    if attach:
        first.attach(trainer)
    trainer.train()
    first_run = read_runs(tmp_path).iloc[-1]
    checkpoint = Path(args.output_dir) / f"checkpoint-{2 * STEPS_PER_EPOCH}"
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"][
        "EmissionsCallback"
    ]
    assert "components" not in saved["args"] and saved["args"]["country_iso_code"] == "FRA"
    assert saved["attributes"]["resume_state"]["tracker"]["run_id"] == first_run["run_id"]

    second = EmissionsCallback(**tracker_kwargs)
    args3 = arguments(
        tmp_path,
        num_train_epochs=3,
        save_strategy="no",
        eval_strategy="no",
        restore_callback_states_from_checkpoint=True,
    )
    trainer = Trainer(
        model=tiny_bert(),
        args=args3,
        train_dataset=TokenDataset(N_TRAIN),
        callbacks=None if attach else [second],
    )
    if attach:
        second.attach(trainer)
    trainer.train(resume_from_checkpoint=str(checkpoint))
    # the Trainer rebuilt the callback from its saved arguments; it took over our session
    rebuilt = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EmissionsCallback)]
    assert len(rebuilt) == 1 and rebuilt[0].session is second.session
    resumed = read_runs(tmp_path).iloc[-1]
    assert resumed["run_id"] == first_run["run_id"]
    assert resumed["energy_consumed"] > first_run["energy_consumed"]
    assert resumed["duration"] > first_run["duration"]
    summary = second.summary()
    assert summary["run_id"] == first_run["run_id"]
    assert [e["epoch"] for e in summary["epochs"]] == [0, 1, 2]
    epochs = energy_entries(trainer.state.log_history, "epoch_energy_kwh")
    assert epochs[-1]["total_energy_kwh"] > first_run["energy_consumed"]


def test_exception_with_attach_is_written_as_failed(tracker_kwargs, tmp_path):
    callback = EmissionsCallback(**tracker_kwargs)
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path, eval_strategy="no"),
        train_dataset=TokenDataset(N_TRAIN),
        callbacks=[FailAtStep(STEPS_PER_EPOCH + 2)],
    )
    callback.attach(trainer)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    assert not callback.tracker.is_running
    run = read_runs(tmp_path).iloc[-1]
    assert run["status"] == "failed"
    last = read_windows(tmp_path).iloc[-1]
    assert last["phase"] == "train" and last["epoch"] == 1 and last["status"] == "failed"


def test_exception_without_attach_is_closed_as_incomplete_by_the_next_run(tracker_kwargs, tmp_path):
    callback = EmissionsCallback(**tracker_kwargs)
    failing = FailAtStep(2)
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path, eval_strategy="no", num_train_epochs=1),
        train_dataset=TokenDataset(N_TRAIN),
        callbacks=[callback, failing],
    )
    with pytest.raises(RuntimeError):
        trainer.train()
    assert callback.session.running and not (tmp_path / "emissions.csv").exists()  # no hook saw it
    failing.step = -1
    trainer.train()
    runs = read_runs(tmp_path)
    assert list(runs["status"]) == ["incomplete", "completed"]


def test_budget_stop_sets_should_training_stop(tracker_kwargs, tmp_path):
    callback = EmissionsCallback(max_energy_kwh=1e-12, **tracker_kwargs)
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path, num_train_epochs=4, eval_strategy="no"),
        train_dataset=TokenDataset(N_TRAIN),
        callbacks=[callback],
    )
    trainer.train()
    assert trainer.state.global_step == STEPS_PER_EPOCH  # stopped after the first epoch
    assert read_runs(tmp_path).iloc[-1]["status"] == "budget_stop"
    assert "max_energy_kwh" in callback.summary()["stop_reason"]


def test_train_ends_with_one_line_unless_verbose_is_false(tracker_kwargs, tmp_path, capsys):
    for verbose in (True, False):
        Trainer(
            model=tiny_bert(),
            args=arguments(tmp_path, num_train_epochs=1, eval_strategy="no"),
            train_dataset=TokenDataset(N_TRAIN),
            callbacks=[EmissionsCallback(verbose=verbose, **tracker_kwargs)],
        ).train()
        out = capsys.readouterr().out
        if verbose:
            check_closing_line(out, tmp_path)
        else:
            assert "codecarbon-callbacks:" not in out
    assert len(read_runs(tmp_path)) == 2


def test_step_windows_and_step_forecast_for_max_steps(tracker_kwargs, tmp_path):
    callback = EmissionsCallback(window_every_n_steps=2, **tracker_kwargs)
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(
            tmp_path,
            max_steps=8,
            num_train_epochs=1,
            eval_strategy="steps",
            eval_steps=4,
            logging_strategy="no",
        ),
        train_dataset=TokenDataset(N_TRAIN * 2),
        eval_dataset=TokenDataset(N_EVAL, seed=1),
        callbacks=[callback],
    )
    trainer.train()
    windows = read_windows(tmp_path)
    run = read_runs(tmp_path).iloc[-1]
    check_tiling(windows, run)
    steps = windows[windows["kind"] == "step"]
    assert list(steps["name"])[:4] == [
        "steps from 0",
        "steps from 2",
        "steps from 4",
        "steps from 6",
    ]
    # step-based evaluation inside the epoch: train, validation, train (continued), validation
    tiles = windows[windows["kind"].isin(["epoch", "phase"]) & (windows["phase"] != "other")]
    assert list(tiles["phase"]) == ["train", "validation", "train", "validation"]
    assert list(tiles["name"])[2] == "epoch 0 (continued)"
    logged = energy_entries(trainer.state.log_history, "window_energy_kwh")
    assert len(logged) == 4
    assert any("forecast_energy_kwh" in e for e in logged)


def test_no_secret_reaches_a_checkpoint_a_file_or_a_log_and_resume_works(tmp_path, caplog, capsys):
    """Every secret given as an argument, checkpoints saved, every sending output failing: no
    secret in trainer_state.json (which push_to_hub uploads), any other file or any log line;
    the resumed callback takes its secrets from its own arguments."""
    output = tmp_path / "emissions"
    kwargs = secret_tracker_kwargs(output)

    def train(epochs: int, resume: str | None = None) -> tuple[Any, Any]:
        callback = EmissionsCallback(**kwargs)
        args = arguments(
            tmp_path,
            num_train_epochs=epochs,
            save_strategy="epoch",
            eval_strategy="no",
            restore_callback_states_from_checkpoint=True,
        )
        trainer = Trainer(
            model=tiny_bert(), args=args, train_dataset=TokenDataset(N_TRAIN), callbacks=[callback]
        )
        trainer.train(resume_from_checkpoint=resume)
        return callback, trainer

    with caplog.at_level(logging.DEBUG):
        train(1)
        checkpoint = tmp_path / "trainer" / f"checkpoint-{STEPS_PER_EPOCH}"
        second, trainer = train(2, resume=str(checkpoint))
    runs = read_runs(output)
    assert len(runs) == 2 and runs.iloc[1]["run_id"] == runs.iloc[0]["run_id"]  # resumed
    assert runs.iloc[1]["energy_consumed"] > runs.iloc[0]["energy_consumed"]
    rebuilt = [c for c in trainer.callback_handler.callbacks if isinstance(c, EmissionsCallback)]
    assert rebuilt[0] is not second and rebuilt[0].session is second.session
    check_secrets_given(second.tracker, kwargs)

    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"][
        "EmissionsCallback"
    ]
    assert saved["args"]["experiment_id"] == kwargs["experiment_id"]  # arguments are saved...
    for name in (
        "api_key",
        "electricitymaps_api_token",
        "emissions_endpoint",
        "api_endpoint",
        "prometheus_url",
    ):
        assert name not in saved["args"]  # ...but not these
    searched = check_no_secret([tmp_path], caplog.text, capsys.readouterr().out)
    names = {path.name for path in searched}
    assert "trainer_state.json" in names and "emissions.csv" in names
    assert any(".codecarbon_spool" in str(path) for path in searched)  # the outputs failed
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # and said so


def test_two_callbacks_in_one_trainer_each_write_and_resume_their_own_run(tracker_kwargs, tmp_path):
    """Two callbacks writing to two folders: each folder gets its own run, before and after a
    resume (the Trainer rebuilds both; each rebuilt one takes over its own callback's session)."""
    folders = [tmp_path / "a", tmp_path / "b"]

    def train(epochs: int, attach: bool, resume: str | None = None) -> list[Any]:
        callbacks = [
            EmissionsCallback(**{**tracker_kwargs, "output_dir": str(folder)}) for folder in folders
        ]
        args = arguments(
            tmp_path,
            num_train_epochs=epochs,
            save_strategy="epoch",
            eval_strategy="no",
            restore_callback_states_from_checkpoint=True,
        )
        trainer = Trainer(
            model=tiny_bert(),
            args=args,
            train_dataset=TokenDataset(N_TRAIN),
            callbacks=None if attach else callbacks,
        )
        if attach:
            for callback in reversed(callbacks):
                callback.attach(trainer)
        trainer.train(resume_from_checkpoint=resume)
        return callbacks

    first = train(1, attach=False)
    run_ids = [read_runs(folder).iloc[-1]["run_id"] for folder in folders]
    assert run_ids[0] != run_ids[1]
    assert [c.summary()["run_id"] for c in first] == run_ids
    second = train(
        2, attach=True, resume=str(tmp_path / "trainer" / f"checkpoint-{STEPS_PER_EPOCH}")
    )
    for folder, run_id, callback in zip(folders, run_ids, second):
        runs = read_runs(folder)
        assert list(runs["run_id"]) == [run_id, run_id]  # its own run, resumed
        assert list(runs["status"]) == ["completed", "completed"]
        assert runs.iloc[1]["energy_consumed"] > runs.iloc[0]["energy_consumed"]
        assert callback.summary()["run_id"] == run_id
        assert list(read_windows(folder).query("phase == 'train'")["epoch"]) == [0, 1]


@pytest.mark.parametrize(
    ("version", "supported"),
    [("4.39.3", False), ("6.0.0", False), ("4.40.0", True), ("5.24.0", True)],
)
def test_warns_once_outside_the_supported_transformers_versions(
    tracker_kwargs, monkeypatch, version, supported
):
    import warnings

    from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning

    from codecarbon_callbacks import transformers as adapter

    # the transformers module the adapter reads its version from
    monkeypatch.setattr(adapter._transformers, "__version__", version)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        EmissionsCallback(**tracker_kwargs)
        EmissionsCallback(**tracker_kwargs)  # once per process, not once per callback
    ours = [w for w in caught if issubclass(w.category, CodeCarbonCallbacksWarning)]
    about_version = [w for w in ours if adapter.SUPPORTED_TRANSFORMERS in str(w.message)]
    if supported:
        assert about_version == []
    else:
        assert len(about_version) == 1
        assert f"transformers {version} is outside" in str(about_version[0].message)
