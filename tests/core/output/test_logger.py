from __future__ import annotations

import json
import logging

import pytest
from codecarbon_callbacks_core.output.logger import LoggerOutput
from output_records import make_total, make_window


def _records(caplog, name):
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == name]


def test_out_live_window_are_one_json_line_each(caplog):
    log = logging.getLogger("test.energy")
    out = LoggerOutput(log, logging.WARNING)
    total = make_total(energy_consumed=0.5)
    window = make_window(kind="epoch", epoch=3, energy_consumed=0.25)
    with caplog.at_level(logging.DEBUG, logger="test.energy"):
        out.out(total, total)
        out.live_out(total, total)
        out.window_out(window)
    records = _records(caplog, "test.energy")
    assert [r["record_type"] for r in records] == ["run", "live", "window"]
    assert records[0]["energy_consumed"] == 0.5
    assert records[0]["run_id"] == total.run_id
    assert records[2]["epoch"] == 3 and records[2]["kind"] == "epoch"
    assert records[2]["energy_consumed"] == 0.25
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "test.energy")
    assert all("\n" not in r.getMessage() for r in caplog.records)


def test_default_logger_is_package_logger_and_level_names(caplog):
    out = LoggerOutput(severity="debug")
    assert out.logger.name.startswith("codecarbon_callbacks")
    assert out.logging_severity == logging.DEBUG
    with caplog.at_level(logging.DEBUG, logger=out.logger.name):
        out.out(make_total(), make_total())
    assert len(_records(caplog, out.logger.name)) == 1


def test_from_value_accepts_logger_or_output():
    log = logging.getLogger("x.y")
    assert LoggerOutput.from_value(log).logger is log
    wrapped = LoggerOutput(log, logging.ERROR)
    assert LoggerOutput.from_value(wrapped) is wrapped
    assert LoggerOutput.from_value(None).logger.name.startswith("codecarbon_callbacks")
    with pytest.raises(ValueError, match="logging_logger"):
        LoggerOutput.from_value(42)
    with pytest.raises(ValueError, match="severity"):
        LoggerOutput(log, "LOUD")


def test_nan_does_not_break_the_line(caplog):
    out = LoggerOutput(logging.getLogger("t.nan"))
    with caplog.at_level(logging.INFO, logger="t.nan"):
        out.out(make_total(gpu_power=float("nan")), make_total())
    [record] = _records(caplog, "t.nan")
    assert record["gpu_power"] is None


def test_broken_logger_never_raises(caplog):
    class Boom(logging.Handler):
        def emit(self, record):
            raise RuntimeError("disk full")

        def handleError(self, record):  # logging would swallow it; make it propagate
            raise RuntimeError("handler failed")

    log = logging.getLogger("t.boom")
    log.addHandler(Boom())
    log.propagate = False
    out = LoggerOutput(log)
    out.out(make_total(), make_total())  # must not raise
    log.handlers.clear()


def test_records_reach_their_handler_whatever_log_level_and_root_level(tmp_path):
    """A tracker with log_level="error" and no logging_logger: its run record still reaches a
    handler on the default records logger, with the root logger at its default WARNING."""
    from codecarbon_callbacks_core import OfflineEmissionsTracker
    from codecarbon_callbacks_core.output.logger import DEFAULT_RECORD_LOGGER_NAME
    from core.constant_power import components

    records_logger = logging.getLogger(DEFAULT_RECORD_LOGGER_NAME)
    root = logging.getLogger()
    received = []

    class Keep(logging.Handler):
        def emit(self, record):
            received.append(json.loads(record.getMessage()))

    handler = Keep()
    saved = records_logger.level, root.level
    records_logger.setLevel(logging.NOTSET)  # as in a fresh process
    root.setLevel(logging.WARNING)  # Python's default; the records are INFO
    records_logger.addHandler(handler)
    try:
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA",
            output_dir=str(tmp_path),
            output_methods=["logger"],
            log_level="error",
            components=components(),
            measure_power_secs=60,
        )
        tracker.start()
        tracker.stop()
    finally:
        records_logger.removeHandler(handler)
        records_logger.setLevel(saved[0])
        root.setLevel(saved[1])
    runs = [r for r in received if r["record_type"] == "run"]
    assert [(r["run_id"], r["status"]) for r in runs] == [(tracker.run_id, "completed")]
    assert runs[0]["energy_consumed"] == tracker.final_emissions_data.energy_consumed
    # log_level stayed the tracker's: no package logger's level was set process-wide
    assert logging.getLogger("codecarbon_callbacks").level == logging.NOTSET
    assert logging.getLogger("codecarbon_callbacks_core").level == logging.NOTSET
