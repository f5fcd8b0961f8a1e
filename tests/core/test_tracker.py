"""The tracker: runs, windows, tasks, flush, restart, resume, failures, fork, exit."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path

import pytest
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.records import RUN_CSV_COLUMNS, WINDOW_CSV_COLUMNS
from core.constant_power import ConstantPowerComponent, components

from codecarbon_callbacks import (
    BaseOutput,
    EmissionsData,
    OfflineEmissionsTracker,
    read_emissions,
    track_emissions,
)

J_PER_KWH = 3.6e6
FORCED_G_PER_KWH = 100.0


class Recorder(BaseOutput):
    def __init__(self) -> None:
        self.outs: list[tuple[EmissionsData, EmissionsData]] = []
        self.lives: list[tuple[EmissionsData, EmissionsData]] = []
        self.windows: list = []
        self.tasks: list = []
        self.exited = 0

    def out(self, total, delta):
        self.outs.append((total, delta))

    def live_out(self, total, delta):
        self.lives.append((total, delta))

    def window_out(self, record):
        self.windows.append(record)

    def task_out(self, data, experiment_name):
        self.tasks.append((data, experiment_name))

    def exit(self):
        self.exited += 1


def make_tracker(tmp_path: Path, **kwargs) -> OfflineEmissionsTracker:
    params = dict(
        country_iso_code="FRA",
        output_dir=str(tmp_path),
        force_carbon_intensity_g_co2e_kwh=FORCED_G_PER_KWH,
        components=components(),
        measure_power_secs=60,
    )
    params.update(kwargs)
    return OfflineEmissionsTracker(**params)


def test_run_energy_and_emissions_follow_the_model(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path, pue=1.5, wue=2.0)
    tracker.start()
    time.sleep(0.3)
    kg = tracker.stop()
    data = tracker.final_emissions_data
    assert data is not None and kg == data.emissions
    # constant powers 50 / 300 / 5 W: energy is power x duration exactly
    assert data.cpu_energy == pytest.approx(50 * data.duration / J_PER_KWH, rel=1e-6)
    assert data.gpu_energy == pytest.approx(300 * data.duration / J_PER_KWH, rel=1e-6)
    assert data.ram_energy == pytest.approx(5 * data.duration / J_PER_KWH, rel=1e-6)
    assert data.cpu_power == pytest.approx(50) and data.gpu_power == pytest.approx(300)
    assert data.energy_consumed == pytest.approx(
        data.cpu_energy + data.gpu_energy + data.ram_energy
    )
    assert data.emissions == pytest.approx(data.energy_consumed * 1.5 * FORCED_G_PER_KWH / 1000)
    assert data.water_consumed == pytest.approx(data.energy_consumed * 2.0)
    assert data.duration >= 0.3
    assert data.carbon_intensity_source == "forced"
    assert data.status == "completed"
    assert data.country_iso_code == "FRA"
    assert [c["name"] for c in data.metadata["components"]] == ["cpu:package-0", "gpu:0", "ram"]
    frame = read_emissions(tmp_path / "emissions.csv")
    assert tuple(frame.columns) == RUN_CSV_COLUMNS
    assert len(frame) == 1
    assert frame.loc[0, "run_id"] == tracker.run_id
    assert frame.loc[0, "emissions"] == pytest.approx(data.emissions)


def test_sampler_runs_and_is_joined_on_stop(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path, output_methods=[])
    before = {t.name for t in threading.enumerate()}
    tracker.start()
    time.sleep(0.3)
    assert tracker.thread_name("sampler") in {t.name for t in threading.enumerate()}
    tracker.stop()
    assert tracker.thread_name("sampler") not in {t.name for t in threading.enumerate()} - before
    assert tracker.components[0].samples >= 3  # every 50 ms


def test_windows_nest_and_tiled_windows_sum_to_the_run(tmp_path: Path) -> None:
    recorder = Recorder()
    tracker = make_tracker(tmp_path, output_handlers=[recorder])
    tracker.start()
    outer = tracker.open_window("task", "outer")
    window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    records = []
    for epoch in range(3):
        time.sleep(0.05)
        nested = tracker.open_window("phase", "validation", epoch=epoch, phase="validation")
        time.sleep(0.02)
        tracker.close_window(nested)
        record, window = tracker.switch_window(
            window, "epoch", f"epoch {epoch + 1}", epoch=epoch + 1, phase="train"
        )
        records.append(record)
    last = tracker.close_window(window)
    outer_record = tracker.close_window(outer)
    tracker.stop()
    tiled = records + [last]
    # switched windows share their edges (one snapshot), so they tile time exactly...
    for before, after in zip(tiled, tiled[1:]):
        assert before.end_timestamp == after.start_timestamp
    span = (
        datetime.fromisoformat(tiled[-1].end_timestamp)
        - datetime.fromisoformat(tiled[0].start_timestamp)
    ).total_seconds()
    assert sum(r.duration for r in tiled) == pytest.approx(span, abs=2e-3)
    # ...and their energies add up: 355 W over the tiled span, inside the outer window
    assert sum(r.energy_consumed for r in tiled) == pytest.approx(
        355 * sum(r.duration for r in tiled) / J_PER_KWH, rel=1e-9
    )
    assert outer_record.energy_consumed > sum(r.energy_consumed for r in tiled)
    assert [r.epoch for r in tiled] == [0, 1, 2, 3]
    kinds = [w.kind for w in recorder.windows]
    assert kinds.count("phase") == 3 and kinds.count("epoch") == 4 and kinds.count("task") == 1
    frame = read_emissions(tmp_path / "emissions_windows.csv")
    assert tuple(frame.columns) == WINDOW_CSV_COLUMNS
    assert len(frame) == 8
    assert set(frame["run_id"]) == {tracker.run_id}
    assert frame["epoch"].dtype.name == "Int64"


def test_windows_switched_later_are_the_records_switch_window_gives_in_order(
    tmp_path: Path,
) -> None:
    """switch_window_later() takes the edge only; the records, built at collect_windows(),
    before the next record written, or at stop(), are those of switch_window(), in the order
    the windows closed, with the intensity and metadata of their close."""
    import dataclasses

    recorder = Recorder()
    tracker = make_tracker(tmp_path, output_handlers=[recorder])
    tracker.start()
    window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    time.sleep(0.02)
    window = tracker.switch_window_later(
        window, "phase", "validation", phase="validation", collect=True
    )
    closed_intensity = tracker.intensity
    tracker.update_metadata({"note": "at the close"})
    time.sleep(0.01)
    window = tracker.switch_window_later(window, "phase", "after", epoch=0, collect=True)
    assert tracker.windows_to_collect == 2 and recorder.windows == []  # nothing built yet
    # a later intensity and metadata do not reach windows closed before them
    tracker.intensity = dataclasses.replace(closed_intensity, g_per_kwh=1000.0)
    tracker.update_metadata({"note": "after the close"})
    first = tracker.collect_windows()
    assert [r.name for r in first] == ["epoch 0", "validation"]
    assert recorder.windows == first and tracker.windows_to_collect == 0
    assert first[0].end_timestamp == first[1].start_timestamp  # one edge: they tile
    assert first[0].carbon_intensity_g_per_kwh == closed_intensity.g_per_kwh
    assert "note" not in first[0].metadata and first[1].metadata["note"] == "at the close"
    assert [r.metadata["window_count"] for r in first] == [1, 2]
    assert first[0].duration == pytest.approx(0.02, abs=0.015)
    assert first[0].energy_consumed == pytest.approx(355 * first[0].duration / J_PER_KWH, rel=1e-9)
    # a window closed now goes out after those closed before it
    window = tracker.switch_window_later(
        window, "epoch", "epoch 1", epoch=1, phase="train", collect=True
    )
    nested = tracker.open_window("phase", "nested")
    direct = tracker.close_window(nested)
    assert [r.name for r in recorder.windows[2:]] == ["after", "nested"]
    assert recorder.windows[-1] is direct
    window = tracker.switch_window_later(window, "phase", "last")  # not kept once written
    tracker.stop(window_status="completed")  # the one left is built and written at stop()
    names = [r.name for r in recorder.windows]
    assert names == ["epoch 0", "validation", "after", "nested", "epoch 1", "last"]
    # kept for collect_windows(): those closed with collect, not collected yet ("epoch 1"
    # closed without it, so stop() wrote it and nothing kept it)
    assert [r.name for r in tracker.collect_windows()] == ["after"]
    frame = read_emissions(tmp_path / "emissions_windows.csv")
    assert list(frame["name"]) == names
    tiled = [r for r in recorder.windows if r.name != "nested"]
    assert all(a.end_timestamp == b.start_timestamp for a, b in zip(tiled, tiled[1:]))
    assert sum(r.energy_consumed for r in tiled) == pytest.approx(
        355 * sum(r.duration for r in tiled) / J_PER_KWH, rel=1e-9
    )
    with pytest.raises(KeyError, match="no open window"):
        tracker.switch_window_later("nope", "phase")


def test_a_window_opened_at_start_makes_switched_windows_sum_to_the_run(tmp_path: Path) -> None:
    recorder = Recorder()
    tracker = make_tracker(tmp_path, output_methods=[], output_handlers=[recorder])
    tracker.start()
    time.sleep(0.01)
    window = tracker.open_window("phase", "setup", at_start=True)
    first, window = tracker.switch_window(window, "epoch", "e0", epoch=0, phase="train")
    time.sleep(0.01)
    tracker.stop(window_status="completed")
    run = tracker.final_emissions_data
    assert first.start_timestamp == run.metadata["run_start_timestamp"]
    assert first.duration >= 0.01
    assert [w.name for w in recorder.windows] == ["setup", "e0"]
    assert sum(w.energy_consumed for w in recorder.windows) == pytest.approx(
        run.energy_consumed, rel=1e-12
    )


def test_figures_of_windows_switched_later_are_their_records_built_or_not(
    tmp_path: Path,
) -> None:
    """window_figures() gives a window's figures without building its record, bit for bit the
    record's; where no output writes windows, stop() builds none of those kept for
    collect_windows(): they are built when collected, with the RAM usage of their close; a
    window's figures are still given once its record was collected."""
    from codecarbon_callbacks_core.records import FIGURE_FIELDS

    tracker = make_tracker(tmp_path, output_methods=[], pue=1.3, wue=0.5)
    tracker.start()
    window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    time.sleep(0.02)
    first = window
    window = tracker.switch_window_later(window, "phase", "val", phase="validation", collect=True)
    time.sleep(0.01)
    window = tracker.switch_window_later(window, "phase", "after", collect=True)
    figures = tracker.window_figures(first)
    assert (figures.kind, figures.name, figures.epoch, figures.phase) == (
        "epoch",
        "epoch 0",
        0,
        "train",
    )
    assert tracker.window_figures(first) is figures  # computed once
    assert figures.energy_consumed > 0
    assert figures.emissions == pytest.approx(
        figures.energy_consumed * 1.3 * FORCED_G_PER_KWH / 1000, rel=1e-12
    )
    ram_at_close = tracker._later[0].ram
    tracker._ram_usage._cache = None  # a RAM read after the close would differ
    tracker._ram_usage.read = lambda now_s: (99.0, 99.0)  # type: ignore[method-assign]
    tracker.stop()
    assert tracker.windows_to_collect == 2 and len(tracker._later) == 2  # none built at stop()
    records = tracker.collect_windows()
    assert [r.name for r in records] == ["epoch 0", "val"]
    for name in FIGURE_FIELDS:
        assert getattr(records[0], name) == getattr(figures, name), name
    assert (records[0].ram_utilization_percent, records[0].ram_used_gb) == ram_at_close
    assert records[0].metadata["components"]  # the full record
    # collected (by anyone): still answered, from the record
    again = tracker.window_figures(first)
    assert [getattr(again, n) for n in FIGURE_FIELDS] == [
        getattr(figures, n) for n in FIGURE_FIELDS
    ]
    assert again.name == "epoch 0"
    with pytest.raises(KeyError):
        tracker.window_figures("no such window")


