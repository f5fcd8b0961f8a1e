"""CodeCarbon 3.3's public behaviour, item by item, written from its documented API: what a
CodeCarbon user's code relies on keeps working with only the import changed. The deliberate
differences are in docs/migrating.md ("What differs") and test_codecarbon_signatures.py."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.records import CODECARBON_COLUMNS, TASK_CSV_COLUMNS
from core.constant_power import components

from codecarbon_callbacks import (
    BaseOutput,
    EmissionsTracker,
    OfflineEmissionsTracker,
    OutputMethod,
)
from codecarbon_callbacks.output import (
    BoAmpsOutput,
    CodeCarbonAPIOutput,
    EmissionsData,
    FileOutput,
    GoogleCloudLoggerOutput,
    LoggerOutput,
    TaskEmissionsData,
)

EXPERIMENT = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"


def tracker(tmp_path: Path, **kwargs) -> OfflineEmissionsTracker:
    params = dict(
        country_iso_code="FRA",
        output_dir=str(tmp_path),
        components=components(),
        measure_power_secs=60,
        output_methods=[],
    )
    params.update(kwargs)
    return OfflineEmissionsTracker(**params)


def record(run_id: str = "run-1", **fields) -> EmissionsData:
    return EmissionsData(run_id=run_id, project_name="p", emissions=0.5, **fields)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- FileOutput ---------------------------------------------------------------------------------


def test_file_output_takes_codecarbons_positional_order_and_keywords(tmp_path: Path) -> None:
    positional = FileOutput("runs.csv", tmp_path, "update")
    positional.out(record(), record())
    assert (tmp_path / "runs.csv").is_file()  # not a folder named after the CSV
    assert positional.on_csv_write == "update" and positional.output_file_name == "runs.csv"
    assert positional.save_file_path == str(tmp_path / "runs.csv")
    by_name = FileOutput(output_file_name="k.csv", output_dir=str(tmp_path), on_csv_write="append")
    by_name.out(record(), record())
    assert len(rows(tmp_path / "k.csv")) == 1
    assert by_name.output_dir == str(tmp_path)
    with pytest.raises(ValueError, match="on_csv_write"):
        FileOutput("x.csv", tmp_path, "replace")


def test_has_valid_headers(tmp_path: Path) -> None:
    out = FileOutput("emissions.csv", tmp_path)
    data = record()
    assert out.has_valid_headers(data)  # no file yet
    out.out(data, data)
    assert out.has_valid_headers(data)
    assert out.has_valid_headers(data, list(reversed(CODECARBON_COLUMNS)))  # any order
    assert not out.has_valid_headers(data, ["timestamp", "old_cpu_model"])
    (tmp_path / "emissions.csv").write_text("a,b\n1,2\n")
    assert not out.has_valid_headers(data)


def test_a_codecarbon_file_in_another_column_order_is_appended_to(tmp_path: Path) -> None:
    header = list(reversed(CODECARBON_COLUMNS))
    (tmp_path / "emissions.csv").write_text(",".join(header) + "\n")
    out = FileOutput("emissions.csv", tmp_path)
    out.out(record(), record())
    out.exit()
    assert list(rows(tmp_path / "emissions.csv")[0]) == header
    assert rows(tmp_path / "emissions.csv")[0]["run_id"] == "run-1"
    assert not list(tmp_path.glob("*.bak"))


def test_update_replaces_the_runs_row_or_appends_when_it_is_already_duplicated(
    tmp_path: Path,
) -> None:
    out = FileOutput("emissions.csv", tmp_path, on_csv_write="update")
    out.out(record("a"), record("a"))
    out.out(record("b"), record("b"))
    out.out(record("a", duration=2.0), record("a"))
    assert [(r["run_id"], r["duration"]) for r in rows(tmp_path / "emissions.csv")] == [
        ("b", "0.0"),
        ("a", "2.0"),  # replaced, and moved to the end (CodeCarbon's rule)
    ]
    appending = FileOutput("emissions.csv", tmp_path, on_csv_write="append")
    appending.out(record("a"), record("a"))
    out.out(record("a", duration=3.0), record("a"))  # two rows of run a already: appended
    assert [r["run_id"] for r in rows(tmp_path / "emissions.csv")] == ["b", "a", "a", "a"]


def test_task_file_with_experiment_name(tmp_path: Path) -> None:
    t = tracker(tmp_path, experiment_name="ablation", output_methods=[OutputMethod.CSV])
    t.start()
    t.start_task("load")
    t.stop_task()
    t.start_task("train")
    t.stop_task()
    t.stop()
    task_rows = rows(tmp_path / f"emissions_ablation_{t.run_id}.csv")
    assert [r["task_name"] for r in task_rows] == ["load", "train"]
    assert tuple(task_rows[0]) == TASK_CSV_COLUMNS
    assert {r["run_id"] for r in task_rows} == {t.run_id}
    assert len(rows(tmp_path / "emissions_windows.csv")) == 2  # ours, as before
    from codecarbon_callbacks.reports import load_reports

    reports = load_reports([tmp_path])  # the task file is not read as a run file
    assert reports.run_files == [str(tmp_path / "emissions.csv")]


def test_task_emissions_data_is_codecarbons_record() -> None:
    fields = {name: 0 for name in TASK_CSV_COLUMNS}
    data = TaskEmissionsData(**{**fields, "task_name": "t", "run_id": "r"})
    assert list(data.values) == list(TASK_CSV_COLUMNS)
    assert TASK_CSV_COLUMNS[0] == "task_name" and "experiment_id" not in TASK_CSV_COLUMNS
    cc = pytest.importorskip("codecarbon.output", reason="CodeCarbon is not importable")
    assert list(cc.TaskEmissionsData.__dataclass_fields__) == list(TASK_CSV_COLUMNS)


# -- the tracker ----------------------------------------------------------------------------------


def test_get_detected_hardware(tmp_path: Path) -> None:
    t = tracker(tmp_path)
    hardware = t.get_detected_hardware()  # before start(), as CodeCarbon allows
    assert set(hardware) == {
        "ram_total_size",
        "cpu_count",
        "cpu_physical_count",
        "cpu_model",
        "gpu_count",
        "gpu_model",
        "gpu_ids",
    }
    assert hardware["gpu_count"] == 1 and hardware["cpu_count"] >= 1
    assert hardware["ram_total_size"] > 0 and hardware["gpu_ids"] is None
    # physical CPUs are packages (sockets), as CodeCarbon counts them, not cores
    from codecarbon_callbacks_core.hardware.cpu_model import read_cpu_info

    assert hardware["cpu_physical_count"] == read_cpu_info()[1]
    assert hardware["cpu_physical_count"] <= hardware["cpu_count"]


def test_stop_task_without_a_running_task_returns_none_and_warns(tmp_path: Path, caplog) -> None:
    """CodeCarbon logs "No active task to stop" and returns None; code written for it must not
    crash here."""
    t = tracker(tmp_path)
    t.start()
    with caplog.at_level(logging.WARNING):
        assert t.stop_task() is None
    assert "no active task" in caplog.text
    t.start_task("a")
    assert t.stop_task() is not None
    t.stop()


def test_parameters_are_attributes_but_secrets_are_not(tmp_path: Path) -> None:
    t = tracker(tmp_path, force_carbon_intensity_g_co2e_kwh=123.4, pue=1.3, api_key="s3cret")
    assert t.force_carbon_intensity_g_co2e_kwh == 123.4
    assert t.pue == 1.3 and t.country_iso_code == "FRA" and t.measure_power_secs == 60
    with pytest.raises(AttributeError):
        t.api_key  # noqa: B018
    with pytest.raises(AttributeError, match="no_such"):
        t.no_such  # noqa: B018


def test_output_file_may_be_a_path(tmp_path: Path) -> None:
    t = tracker(tmp_path, output_file=Path("mine.csv"), output_methods=[OutputMethod.CSV])
    t.start()
    t.stop()
    assert len(rows(tmp_path / "mine.csv")) == 1
    absolute = tmp_path / "elsewhere" / "abs.csv"  # CodeCarbon joins it to output_dir: it wins
    t = tracker(tmp_path / "out", output_file=absolute, output_methods=[OutputMethod.CSV])
    t.start()
    t.stop()
    assert len(rows(absolute)) == 1


class LiveOnly(BaseOutput):
    def __init__(self) -> None:
        self.totals: list[EmissionsData] = []

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self.totals.append(total)


@pytest.mark.parametrize(("interval", "calls"), [(1, 1), (2, 1), (3, 0)])
def test_start_and_stop_count_towards_api_call_interval(
    tmp_path: Path, interval: int, calls: int
) -> None:
    handler = LiveOnly()
    t = tracker(tmp_path, output_handlers=[handler], api_call_interval=interval)
    t.start()
    emissions = t.stop()
    assert len(handler.totals) == calls
    if calls:
        assert handler.totals[0].emissions == emissions


def test_flush_counts_too_and_minus_one_turns_live_updates_off(tmp_path: Path) -> None:
    handler = LiveOnly()
    t = tracker(tmp_path, output_handlers=[handler], api_call_interval=2)
    t.start()  # 1
    flushed = t.flush()  # 2: a live update
    t.stop()  # 3
    assert [total.emissions for total in handler.totals] == [flushed]
    never = LiveOnly()
    t = tracker(tmp_path, output_handlers=[never], api_call_interval=-1)  # CodeCarbon's "off"
    assert t.api_call_interval == -1
    t.start()
    t.flush()
    t.stop()
    assert never.totals == []


def test_flush_rewrites_the_task_file(tmp_path: Path) -> None:
    t = tracker(tmp_path, experiment_name="e", output_methods=[OutputMethod.CSV])
    t.start()
    t.start_task("first")
    t.stop_task()
    t.flush()
    assert [r["task_name"] for r in rows(tmp_path / f"emissions_e_{t.run_id}.csv")] == ["first"]
    t.stop()


def test_a_run_without_location_uses_the_world_average(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.warns(CodeCarbonCallbacksWarning, match="world average"):
        t = OfflineEmissionsTracker(components=components(), output_methods=[])
    t.start()
    t.stop()
    data = t.final_emissions_data
    assert data is not None and data.carbon_intensity_source == "world_average"
    assert data.country_iso_code == "" and data.emissions > 0


def test_the_world_average_warning_shows_once_by_default(tmp_path: Path) -> None:
    code = (
        "from codecarbon_callbacks import OfflineEmissionsTracker\n"
        "for _ in range(2):\n"
        "    OfflineEmissionsTracker(output_methods=[], components=[])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stderr.count("CodeCarbonCallbacksWarning") == 1, done.stderr
    assert "world average" in done.stderr


def test_online_tracker_keeps_codecarbons_attributes(tmp_path: Path) -> None:
    t = EmissionsTracker(
        country_iso_code="FRA", output_dir=str(tmp_path), output_methods=[], components=[]
    )
    assert t.country_iso_code == "FRA" and t.project_name == "codecarbon"


# -- outputs ------------------------------------------------------------------------------------


class DuckLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def log(self, level: int, msg: str) -> None:
        self.lines.append((level, msg))


def test_logger_output_takes_any_object_with_log() -> None:
    duck = DuckLogger()
    out = LoggerOutput(duck, logging.WARNING)
    out.out(record(), record())
    out.live_out(record(), record())
    assert [level for level, _ in duck.lines] == [logging.WARNING, logging.WARNING]
    assert json.loads(duck.lines[0][1])["run_id"] == "run-1"
    assert LoggerOutput.from_value(duck).logger is duck
    with pytest.raises(ValueError, match="log"):
        LoggerOutput(object())


class FakeCloudLogger:
    def __init__(self) -> None:
        self.entries: list[tuple[dict, int]] = []

    def log_struct(self, payload: dict, severity: int) -> None:
        self.entries.append((payload, severity))


def test_google_cloud_logger_output_logs_structs() -> None:
    cloud = FakeCloudLogger()
    out = GoogleCloudLoggerOutput(cloud, logging.ERROR)
    out.out(record(), record())
    out.live_out(record(), record())
    assert [severity for _, severity in cloud.entries] == [logging.ERROR, logging.ERROR]
    assert cloud.entries[0][0]["emissions"] == 0.5


def test_google_cloud_logger_output_names_the_missing_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.logging", None)
    monkeypatch.setitem(sys.modules, "google.cloud", None)
    with pytest.raises(ImportError, match="google-cloud-logging"):
        GoogleCloudLoggerOutput()


def test_boamps_from_file_raises_json_decode_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(json.JSONDecodeError, match="bad.json"):
        BoAmpsOutput.from_file(bad)
    with pytest.raises(json.JSONDecodeError):
        BoAmpsOutput.from_file(context_file_path=str(bad), output_dir=str(tmp_path))


def test_boamps_without_task_gives_a_user_warning(tmp_path: Path) -> None:
    out = BoAmpsOutput(output_dir=str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out.out(record(timestamp="2025-01-15T10:30:00"), record())
    assert any(
        issubclass(w.category, UserWarning) and "task" in str(w.message).lower() for w in caught
    )
    report = json.loads((tmp_path / "boamps_report_run-1.json").read_text())
    assert report["header"]["reportDatetime"] == "2025-01-15 10:30:00"  # the record's time


def test_codecarbon_api_output_takes_codecarbons_keywords(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # its spool
    out = CodeCarbonAPIOutput(
        endpoint_url="http://127.0.0.1:9", experiment_id=EXPERIMENT, api_key="k", conf={}
    )
    assert out.endpoint_url == out.api_endpoint == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="endpoint_url"):
        CodeCarbonAPIOutput(endpoint_url="ftp://x", experiment_id=EXPERIMENT, api_key="k", conf={})


def test_emissions_data_to_json_and_delta() -> None:
    second, first = record(duration=3.0), record(duration=1.0)
    assert json.loads(second.toJSON())["duration"] == 3.0
    delta = second.compute_delta_emission(previous_emission=first)
    assert delta.duration == 2.0 and second.duration == 3.0