def test_windows_switched_later_and_not_collected_are_not_kept(tmp_path: Path) -> None:
    """A tracker that switches later without collect keeps no record once it is written: flush()
    and stop() write them all, and nothing grows with the number of windows."""
    tracker = make_tracker(tmp_path)
    tracker.start()
    window = tracker.open_window("phase", "first")
    for i in range(300):
        window = tracker.switch_window_later(window, "phase", f"w{i}")
        if i % 100 == 99:
            tracker.flush()
            assert tracker.windows_to_collect == 0 and tracker._built == []
    tracker.stop()
    assert tracker.windows_to_collect == 0 and tracker._built == [] and tracker._later == []
    frame = read_emissions(tmp_path / "emissions_windows.csv")
    names = [n for n in frame["name"] if n != "flush"]
    assert names == ["first"] + [f"w{i}" for i in range(300)]


def test_tasks_and_flush_never_stop_measuring(tmp_path: Path) -> None:
    recorder = Recorder()
    tracker = make_tracker(tmp_path, output_handlers=[recorder])
    tracker.start()
    tracker.start_task("load")
    time.sleep(0.05)
    task = tracker.stop_task()
    assert task.name == "load" and task.kind == "task" and task.energy_consumed > 0
    kg1 = tracker.flush()  # CodeCarbon 3.3 fails here; we must not
    time.sleep(0.05)
    kg2 = tracker.flush()
    assert kg1 is not None and kg2 is not None and kg2 > kg1
    final = tracker.stop()
    assert final is not None and final > kg2
    # out() got cumulative totals and deltas that add up
    totals = [t.emissions for t, _ in recorder.outs]
    deltas = [d.emissions for _, d in recorder.outs]
    assert totals == sorted(totals) and sum(deltas) == pytest.approx(totals[-1])
    assert recorder.tasks and recorder.tasks[0][0][0].name == "load"
    assert recorder.exited == 1
    frame = read_emissions(tmp_path / "emissions.csv")
    assert list(frame["status"]) == ["running", "running", "completed"]


def test_start_after_stop_is_a_new_run(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    tracker.start()
    tracker.start()  # a second start while running is ignored, not a crash
    first = tracker.run_id
    tracker.stop()
    tracker.start()
    assert tracker.run_id != first and tracker.is_running
    tracker.stop()
    frame = read_emissions(tmp_path / "emissions.csv")
    assert len(set(frame["run_id"])) == 2


def test_update_mode_rewrites_the_runs_row(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path, on_csv_write="update")
    tracker.start()
    tracker.flush()
    tracker.flush()
    tracker.stop()
    frame = read_emissions(tmp_path / "emissions.csv")
    assert len(frame) == 1 and frame.loc[0, "status"] == "completed"


def test_failing_output_never_stops_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(BaseOutput):
        def out(self, total, delta):
            raise OSError("disk full")

        def window_out(self, record):
            raise RuntimeError("boom")

    recorder = Recorder()
    tracker = make_tracker(tmp_path, output_handlers=[Broken(), recorder])
    tracker.start()
    tracker.close_window(tracker.open_window("epoch", "e", epoch=0, phase="train"))
    assert tracker.stop() is not None
    assert len(recorder.outs) == 1 and len(recorder.windows) == 1  # the others still got it
    assert "disk full" in caplog.text and "boom" in caplog.text
    assert len(read_emissions(tmp_path / "emissions.csv")) == 1


def test_live_out_every_api_call_interval(tmp_path: Path) -> None:
    recorder = Recorder()
    tracker = make_tracker(
        tmp_path, output_handlers=[recorder], measure_power_secs=0.05, api_call_interval=2
    )
    tracker.start()
    time.sleep(0.5)
    tracker.stop()
    assert 2 <= len(recorder.lives) <= 6
    totals = [t.energy_consumed for t, _ in recorder.lives]
    assert totals == sorted(totals)
    assert sum(d.energy_consumed for _, d in recorder.lives) == pytest.approx(totals[-1])


def test_resume_keeps_run_id_and_adds_offsets(tmp_path: Path) -> None:
    first = make_tracker(tmp_path)
    first.start()
    time.sleep(0.1)
    first.stop(status="interrupted")
    state = json.loads(json.dumps(first.state_dict()))
    recorder = Recorder()
    second = make_tracker(tmp_path, output_handlers=[recorder])
    second.load_state_dict(state)
    second.start()
    time.sleep(0.1)
    second.flush()
    second.stop()
    a, b = first.final_emissions_data, second.final_emissions_data
    assert b.run_id == a.run_id
    assert b.energy_consumed > a.energy_consumed
    assert b.duration == pytest.approx(a.duration + (b.duration - a.duration))
    assert b.emissions > a.emissions
    assert b.cpu_energy - a.cpu_energy == pytest.approx(
        50 * (b.duration - a.duration) / J_PER_KWH, rel=1e-6
    )
    # outputs get deltas of only what this process measured; nothing rides in the metadata
    deltas = [d for _, d in recorder.outs]
    assert len(deltas) == 2
    assert sum(d.energy_consumed for d in deltas) == pytest.approx(
        b.energy_consumed - a.energy_consumed
    )
    assert sum(d.emissions for d in deltas) == pytest.approx(b.emissions - a.emissions)
    assert sum(d.duration for d in deltas) == pytest.approx(b.duration - a.duration)
    assert "resumed_offsets" not in b.metadata
    with pytest.raises(ValueError, match="state"):
        second.load_state_dict({"nothing": 1})


def test_context_manager_records_failure(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    with pytest.raises(ZeroDivisionError):
        with tracker:
            window = tracker.open_window("epoch", "e", epoch=0, phase="train")
            1 / 0
    assert tracker.final_emissions_data.status == "failed"
    windows = read_emissions(tmp_path / "emissions_windows.csv")
    assert list(windows["status"]) == ["failed"]
    assert window not in tracker.open_windows


def test_track_emissions_decorator(tmp_path: Path) -> None:
    @track_emissions(
        offline=True, country_iso_code="FRA", output_dir=str(tmp_path), components=components()
    )
    def work(x: int) -> int:
        return x * 2

    assert work(21) == 42
    assert len(read_emissions(tmp_path / "emissions.csv")) == 1


def test_window_arguments_are_checked(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path, output_methods=[])
    with pytest.raises(RuntimeError, match="start"):
        tracker.open_window("epoch")
    tracker.start()
    with pytest.raises(ValueError, match="kind"):
        tracker.open_window("fortnight")
    with pytest.raises(ValueError, match="phase"):
        tracker.open_window("epoch", phase="warmup")
    with pytest.raises(KeyError):
        tracker.close_window("nope")
    tracker.stop()


def _child_work(queue) -> None:  # runs in a forked child (a DataLoader worker)
    queue.put(sum(range(10000)))


def test_fork_while_sampling_is_safe(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    tracker.start()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child_work, args=(queue,)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=20)
    assert results == [49995000] * 3
    assert all(p.exitcode == 0 for p in procs)
    time.sleep(0.1)
    assert tracker.stop() is not None
    assert len(read_emissions(tmp_path / "emissions.csv")) == 1  # children wrote nothing


def test_open_run_with_several_gpu_counters_at_exit_is_written(tmp_path: Path) -> None:
    """At exit the edge thread pool takes no new work: the final snapshot reads counters in turn.

    (Two GPUs with energy counters; before the fix, the atexit stop failed and wrote nothing.)
    """
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from codecarbon_callbacks import OfflineEmissionsTracker
from codecarbon_callbacks_core.hardware.base import MeasurementMethod
from core.constant_power import ConstantPowerComponent
gpus = [ConstantPowerComponent("gpu", f"gpu:{{i}}", 300.0, method=MeasurementMethod.NVML_ENERGY)
        for i in range(2)]
t = OfflineEmissionsTracker(country_iso_code="FRA", output_dir={str(tmp_path)!r}, components=gpus)
t.start()
t.open_window("epoch", "e0", epoch=0, phase="train")
raise SystemExit(3)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], timeout=60, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert result.returncode == 3
    runs = read_emissions(tmp_path / "emissions.csv")
    assert list(runs["status"]) == ["incomplete"] and runs.loc[0, "gpu_energy"] > 0


def test_open_run_at_exit_is_written_incomplete(tmp_path: Path) -> None:
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from codecarbon_callbacks import OfflineEmissionsTracker
from core.constant_power import ConstantPowerComponent, components
t = OfflineEmissionsTracker(
    country_iso_code="FRA", output_dir={str(tmp_path)!r}, components=components()
)
t.start()
t.open_window("epoch", "e0", epoch=0, phase="train")
"""
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    runs = read_emissions(tmp_path / "emissions.csv")
    windows = read_emissions(tmp_path / "emissions_windows.csv")
    assert list(runs["status"]) == ["incomplete"]
    assert list(windows["status"]) == ["incomplete"]


def test_allow_multiple_runs_false_refuses_a_second_tracker(tmp_path: Path) -> None:
    first = make_tracker(tmp_path, allow_multiple_runs=False)
    second = make_tracker(tmp_path, allow_multiple_runs=False)
    first.start()
    second.start()
    assert first.is_running and not second.is_running
    first.stop()
    second.start()  # the lock is free again
    assert second.is_running
    second.stop()


def test_record_combiner_and_non_writing_ranks(tmp_path: Path) -> None:
    calls: list[tuple[str, bool]] = []

    def double(record, collective):
        calls.append((type(record).__name__, collective))
        record.gpu_energy *= 2  # as if a second rank had the same GPU energy
        return record

    writer = make_tracker(tmp_path / "rank0", output_handlers=[Recorder()], record_combiner=double)
    writer.start()
    record = writer.close_window(writer.open_window("epoch", "e", epoch=0, phase="train"))
    writer.stop()
    assert calls == [("WindowRecord", True), ("EmissionsData", True)]
    assert record.gpu_energy == pytest.approx(2 * 300 * record.duration / J_PER_KWH, rel=1e-6)

    calls.clear()
    silent = make_tracker(tmp_path / "rank1", record_combiner=double, writes_outputs=False)
    silent.start()
    silent.open_window("epoch", "e", epoch=0, phase="train")
    silent.stop(status="failed")  # failure path: no collective
    assert calls == [("WindowRecord", False), ("EmissionsData", False)]
    assert not (tmp_path / "rank1" / "emissions.csv").exists()


def test_from_config_builds_without_resolving_again_and_hooks_are_public(tmp_path: Path) -> None:
    """The session's path: resolve once, build each run's tracker from the config with its hooks;
    a tracker built elsewhere joins a run through set_distributed_hooks and gets its own back."""
    from codecarbon_callbacks_core.errors import ConfigError
    from codecarbon_callbacks_core.tracker import resolve_tracker_config

    config = resolve_tracker_config(
        {"country_iso_code": "FRA", "output_dir": str(tmp_path), "project_name": "once"},
        offline=True,
    )
    with pytest.raises(ConfigError, match="country_iso_code"):
        resolve_tracker_config(
            {"country_iso_code": "FRN", "output_dir": str(tmp_path)}, offline=True
        )
    calls = []

    def combiner(record, collective):
        calls.append(collective)
        return record

    tracker = OfflineEmissionsTracker.from_config(
        config, components=components(), record_combiner=combiner, writes_outputs=False
    )
    assert tracker.config is config and tracker.record_combiner is combiner
    assert not tracker.writes_outputs
    tracker.start()
    tracker.stop()
    assert calls == [True] and not (tmp_path / "emissions.csv").exists()
    with pytest.raises(AttributeError):
        tracker.writes_outputs = True  # read-only: hooks are set through the public method
    own = make_tracker(tmp_path)
    previous = own.set_distributed_hooks(combiner, False)
    assert previous == (None, True) and own.record_combiner is combiner
    assert own.set_distributed_hooks(*previous) == (combiner, False)
    assert (own.record_combiner, own.writes_outputs) == (None, True)


def test_non_writing_tracker_builds_no_outputs(tmp_path: Path) -> None:
    """Ranks other than zero: their outputs never see a call, not even exit()."""
    recorder = Recorder()
    tracker = make_tracker(tmp_path / "rank1", output_handlers=[recorder], writes_outputs=False)
    tracker.start()
    tracker.close_window(tracker.open_window("epoch", "e", epoch=0, phase="train"))
    tracker.flush()
    assert tracker.stop() is not None
    assert (recorder.outs, recorder.windows, recorder.exited) == ([], [], 0)
    assert not list((tmp_path / "rank1").glob("*"))  # no CSV, no lock file


def test_budget_stop_is_a_collective_end(tmp_path: Path) -> None:
    """Every rank stops together at a budget stop: the combiner may use collectives there."""
    calls: list[tuple[str, bool]] = []

    def record(record, collective):
        calls.append((type(record).__name__, collective))
        return record

    tracker = make_tracker(tmp_path, record_combiner=record)
    tracker.start()
    tracker.open_window("epoch", "e", epoch=0, phase="train")
    tracker.stop(status="budget_stop", window_status="completed")
    assert calls == [("WindowRecord", True), ("EmissionsData", True)]
    for status in ("interrupted", "incomplete"):
        calls.clear()
        tracker.start()
        tracker.open_window("epoch", "e", epoch=0, phase="train")
        tracker.stop(status=status)
        assert calls == [("WindowRecord", False), ("EmissionsData", False)], status


def test_dataloader_workers_fork_while_sampling(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    tracker = make_tracker(tmp_path, measure_power_secs=0.02, api_call_interval=1)
    tracker.start()
    data = TensorDataset(torch.arange(64, dtype=torch.float32).reshape(32, 2))
    for _ in range(2):  # workers are forked twice, while the sampler samples
        loader = DataLoader(data, batch_size=4, num_workers=2, multiprocessing_context="fork")
        total = sum(float(batch[0].sum()) for batch in loader)
        window = tracker.open_window("epoch", "e", epoch=0, phase="train")
        tracker.close_window(window)
    assert total == float(sum(range(64)))
    assert tracker.stop() is not None
    assert len(read_emissions(tmp_path / "emissions_windows.csv")) == 2


def test_windows_left_open_close_at_the_runs_final_edge(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    tracker.start()
    first, window = tracker.switch_window(
        tracker.open_window("epoch", "e0", epoch=0, phase="train"),
        "epoch",
        "e1",
        epoch=1,
        phase="train",
    )
    time.sleep(0.02)
    tracker.stop(window_status="completed")
    run = tracker.final_emissions_data
    last = read_emissions(tmp_path / "emissions_windows.csv").iloc[-1]
    assert last["status"] == "completed"
    assert last["end_timestamp"].isoformat(timespec="microseconds") == run.timestamp


def test_totals_at_last_edge_reads_no_hardware(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path, output_methods=[])
    tracker.start()
    for component in tracker.components:  # a stated accuracy: non-zero uncertainties
        component.sensor_accuracy_fraction = 0.05
    record, window = tracker.switch_window(
        tracker.open_window("epoch", "e0", epoch=0, phase="train"), "phase", "other"
    )
    reads = []
    gpu = tracker.components[1]
    real = gpu.energy_j
    gpu.energy_j = lambda now: (reads.append(now), real(now))[1]
    full = tracker._run_record(tracker._meter.last_edge, status="running")
    gpu.utilization_percent = lambda: reads.append("utilization")  # the lean path reads none
    gpu.describe = lambda: reads.append("describe")  # and describes no component
    time.sleep(0.02)
    at_edge = tracker.totals(at_last_edge=True)
    assert reads == []
    assert at_edge.timestamp == record.end_timestamp
    # the same figures and facts as the full record at that edge; no utilisation, no metadata
    figures = ("energy_consumed", "gpu_energy", "gpu_power", "emissions", "duration", "run_id")
    uncertainties = (
        "energy_consumed_uncertainty_kwh",
        "gpu_energy_uncertainty_kwh",
        "cpu_energy_uncertainty_kwh",
        "emissions_uncertainty_kg",
    )
    for name in figures + uncertainties:
        assert getattr(at_edge, name) == getattr(full, name), name
    assert at_edge.energy_consumed_uncertainty_kwh > 0
    assert at_edge.gpu_model == full.gpu_model and at_edge.country_iso_code == "FRA"
    assert full.metadata["components"] and at_edge.metadata == {}
    assert at_edge.gpu_utilization_percent == 0.0
    del gpu.utilization_percent, gpu.describe
    assert tracker.totals().duration > at_edge.duration and len(reads) == 1
    tracker.stop()


def test_totals_at_one_edge_are_built_once_and_follow_the_next_edge(tmp_path: Path) -> None:
    """A validation end and its epoch's end ask for the totals at the same edge: one record;
    the next edge, a changed intensity or a new run give new figures."""
    import dataclasses

    tracker = make_tracker(tmp_path, output_methods=[])
    tracker.start()
    window = tracker.open_window("epoch", "e0", epoch=0, phase="train")
    time.sleep(0.01)
    _, window = tracker.switch_window(window, "phase", "other")
    first = tracker.totals(at_last_edge=True)
    assert tracker.totals(at_last_edge=True) is first
    time.sleep(0.01)
    _, window = tracker.switch_window(window, "epoch", "e1", epoch=1, phase="train")
    second = tracker.totals(at_last_edge=True)
    assert second is not first and second.duration > first.duration
    assert second.energy_consumed > first.energy_consumed
    tracker.intensity = dataclasses.replace(tracker.intensity, g_per_kwh=1000.0)
    third = tracker.totals(at_last_edge=True)
    assert third is not second and third.emissions > second.emissions
    assert third.energy_consumed == second.energy_consumed
    tracker.stop()
    tracker.start()  # a new run: its own edges, never the last run's totals
    tracker.switch_window(tracker.open_window("epoch", "e0", epoch=0), "phase", "other")
    assert tracker.totals(at_last_edge=True).run_id == tracker.run_id != second.run_id
    tracker.stop()


def test_edge_records_follow_changes_of_the_run_config_and_intensity(tmp_path: Path) -> None:
    """The fields every record shares are cached per run (issue 13's hot path): a change of
    run, configuration or intensity shows in the next record; window ids stay uuid4 text."""
    import dataclasses
    import uuid

    tracker = make_tracker(tmp_path, output_methods=[], project_name="p1")
    tracker.start()
    first, window = tracker.switch_window(
        tracker.open_window("epoch", "e0", epoch=0, phase="train"), "phase", "other"
    )
    assert first.project_name == "p1" and first.run_id == tracker.run_id
    assert first.country_iso_code == "FRA" and first.os == tracker._static["os"]
    assert first.carbon_intensity_g_per_kwh == FORCED_G_PER_KWH
    tracker.config.project_name = "p2"
    tracker.config.pue = 1.5
    tracker.intensity = dataclasses.replace(tracker.intensity, g_per_kwh=200.0, region="r")
    second, window = tracker.switch_window(window, "phase", "other")
    assert (second.project_name, second.pue, second.region) == ("p2", 1.5, "r")
    assert second.carbon_intensity_g_per_kwh == 200.0
    assert second.emissions == pytest.approx(second.energy_consumed * 1.5 * 200.0 / 1000.0)
    assert first.start_timestamp < first.end_timestamp == second.start_timestamp
    ids = {first.window_id, second.window_id, window}
    assert len(ids) == 3
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 for i in ids)
    tracker.stop()
    tracker.start()  # a new run: its records carry the new run_id
    record, _ = tracker.switch_window(tracker.open_window("epoch", "e0"), "phase", "other")
    assert record.run_id == tracker.run_id != first.run_id
    tracker.stop()


def test_a_component_that_raises_keeps_its_last_energy(tmp_path: Path) -> None:
    parts = components()
    tracker = make_tracker(tmp_path, components=parts, output_methods=[])
    tracker.start()
    time.sleep(0.02)
    before = tracker.close_window(tracker.open_window("epoch", "e0"))
    window = tracker.open_window("epoch", "e1")
    parts[1].energy_j = lambda now: (_ for _ in ()).throw(RuntimeError("GPU lost"))
    after = tracker.close_window(window)
    assert after.gpu_energy == 0.0 and after.cpu_energy > 0  # frozen, never negative
    assert parts[1].failure is not None and before.gpu_energy > 0
    tracker.stop()


# -- what the user must act on: a CodeCarbonCallbacksWarning, once, on the writing rank ---------


def _user_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if w.category is CodeCarbonCallbacksWarning]


def test_a_world_average_location_warns_once_and_only_on_the_writing_rank(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    where = dict(country_iso_code="ATA", output_dir=str(tmp_path), output_methods=[])  # no data
    with caplog.at_level("WARNING"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rank1 = OfflineEmissionsTracker(**where, writes_outputs=False)
        assert _user_warnings(caught) == [] and "world average" in caplog.text
        for _ in range(3):  # rank zero (or one process), then more trackers of that process
            OfflineEmissionsTracker(**where)
    assert rank1.intensity.source == "world_average"
    assert len(_user_warnings(caught)) == 1 and "ATA" in _user_warnings(caught)[0]
    first = next(w for w in caught if w.category is CodeCarbonCallbacksWarning)
    assert first.filename == __file__  # attributed to the user's line


@pytest.fixture
def unknown_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real detection on a machine without RAPL whose CPU is not in the TDP table (a fake
    /proc/cpuinfo, an empty powercap tree, no GPU): the CPU is counted at a constant."""
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


@pytest.mark.usefixtures("unknown_cpu")
def test_a_constant_cpu_warns_once_and_only_on_the_writing_rank(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def run(**kwargs) -> OfflineEmissionsTracker:
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA",
            output_dir=str(tmp_path),
            output_methods=[],
            measure_power_secs=60,
            **kwargs,
        )
        tracker.start()
        tracker.stop()
        return tracker

    with caplog.at_level("WARNING"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rank1 = run(writes_outputs=False)
        assert _user_warnings(caught) == [] and "counted at a constant" in caplog.text
        trackers = [run(), run()]
    assert [c.method.value for c in rank1.components if c.kind == "cpu"] == ["constant"]
    assert all(t.hardware_notes == rank1.hardware_notes for t in trackers)
    messages = _user_warnings(caught)
    assert len(messages) == 1 and "counted at a constant" in messages[0]
    assert "force_cpu_power" in messages[0]  # and how to do better


# -- stop() is bounded; the live update never holds it up ------------------------------------------


class HoldsTheLiveUpdate(ConstantPowerComponent):
    """Holds the sampler inside a live update until stop() has begun, then lets it go on.

    The sampler's live snapshot (energy_j on the sampler thread) waits until the stopping thread
    reads the final edge; the live callback then runs while stop() is in progress: the moment
    at which a stop() that holds the tracker's lock while joining the sampler blocks.
    """

    def __init__(self) -> None:
        super().__init__("cpu", "cpu:package-0", 50.0, sample_interval_s=None)
        self.hold = False
        self.live_entered = threading.Event()
        self.stop_entered = threading.Event()

    def energy_j(self, now_s: float) -> float:
        if self.hold and threading.current_thread().name.startswith("codecarbon-callbacks-sampler"):
            self.live_entered.set()
            self.stop_entered.wait(10)
        elif self.hold and self.live_entered.is_set():
            self.stop_entered.set()
            time.sleep(0.05)  # the sampler reaches the live callback while stop() goes on
        return super().energy_j(now_s)


def test_stop_during_a_live_update_returns_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: stop() held the tracker's lock while joining the sampler, whose live callback
    waited for that lock: 5 s and "the sampler thread did not stop within 5 s"."""
    from codecarbon_callbacks_core.tracker import STOP_TIMEOUT_S

    for _ in range(5):
        component = HoldsTheLiveUpdate()
        recorder = Recorder()
        tracker = make_tracker(
            tmp_path,
            components=[component],
            measure_power_secs=0.05,
            api_call_interval=1,
            output_methods=["csv"],
            output_handlers=[recorder],
        )
        component.hold = True
        with caplog.at_level(logging.DEBUG, logger="codecarbon_callbacks_core"):
            tracker.start()
            assert component.live_entered.wait(5)
            began = time.monotonic()
            tracker.stop()
            elapsed_s = time.monotonic() - began
        assert component.stop_entered.is_set()
        assert elapsed_s < 1.0 < STOP_TIMEOUT_S
        # the held live update stepped aside: stop() wrote the end; its own measurement counts
        # towards api_call_interval (1 here), as CodeCarbon's, so the one live_out is stop()'s
        assert [total.status for total, _ in recorder.lives] == ["completed"]
        assert len(recorder.outs) == 1 and recorder.outs[0][0].status == "completed"
        assert tracker.thread_name("sampler") not in {t.name for t in threading.enumerate()}
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
    assert len(read_emissions(tmp_path / "emissions.csv")) == 5


class BlocksOnExit(BaseOutput):
    """An output whose exit() does not return in time (an endpoint that hangs)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def exit(self) -> None:
        self.release.wait(30)


def test_stop_bound_wins_over_an_output_that_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hung = BlocksOnExit()
    tracker = make_tracker(tmp_path, output_methods=["csv"], output_handlers=[hung])
    tracker.start()
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="codecarbon_callbacks_core"):
        kg = tracker.stop(timeout_s=0.5)
    elapsed_s = time.monotonic() - began
    try:
        assert 0.5 <= elapsed_s < 1.5
        assert kg is not None and kg == tracker.final_emissions_data.emissions
        assert len(read_emissions(tmp_path / "emissions.csv")) == 1  # written before exit()
        helper = tracker.thread_name("stop")
        assert [r for r in caplog.records if helper in r.getMessage()]  # reported, once
        assert helper in {t.name for t in threading.enumerate() if t.daemon}
    finally:
        hung.release.set()
    deadline = time.monotonic() + 5
    while helper in {t.name for t in threading.enumerate()} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert helper not in {t.name for t in threading.enumerate()}


# -- every ending has a status: SIGTERM, uncaught exceptions ---------------------------------------


def _preamble(tmp_path: Path) -> str:
    """A script's start: a plain tracker writing emissions.csv in ``tmp_path``."""
    return f"""
import os, signal, sys, threading, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from codecarbon_callbacks import OfflineEmissionsTracker
from core.constant_power import components
def tracker():
    return OfflineEmissionsTracker(country_iso_code="FRA", output_dir={str(tmp_path)!r},
                                   components=components(), output_methods=["csv"])
"""


def _run_script(tmp_path: Path, body: str, *, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _preamble(tmp_path) + body],
        timeout=timeout_s,
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )


def _statuses(path: Path) -> list[str]:
    return list(read_emissions(path)["status"]) if path.exists() else []


def test_sigterm_writes_the_run_as_interrupted_and_ends_the_process(tmp_path: Path) -> None:
    result = _run_script(
        tmp_path,
        """
t = tracker()
t.start()
t.open_window("epoch", "e0", epoch=0, phase="train")
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)
print("not reached")
""",
    )
    assert result.returncode == -15, result.stderr  # the signal's default action still follows
    assert "not reached" not in result.stdout
    assert _statuses(tmp_path / "emissions.csv") == ["interrupted"]
    assert _statuses(tmp_path / "emissions_windows.csv") == ["interrupted"]


def test_sigterm_from_the_parent_while_training(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    body = f"""
t = tracker()
t.start()
open({str(ready)!r}, "w").close()
while True:
    w = t.open_window("epoch", "e", epoch=0, phase="train")
    time.sleep(0.01)
    t.close_window(w)
"""
    child = subprocess.Popen(
        [sys.executable, "-c", _preamble(tmp_path) + body],
        env={**os.environ, "HOME": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
    assert _statuses(tmp_path / "emissions.csv") == ["interrupted"]
    windows = read_emissions(tmp_path / "emissions_windows.csv")
    assert "completed" in set(windows["status"])


def test_a_users_sigterm_handler_still_runs_and_is_given_back(tmp_path: Path) -> None:
    result = _run_script(
        tmp_path,
        """
seen = []
def mine(signum, frame):
    seen.append(signum)
signal.signal(signal.SIGTERM, mine)
t = tracker()
t.start()
installed = signal.getsignal(signal.SIGTERM)
os.kill(os.getpid(), signal.SIGTERM)
print("user handler ran:", seen == [signal.SIGTERM])
print("ours was chained:", installed is not mine)
print("given back:", signal.getsignal(signal.SIGTERM) is mine)
t2 = tracker()
t2.start()
t2.stop()
print("given back again:", signal.getsignal(signal.SIGTERM) is mine)
""",
    )
    assert result.returncode == 0, result.stderr
    assert "user handler ran: True" in result.stdout
    assert "ours was chained: True" in result.stdout
    assert "given back: True" in result.stdout
    assert "given back again: True" in result.stdout
    assert _statuses(tmp_path / "emissions.csv") == ["interrupted", "completed"]


def test_an_ignored_sigterm_is_left_alone(tmp_path: Path) -> None:
    result = _run_script(
        tmp_path,
        """
signal.signal(signal.SIGTERM, signal.SIG_IGN)
t = tracker()
t.start()
print("left alone:", signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
os.kill(os.getpid(), signal.SIGTERM)
t.stop()
""",
    )
    assert result.returncode == 0, result.stderr
    assert "left alone: True" in result.stdout
    assert _statuses(tmp_path / "emissions.csv") == ["completed"]


def test_an_uncaught_exception_writes_the_run_as_failed(tmp_path: Path) -> None:
    result = _run_script(
        tmp_path,
        """
t = tracker()
t.start()
t.open_window("epoch", "e0", epoch=0, phase="train")
raise RuntimeError("boom")
""",
    )
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr  # the previous hook still prints it
    assert _statuses(tmp_path / "emissions.csv") == ["failed"]
    assert _statuses(tmp_path / "emissions_windows.csv") == ["failed"]


def test_an_uncaught_exception_in_the_tracker_thread_writes_failed(tmp_path: Path) -> None:
    result = _run_script(
        tmp_path,
        """
def train():
    t = tracker()
    t.start()
    raise ValueError("bad batch")
worker = threading.Thread(target=train, name="trainer")
worker.start()
worker.join()
plain = tracker()
plain.start()   # started on the main thread: not ended by the worker's exception
plain.stop()
print("hooks given back:", sys.excepthook is sys.__excepthook__,
      threading.excepthook is threading.__excepthook__)
""",
    )
    assert result.returncode == 0, result.stderr
    assert "ValueError: bad batch" in result.stderr
    assert "hooks given back: True True" in result.stdout
    assert _statuses(tmp_path / "emissions.csv") == ["failed", "completed"]


def test_a_tracker_driven_by_a_combiner_leaves_the_endings_to_its_framework(tmp_path: Path) -> None:
    """The session gives every tracker it drives a record_combiner: no handler of ours then."""
    result = _run_script(
        tmp_path,
        """
t = tracker()
t.start()
print("plain:", t.is_plain, signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
t.set_distributed_hooks(lambda record, collective: record, True)
print("driven:", t.is_plain, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
      sys.excepthook is sys.__excepthook__)
raise RuntimeError("the framework reports this itself")
""",
    )
    assert result.returncode == 1
    assert "plain: True True" in result.stdout
    assert "driven: False True True" in result.stdout
    assert _statuses(tmp_path / "emissions.csv") == ["incomplete"]  # atexit only


def test_window_ids_stay_unique_when_the_random_module_is_seeded_alike(tmp_path: Path) -> None:
    """Users seed Python's random module (Lightning's seed_everything): two runs seeded alike
    must still give their windows different ids (they share the windows file)."""
    import random
    import uuid

    ids = []
    for run in range(2):
        random.seed(0)
        tracker = make_tracker(tmp_path, output_methods=[])
        tracker.start()
        window = tracker.open_window("phase", "first")
        ids.append(window)
        ids.append(tracker.switch_window_later(window, "phase", f"second {run}"))
        tracker.stop()
    assert len(set(ids)) == 4
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_a_snapshot_reads_the_cpu_times_at_most_every_tick(monkeypatch) -> None:
    """The machine's CPU times move in ticks of 10 ms: a snapshot sooner than that after the
    last read carries the last reading (the read costs tens of microseconds at a window edge);
    one later reads them anew."""
    from codecarbon_callbacks_core import meter as meter_module

    reads = []

    def counted() -> tuple[float, float]:
        reads.append(len(reads))
        return float(len(reads)), 10.0 * len(reads)

    monkeypatch.setattr(meter_module, "cpu_busy_total_s", counted)
    now = [100.0]
    meter = meter_module.Meter([], clock=lambda: now[0])
    first = meter.snapshot(sync_cuda=False)
    now[0] += meter_module.CPU_TIMES_MIN_INTERVAL_S / 2
    soon = meter.snapshot(sync_cuda=False)
    now[0] += meter_module.CPU_TIMES_MIN_INTERVAL_S
    later = meter.snapshot(sync_cuda=False)
    assert len(reads) == 2
    assert first.cpu_times_s == soon.cpu_times_s == (1.0, 10.0)
    assert later.cpu_times_s == (2.0, 20.0)


def test_run_figures_are_the_totals_figures(tmp_path: Path) -> None:
    """run_figures() gives totals()' figures without the rest of the record, the same at the
    same edge; after stop(), the final record's."""
    from codecarbon_callbacks_core.records import FIGURE_FIELDS

    tracker = make_tracker(tmp_path, output_methods=[], pue=1.2, wue=0.3)
    with pytest.raises(RuntimeError, match="started"):
        tracker.run_figures()
    tracker.start()
    window = tracker.open_window("phase", "first")
    time.sleep(0.01)
    tracker.switch_window_later(window, "phase", "second")
    figures = tracker.run_figures(at_last_edge=True)
    assert tracker.run_figures(at_last_edge=True) is figures
    totals = tracker.totals(at_last_edge=True)
    for name in FIGURE_FIELDS:
        assert getattr(figures, name) == getattr(totals, name), name
    assert figures.energy_consumed > 0 and figures.water_consumed > 0
    assert tracker.run_figures().duration > figures.duration  # now, not at the last edge
    tracker.stop()
    final = tracker.run_figures()
    assert final.energy_consumed == tracker.final_emissions_data.energy_consumed
    # a resumed run's figures carry its earlier part, as its totals do
    resumed = make_tracker(tmp_path, output_methods=[], pue=1.2, wue=0.3)
    resumed.load_state_dict(tracker.state_dict())
    resumed.start()
    time.sleep(0.01)
    now = resumed.run_figures()
    assert now.energy_consumed > final.energy_consumed and now.duration > final.duration
    resumed.stop()


def test_a_record_that_cannot_be_built_costs_only_itself(tmp_path: Path, caplog) -> None:
    """A window whose record build raises (a backend's bug) is logged and skipped: the windows
    closed before and after it are built and written in order, switches go on; a component
    whose describe() raises still gets its rows, with the failure said in its description."""
    recorder = Recorder()
    tracker = make_tracker(tmp_path, output_methods=[], output_handlers=[recorder])
    tracker.start()
    real = tracker._window_record

    def flaky(window, end, **kwargs):
        if window.name == "w1":
            raise RuntimeError("backend bug")
        return real(window, end, **kwargs)

    tracker._window_record = flaky  # type: ignore[method-assign]
    window = tracker.open_window("phase", "w0")
    for i in range(1, 4):
        window = tracker.switch_window_later(window, "phase", f"w{i}")
    component = tracker.components[0]
    calls = []

    def describe_once():
        calls.append(1)
        raise RuntimeError("no description")

    component.describe = describe_once  # type: ignore[method-assign]
    with caplog.at_level("WARNING"):
        tracker.flush()  # writes what waits, then a flush window
    assert [r.name for r in recorder.windows][:3] == ["w0", "w2", "flush"]
    assert "w1" in caplog.text and "backend bug" in caplog.text
    described = recorder.windows[0].metadata["components"][0]
    assert calls and "describe() failed: no description" in described["failure"]
    window = tracker.switch_window_later(window, "phase", "w4")  # switches go on
    tracker.stop(window_status="completed")
    assert [r.name for r in recorder.windows if r.name != "flush"] == ["w0", "w2", "w3", "w4"]


def test_windows_closed_later_reach_the_outputs_within_a_second_without_another_edge(
    tmp_path: Path,
) -> None:
    """Where an output writes windows, a window switched later is written by the sampler thread
    once it closed a second ago, however far the next edge is (an hour-long epoch)."""
    recorder = Recorder()
    tracker = make_tracker(tmp_path, output_handlers=[recorder])
    tracker.start()
    window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    closed_at = time.monotonic()
    tracker.switch_window_later(window, "phase", "validation", phase="validation")
    while not recorder.windows and time.monotonic() - closed_at < 5.0:
        time.sleep(0.02)
    waited = time.monotonic() - closed_at
    assert [r.name for r in recorder.windows] == ["epoch 0"]
    assert 0.9 <= waited < 2.5
    path = tmp_path / "emissions_windows.csv"
    while not path.exists() and time.monotonic() - closed_at < 5.0:  # the file's writer thread
        time.sleep(0.02)
    names: list = []
    while names != ["epoch 0"] and time.monotonic() - closed_at < 5.0:
        try:
            names = list(read_emissions(path)["name"])
        except Exception:  # the header not written yet
            names = []
        time.sleep(0.02)
    assert names == ["epoch 0"]  # on disk before stop(), not only handed to the writer
    tracker.stop()


def test_a_window_closed_before_the_location_is_known_keeps_the_intensity_of_its_close(
    tmp_path: Path,
) -> None:
    """A window switched later while the carbon intensity is still provisional is built with
    the intensity its figures used (the one switch_window() would have used then), not one
    known later."""
    import dataclasses

    from codecarbon_callbacks_core.records import FIGURE_FIELDS

    tracker = make_tracker(tmp_path, output_methods=[])
    tracker.start()
    provisional = tracker.intensity
    tracker.intensity = None  # not resolved yet: the provisional figure is used meanwhile
    window = tracker.open_window("phase", "first")
    time.sleep(0.01)
    tracker.switch_window_later(window, "phase", "second", collect=True)
    figures = tracker.window_figures(window)
    tracker.intensity = dataclasses.replace(provisional, g_per_kwh=999.0)  # known later
    (record,) = tracker.collect_windows()
    for name in FIGURE_FIELDS:
        assert getattr(record, name) == getattr(figures, name), name
    assert record.carbon_intensity_g_per_kwh == provisional.g_per_kwh != 999.0
    tracker.stop()


def test_the_sampler_builds_no_window_where_a_combiner_may_start_a_collective(
    tmp_path: Path,
) -> None:
    """A record combiner that does not say it is not distributed may start a collective: the
    sampler thread then never builds (every rank combines on its training thread, at the same
    points); one that says it is not distributed lets it."""
    seen: list[str] = []

    def combiner(record, collective):
        seen.append(threading.current_thread().name)
        return record

    for distributed, expected in ((None, 0), (False, 1)):
        if distributed is not None:
            combiner.distributed = distributed  # type: ignore[attr-defined]
        seen.clear()
        recorder = Recorder()
        tracker = make_tracker(tmp_path, output_handlers=[recorder], record_combiner=combiner)
        tracker.start()
        window = tracker.open_window("phase", "first")
        tracker.switch_window_later(window, "phase", "second")
        time.sleep(1.8)
        assert len(recorder.windows) == expected
        assert all("sampler" in name for name in seen)
        tracker.stop()
        assert [r.name for r in recorder.windows] == ["first", "second"]


def test_an_interrupt_while_writing_windows_loses_none(tmp_path: Path) -> None:
    """A KeyboardInterrupt inside an output's window_out, while windows closed later are
    written, puts back the ones not written yet (the interrupted one among them): stop() writes
    them, in order, once each."""

    class Interrupting(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.armed = True

        def window_out(self, record):
            if record.name == "w1" and self.armed:
                self.armed = False
                raise KeyboardInterrupt
            super().window_out(record)

    recorder = Interrupting()
    tracker = make_tracker(tmp_path, output_methods=[], output_handlers=[recorder])
    tracker.start()
    window = tracker.open_window("phase", "w0")
    for i in range(1, 4):
        window = tracker.switch_window_later(window, "phase", f"w{i}", collect=True)
    with pytest.raises(KeyboardInterrupt):
        tracker.flush()
    tracker.stop(window_status="completed")
    assert [r.name for r in recorder.windows if r.name != "flush"] == ["w0", "w1", "w2", "w3"]


def test_a_forked_child_gets_a_fresh_tracker_lock(tmp_path: Path) -> None:
    """A DataLoader worker may be forked while the sampler holds the tracker's lock: the
    child's lock is a fresh one, so its stop() at exit does not wait for a thread it lacks."""
    import os

    tracker = make_tracker(tmp_path, output_methods=[])
    tracker.start()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another thread holds the lock across the fork, as the sampler might
        with tracker._lock:
            held.set()
            release.wait(5.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5.0)
    pid = os.fork()
    if pid == 0:  # the child: the holder does not exist here
        ok = tracker._lock.acquire(timeout=1.0)
        os._exit(0 if ok else 1)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    tracker.stop()
    assert os.WEXITSTATUS(status) == 0
