"""CSV output: columns, CodeCarbon's file, backups, concurrent writers, fsync, read_emissions."""

from __future__ import annotations

import csv
import multiprocessing
import os
import shutil
import threading
import time
import warnings
from pathlib import Path

import pytest
from codecarbon_callbacks_core.output.file import FileOutput
from codecarbon_callbacks_core.records import (
    CODECARBON_COLUMNS,
    RUN_CSV_COLUMNS,
    WINDOW_CSV_COLUMNS,
)

from codecarbon_callbacks import EmissionsData, WindowRecord, read_emissions


def record(run_id: str = "r1", emissions: float = 1e-3, **kw) -> EmissionsData:
    kw.setdefault("project_name", "p")
    return EmissionsData(
        run_id=run_id,
        emissions=emissions,
        energy_consumed=0.01,
        metadata={"task": {"family": "x"}, "n": 1},
        **kw,
    )


def header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_codecarbon_columns_first_then_ours(tmp_path: Path) -> None:
    import codecarbon.output_methods.emissions_data as cc

    # the CodeCarbon 3.3.2 EmissionsData fields are exactly our first columns, in order
    assert tuple(cc.EmissionsData.__dataclass_fields__) == CODECARBON_COLUMNS
    out = FileOutput("emissions.csv", tmp_path)
    out.out(record(), record())
    assert tuple(header(tmp_path / "emissions.csv")) == RUN_CSV_COLUMNS
    frame = read_emissions(tmp_path / "emissions.csv")
    assert frame.loc[0, "metadata"] == {"task": {"family": "x"}, "n": 1}
    assert frame.loc[0, "emissions"] == pytest.approx(1e-3)


def test_appends_to_a_codecarbon_file_in_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CODECARBON_COLUMNS)
        writer.writerow(["2024-01-01T00:00:00"] + ["x"] * (len(CODECARBON_COLUMNS) - 1))
    FileOutput("emissions.csv", tmp_path).out(record("ours"), record("ours"))
    assert tuple(header(path)) == CODECARBON_COLUMNS
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_id"] for r in rows] == ["x", "ours"]
    assert list(tmp_path.glob("*.bak")) == []


def test_other_header_is_backed_up_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    path.write_text("a,b\n1,2\n")
    FileOutput("emissions.csv", tmp_path).out(record(), record())
    backups = list(tmp_path.glob("emissions.csv.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == "a,b\n1,2\n"
    assert tuple(header(path)) == RUN_CSV_COLUMNS


def test_windows_file(tmp_path: Path) -> None:
    out = FileOutput("emissions.csv", tmp_path)
    out.window_out(
        WindowRecord(
            run_id="r",
            kind="epoch",
            epoch=3,
            phase="train",
            name="epoch 3",
            start_timestamp="2026-01-01T00:00:00+00:00",
            end_timestamp="2026-01-01T00:00:01+00:00",
        )
    )
    assert out.flush_windows()
    assert tuple(header(tmp_path / "emissions_windows.csv")) == WINDOW_CSV_COLUMNS
    frame = read_emissions(tmp_path / "emissions_windows.csv")
    assert frame.loc[0, "epoch"] == 3
    assert (frame.loc[0, "end_timestamp"] - frame.loc[0, "start_timestamp"]).total_seconds() == 1


def _codecarbon_file_with_our_row(tmp_path: Path) -> Path:
    """CodeCarbon's naive local timestamp, then one of our rows (UTC, with its offset)."""
    path = tmp_path / "emissions.csv"
    row = {c: "" for c in CODECARBON_COLUMNS}
    row.update(timestamp="2025-01-15T09:30:00", run_id="cc", energy_consumed="0.001")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CODECARBON_COLUMNS)
        writer.writeheader()
        writer.writerow(row)
    ours = record("ours", timestamp="2025-07-01T12:00:00.250000+00:00")
    FileOutput("emissions.csv", tmp_path).out(ours, ours)
    return path


def test_read_emissions_leaves_zone_less_timestamps_naive(tmp_path: Path) -> None:
    """CodeCarbon writes local time without a zone: it is not stamped UTC (off by the offset)."""
    import pandas as pd

    frame = read_emissions(_codecarbon_file_with_our_row(tmp_path))
    cc, ours = frame["timestamp"]
    assert cc == pd.Timestamp("2025-01-15 09:30:00") and cc.tzinfo is None
    assert ours == pd.Timestamp("2025-07-01 12:00:00.25", tz="UTC")  # ours keep their zone
    # a file of zone-less timestamps only gives a naive datetime column
    only_cc = tmp_path / "cc"
    only_cc.mkdir()
    (only_cc / "emissions.csv").write_text("timestamp,run_id\n2025-01-15T09:30:00,cc\n,empty\n")
    times = read_emissions(only_cc / "emissions.csv")["timestamp"]
    assert str(times.dtype).startswith("datetime64") and times.dt.tz is None
    assert times[0] == pd.Timestamp("2025-01-15 09:30:00") and pd.isna(times[1])


def test_read_emissions_tz_localizes_naive_and_converts_zoned(tmp_path: Path) -> None:
    import pandas as pd

    path = _codecarbon_file_with_our_row(tmp_path)
    paris = read_emissions(path, tz="Europe/Paris")["timestamp"]
    assert str(paris.dt.tz) == "Europe/Paris"
    cc, ours = paris
    # 09:30 in Paris in January is 08:30 UTC; ours stays the same instant, shown in Paris time
    assert cc == pd.Timestamp("2025-01-15 08:30:00", tz="UTC")
    assert ours == pd.Timestamp("2025-07-01 12:00:00.25", tz="UTC") and ours.hour == 14
    new_york = read_emissions(path, tz="America/New_York")["timestamp"]
    assert new_york[0] == pd.Timestamp("2025-01-15 14:30:00", tz="UTC")
    assert read_emissions(path, tz="local")["timestamp"].dt.tz is not None
    with pytest.raises(ValueError, match="tz must be a time zone"):
        read_emissions(path, tz="Nowhere/Land")


def test_our_own_timestamps_read_back_in_utc(tmp_path: Path) -> None:
    import pandas as pd

    out = FileOutput("emissions.csv", tmp_path)
    out.out(record(timestamp="2025-07-01T12:00:00+00:00"), record())
    times = read_emissions(tmp_path / "emissions.csv")["timestamp"]
    assert str(times.dt.tz) == "UTC" and times[0] == pd.Timestamp("2025-07-01 12:00", tz="UTC")


def test_update_mode_replaces_row(tmp_path: Path) -> None:
    out = FileOutput("emissions.csv", tmp_path, on_csv_write="update")
    out.out(record("a", 1.0), record())
    out.out(record("b", 2.0), record())
    out.out(record("a", 3.0), record())
    frame = read_emissions(tmp_path / "emissions.csv")
    assert dict(zip(frame["run_id"], frame["emissions"])) == {"a": 3.0, "b": 2.0}


def test_every_row_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    out = FileOutput("emissions.csv", tmp_path)
    out.out(record(), record())
    out.out(record(), record())
    out.window_out(WindowRecord(run_id="r"))
    out.exit()
    assert len(calls) >= 3


def _writer(directory: str, worker: int, rows: int) -> None:
    out = FileOutput("emissions.csv", directory)
    for i in range(rows):
        # a long metadata value makes interleaving likely if writes were not locked
        big = record(f"w{worker}-{i}")
        big.metadata = {"pad": "y" * 5000}
        out.out(big, big)


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    path = tmp_path / "emissions.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 160
    assert len({r["run_id"] for r in rows}) == 160
    assert all(len(r) == len(RUN_CSV_COLUMNS) and None not in r for r in rows)
    assert header(path) == list(RUN_CSV_COLUMNS)


def test_the_lock_is_on_the_data_file_and_no_lock_file_is_left(tmp_path: Path) -> None:
    """Appends, an update, a header backup and window rows leave reports only in the folder;
    a writer waits while another process's lock on the data file itself is held."""
    import fcntl

    (tmp_path / "emissions.csv").write_text("other,header\n1,2\n")  # backed up on first write
    out = FileOutput("emissions.csv", tmp_path, on_csv_write="update")
    out.out(record("a"), record("a"))
    out.out(record("a", emissions=2.0), record("a"))
    out.window_out(WindowRecord(run_id="a"))
    out.exit()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.endswith(".lock") or n.endswith(".tmp")], names
    assert "emissions.csv" in names and "emissions_windows.csv" in names
    assert any(n.endswith(".bak") for n in names)

    path = tmp_path / "emissions.csv"
    held = os.open(path, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    appender = FileOutput("emissions.csv", tmp_path)
    done = threading.Event()

    def write() -> None:
        appender.out(record("b"), record("b"))
        appender.exit()
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert not done.wait(0.5)  # blocked on the lock of emissions.csv itself
        assert [r["run_id"] for r in csv.DictReader(open(path, newline=""))] == ["a"]
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
    thread.join(timeout=30)
    assert done.is_set()
    assert [r["run_id"] for r in csv.DictReader(open(path, newline=""))] == ["a", "b"]
    assert not list(tmp_path.glob("*.lock"))


def test_a_writer_that_waited_while_the_file_was_replaced_writes_to_the_new_file(
    tmp_path: Path,
) -> None:
    import fcntl

    from codecarbon_callbacks_core.output.csv_file import CsvFile

    path = tmp_path / "emissions.csv"
    FileOutput("emissions.csv", tmp_path).out(record("a"), record("a"))
    FileOutput("emissions.csv", tmp_path).exit()
    held = os.open(path, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    target = CsvFile(path, RUN_CSV_COLUMNS)
    thread = threading.Thread(target=target.append_rows, args=([record("b")],))
    thread.start()
    time.sleep(0.3)
    # the holder replaces the file (as an update does) before letting go of the old one's lock
    tmp = tmp_path / "emissions.csv.new"
    shutil.copyfile(path, tmp)
    os.replace(tmp, path)
    fcntl.flock(held, fcntl.LOCK_UN)
    os.close(held)
    thread.join(timeout=30)
    assert [r["run_id"] for r in csv.DictReader(open(path, newline=""))] == ["a", "b"]


def test_rows_are_written_off_the_calling_thread_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Window rows and run rows take one path: the background writer, in the order given."""
    import threading

    from codecarbon_callbacks_core.output.file import CsvFile

    writes: list[tuple[str, str, int]] = []
    real = CsvFile.append_rows
    monkeypatch.setattr(
        CsvFile,
        "append_rows",
        lambda self, rows: (
            writes.append((threading.current_thread().name, self.path.name, len(rows))),
            real(self, rows),
        ),
    )
    out = FileOutput("emissions.csv", tmp_path)
    for epoch in range(5):
        out.window_out(WindowRecord(run_id="r", epoch=epoch, kind="epoch"))
    out.out(record("r"), record("r"))  # returns once the run row, after its windows, is on disk
    assert {name for name, _, _ in writes} == {"codecarbon-callbacks-csv"}
    assert [f for _, f, _ in writes][-1] == "emissions.csv"
    assert sum(n for _, f, n in writes if f == "emissions_windows.csv") == 5
    assert list(read_emissions(tmp_path / "emissions_windows.csv")["epoch"]) == [0, 1, 2, 3, 4]
    assert list(read_emissions(tmp_path / "emissions.csv")["run_id"]) == ["r"]
    out.exit()


def test_queued_window_rows_survive_process_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "from codecarbon_callbacks_core.output.file import FileOutput\n"
        "from codecarbon_callbacks import WindowRecord\n"
        f"out = FileOutput('emissions.csv', {str(tmp_path)!r})\n"
        "for i in range(50): out.window_out(WindowRecord(run_id='r', epoch=i))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert len(read_emissions(tmp_path / "emissions_windows.csv")) == 50


# -- faults: rows kept, written in order once possible, one warning per episode --------------------


def make_tracker(output_dir: Path, **kwargs):
    from codecarbon_callbacks_core.tracker import OfflineEmissionsTracker
    from core.constant_power import components

    params = dict(
        country_iso_code="FRA",
        output_dir=str(output_dir),
        components=components(),
        force_carbon_intensity_g_co2e_kwh=100.0,
        measure_power_secs=60,
    )
    params.update(kwargs)
    return OfflineEmissionsTracker(**params)


def package_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning

    return [str(w.message) for w in caught if issubclass(w.category, CodeCarbonCallbacksWarning)]


def block_folder(folder: Path) -> None:
    """A real fault that holds even for root: the folder is gone and a file takes its name, so
    it can be neither written nor created."""
    shutil.rmtree(folder)
    folder.write_text("not a folder")


def unblock_folder(folder: Path) -> None:
    folder.unlink()
    folder.mkdir()


def window(epoch: int, run_id: str = "r", **kw) -> WindowRecord:
    kw.setdefault("name", f"epoch {epoch}")
    return WindowRecord(run_id=run_id, kind="epoch", epoch=epoch, phase="train", **kw)


def test_folder_deleted_mid_run_is_created_again_and_no_later_row_is_lost(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    tracker = make_tracker(out_dir)
    tracker.start()
    win = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    for epoch in range(1, 5):
        _, win = tracker.switch_window(win, "epoch", f"epoch {epoch}", epoch=epoch, phase="train")
    tracker.flush()
    shutil.rmtree(out_dir)  # the user deletes the folder mid-run...
    for epoch in range(5, 10):
        _, win = tracker.switch_window(win, "epoch", f"epoch {epoch}", epoch=epoch, phase="train")
    tracker.flush()
    out_dir.mkdir(exist_ok=True)  # ...and creates it again later
    tracker.close_window(win)
    tracker.stop()
    windows = read_emissions(out_dir / "emissions_windows.csv")
    epochs = [e for e in windows["epoch"] if e is not pd_na()]
    assert epochs == [4, 5, 6, 7, 8, 9]  # every epoch closed after the deletion, once, in order
    assert list(windows["kind"]) == ["epoch"] * 5 + ["flush", "epoch"]
    runs = read_emissions(out_dir / "emissions.csv")
    assert list(runs["status"]) == ["running", "completed"]  # the second flush row and the run row


def pd_na():
    import pandas as pd

    return pd.NA


def test_rows_are_kept_through_a_fault_and_written_in_order_with_one_warning(
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "out"
    tracker = make_tracker(out_dir)
    tracker.start()
    win = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    _, win = tracker.switch_window(win, "epoch", "epoch 1", epoch=1, phase="train")
    tracker.flush()
    block_folder(out_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(2, 22):  # 20 rows that cannot be written
            _, win = tracker.switch_window(
                win, "epoch", f"epoch {epoch}", epoch=epoch, phase="train"
            )
        tracker.flush()  # a run row too, and a flush window; flush() returns while the fault holds
        csv_output = next(o for o in tracker._outputs.outputs if isinstance(o, FileOutput))
        assert csv_output.backlog == 22
        messages = package_warnings(caught)
        assert (
            len(messages) == 1
            and "could not write" in messages[0]
            and "kept in memory" in messages[0]
        )
        unblock_folder(out_dir)  # space freed, folder back: the next write catches up
        tracker.close_window(win)
        tracker.stop()
    assert len(package_warnings(caught)) == 1  # one warning for the whole episode
    windows = read_emissions(out_dir / "emissions_windows.csv")
    assert [e for e in windows["epoch"] if e is not pd_na()] == list(range(1, 22))
    assert list(windows["kind"]) == ["epoch"] * 20 + ["flush", "epoch"]
    runs = read_emissions(out_dir / "emissions.csv")
    assert list(runs["status"]) == ["running", "completed"]
    assert csv_output.backlog == 0


def test_read_only_folder_keeps_rows_until_writable(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out = FileOutput("emissions.csv", out_dir)
    out.window_out(window(0))
    assert out.flush_windows()
    os.chmod(out_dir / "emissions_windows.csv", 0o444)
    os.chmod(out_dir, 0o555)
    try:
        probe = out_dir / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:  # root ignores permission bits; the other fault tests (a file in place of the
            probe.unlink()  # folder, a file size limit) hold for root too
            pytest.skip(
                "this user (root) writes through chmod: a read-only folder is no fault here"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for epoch in range(1, 6):
                out.window_out(window(epoch))
            assert not out.flush_windows(5.0)
            assert len(package_warnings(caught)) == 1
    finally:
        os.chmod(out_dir, 0o755)
        os.chmod(out_dir / "emissions_windows.csv", 0o644)
    assert out.flush_windows(5.0)
    assert list(read_emissions(out_dir / "emissions_windows.csv")["epoch"]) == [0, 1, 2, 3, 4, 5]
    out.exit()


CUT_OFF_SNIPPET = r"""
import json, os, resource, signal, sys
from codecarbon_callbacks_core.output.file import FileOutput
from codecarbon_callbacks_core.records import WindowRecord

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
out = FileOutput("emissions.csv", sys.argv[1])
path = out.windows.path
for i in range(3):
    out.window_out(WindowRecord(run_id="r", epoch=i))
assert out.flush_windows()
size = path.stat().st_size
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1500, hard))  # room for a part of the batch
for i in range(3, 23):
    out.window_out(WindowRecord(run_id="r", epoch=i))
first = out.flush_windows(5.0)
during = path.read_bytes()
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # the limit goes: the rows follow
second = out.flush_windows(5.0)
out.exit()
print("RESULT " + json.dumps({"first": first, "second": second, "size": size,
                              "during": during.decode(), "after": path.read_text()}))
"""


def test_a_write_cut_off_midway_leaves_no_fragment_and_no_duplicate(tmp_path: Path) -> None:
    """A real partial write: a file size limit (RLIMIT_FSIZE) lets part of a batch through."""
    pytest.importorskip("resource", reason="RLIMIT_FSIZE is a POSIX limit")
    import json
    import subprocess
    import sys

    core = Path(__file__).resolve().parents[3] / "core"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(core), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", CUT_OFF_SNIPPET, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(line[len("RESULT ") :])
    assert result["first"] is False and result["second"] is True
    # while the limit held, the file was truncated back to its last complete row
    assert len(result["during"].encode()) == result["size"] and result["during"].endswith("\n")
    rows = list(csv.DictReader(result["after"].splitlines()))
    assert [int(r["epoch"]) for r in rows] == list(range(23))
    assert "could not write" in proc.stderr  # the episode's warning


def test_backlog_bound_drops_the_oldest_says_so_once_and_counts_them(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    # rows written on the calling thread: which rows are in the backlog is deterministic
    out = FileOutput("emissions.csv", out_dir, max_backlog_rows=5, background_windows=False)
    block_folder(out_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(8):
            out.window_out(window(epoch))
        assert not out.flush_windows(5.0)
        messages = package_warnings(caught)
    assert out.backlog == 5
    assert len(messages) == 2  # the fault, and the bound: once each, not once per row
    assert sum("dropped" in m for m in messages) == 1
    unblock_folder(out_dir)
    assert out.flush_windows(5.0)
    frame = read_emissions(out_dir / "emissions_windows.csv")
    assert list(frame["epoch"]) == [3, 4, 5, 6, 7]  # the 3 oldest were dropped...
    assert frame.loc[0, "metadata"]["csv_rows_dropped"] == 3  # ...and the next row says so
    assert all("csv_rows_dropped" not in m for m in frame["metadata"][1:])
    out.exit()


def test_a_fault_that_holds_at_stop_sends_the_rows_to_the_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    threads_before = {t for t in threading.enumerate() if t.name == "codecarbon-callbacks-csv"}
    out_dir = tmp_path / "out"
    tracker = make_tracker(out_dir, project_name="=cmd")
    tracker.start()
    win = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    block_folder(out_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, win = tracker.switch_window(win, "epoch", "epoch 1", epoch=1, phase="train")
        t0 = time.monotonic()
        tracker.stop()
        stop_s = time.monotonic() - t0
    messages = package_warnings(caught)
    fallback = [m for m in messages if "could not be written" in m]
    assert len(fallback) == 2  # the window file's rows and the run file's, each named
    runs_file = next(cache.glob("codecarbon-callbacks/unwritten/*/emissions.csv"))
    windows_file = runs_file.with_name("emissions_windows.csv")
    assert any(str(runs_file) in m for m in fallback) and any(
        str(windows_file) in m for m in fallback
    )
    runs = read_emissions(runs_file)
    assert list(runs["run_id"]) == [tracker.run_id] and list(runs["project_name"]) == ["=cmd"]
    assert list(read_emissions(windows_file)["epoch"]) == [0, 1]
    assert stop_s < 2.0  # a fault gets one immediate retry at stop, not the whole timeout
    assert {
        t for t in threading.enumerate() if t.name == "codecarbon-callbacks-csv"
    } <= threads_before


def test_appending_starts_on_a_fresh_line_whatever_the_file_ends_with(tmp_path: Path) -> None:
    # a hand-edited CodeCarbon file, our windows file, our run file: each without its last newline
    runs = tmp_path / "emissions.csv"
    hand = {c: "" for c in CODECARBON_COLUMNS}
    hand.update(timestamp="2025-01-15T09:30:00", run_id="by-hand", energy_consumed="0.5")
    runs.write_text(_header(CODECARBON_COLUMNS) + ",".join(hand[c] for c in CODECARBON_COLUMNS))
    windows = tmp_path / "emissions_windows.csv"
    windows.write_text(_header(WINDOW_CSV_COLUMNS).rstrip("\n"))  # a header, not even its newline
    out = FileOutput("emissions.csv", tmp_path)
    out.window_out(window(7))
    out.out(record("ours"), record("ours"))
    out.exit()
    with open(runs, newline="") as f:
        rows = list(csv.reader(f))
    assert [len(r) for r in rows] == [len(CODECARBON_COLUMNS)] * 3
    assert [r[2] for r in rows[1:]] == ["by-hand", "ours"]
    assert read_emissions(runs)["energy_consumed"].tolist()[0] == 0.5
    assert list(read_emissions(windows)["epoch"]) == [7]
    # our own file without its last newline (another tool appended a row)
    path = tmp_path / "own"
    out = FileOutput("emissions.csv", path)
    out.out(record("a"), record("a"))
    own = path / "emissions.csv"
    own.write_text(own.read_text().rstrip("\n"))
    out.out(record("b"), record("b"))
    out.exit()
    assert list(read_emissions(own)["run_id"]) == ["a", "b"]


def _header(columns) -> str:
    return ",".join(columns) + "\n"


def test_rows_are_written_in_batches_one_fsync_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "out"
    out = FileOutput("emissions.csv", out_dir)
    out.window_out(window(0))
    assert out.flush_windows()
    block_folder(out_dir)
    for epoch in range(1, 1001):
        out.window_out(window(epoch))
    assert not out.flush_windows(5.0)
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    unblock_folder(out_dir)
    assert out.flush_windows(5.0)
    assert len(calls) <= 3  # the new file's header, then one batch: not one fsync per row
    assert list(read_emissions(out_dir / "emissions_windows.csv")["epoch"]) == list(range(1, 1001))
    out.exit()


def test_ten_thousand_windows_are_all_on_disk_when_stop_returns(tmp_path: Path) -> None:
    threads_before = {t for t in threading.enumerate() if t.name == "codecarbon-callbacks-csv"}
    tracker = make_tracker(tmp_path)
    tracker.start()
    win = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    for epoch in range(1, 10_000):
        _, win = tracker.switch_window(win, "epoch", "e", epoch=epoch, phase="train")
    tracker.close_window(win)
    tracker.stop()
    # counted from the bytes on disk, right after stop() returned
    with open(tmp_path / "emissions_windows.csv", newline="") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == list(range(10_000))
    assert len(read_emissions(tmp_path / "emissions.csv")) == 1
    # the writer thread of this tracker's output ended with stop()
    assert {
        t for t in threading.enumerate() if t.name == "codecarbon-callbacks-csv"
    } <= threads_before


# -- CSV injection (OWASP): a text cell that would start a formula gets a leading quote ------------

HOSTILE_TEXTS = [
    '=HYPERLINK("http://x","y")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-1",
    "\tx",
    "\rx",
    "'already quoted",
    "'=both",
    "''",
    "plain",
    "",
    "a=b",
    " =spaced",
]


def test_text_columns_come_from_the_record_types() -> None:
    from codecarbon_callbacks_core.output.file import TEXT_COLUMNS

    assert {
        "project_name",
        "run_id",
        "experiment_id",
        "country_name",
        "name",
        "phase",
        "status",
        "timestamp",
        "on_cloud",
    } <= TEXT_COLUMNS
    assert (
        not {"emissions", "duration", "cpu_count", "epoch", "longitude", "pue", "metadata"}
        & TEXT_COLUMNS
    )


@pytest.mark.parametrize("mode", ["append", "update"])
def test_formula_text_is_guarded_numbers_untouched_and_everything_round_trips(
    tmp_path: Path, mode: str
) -> None:
    out = FileOutput("emissions.csv", tmp_path, on_csv_write=mode)
    for i, text in enumerate(HOSTILE_TEXTS):
        row = record(
            f"run-{i}", emissions=-1.5, project_name=text, experiment_id=text, longitude=-3.25
        )
        out.out(row, row)
        out.window_out(window(i, run_id=f"run-{i}", name=text))
    if mode == "update":  # rewriting the file keeps every guard as it is (none added twice)
        again = record("run-0", emissions=-1.5, project_name=HOSTILE_TEXTS[0], longitude=-3.25)
        out.out(again, again)
    out.exit()
    with open(tmp_path / "emissions.csv", newline="") as f:
        raw = list(csv.DictReader(f))
    order = [f"run-{i}" for i in range(len(HOSTILE_TEXTS))]
    if mode == "update":  # CodeCarbon's rule: the updated row moves to the end
        order = order[1:] + order[:1]
    assert [cells["run_id"] for cells in raw] == order
    raw.sort(key=lambda cells: int(cells["run_id"].split("-")[1]))
    dangerous = ("=", "+", "-", "@", "\t", "\r")
    for cells in raw:  # what a spreadsheet opens: no cell of a text column starts a formula
        for column in ("project_name", "run_id", "experiment_id"):
            assert not cells[column].startswith(dangerous), cells[column]
        assert cells["emissions"] == "-1.5" and cells["longitude"] == "-3.25"  # numbers as they are
    assert raw[0]["project_name"] == "'" + HOSTILE_TEXTS[0] and raw[3]["project_name"] == "'-1"
    assert raw[6]["project_name"] == "''already quoted"
    runs = read_emissions(tmp_path / "emissions.csv").sort_values(
        "run_id", key=lambda ids: ids.str.split("-").str[1].astype(int)
    )
    assert list(runs["project_name"]) == HOSTILE_TEXTS
    assert list(runs["emissions"]) == [-1.5] * len(HOSTILE_TEXTS)
    windows = read_emissions(tmp_path / "emissions_windows.csv")
    assert list(windows["name"]) == HOSTILE_TEXTS


def test_codecarbon_file_gets_the_guard_too(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    path.write_text(_header(CODECARBON_COLUMNS))
    out = FileOutput("emissions.csv", tmp_path)
    out.out(record("cc", project_name="@SUM(1+1)"), record())
    out.exit()
    with open(path, newline="") as f:
        assert next(csv.DictReader(f))["project_name"] == "'@SUM(1+1)"
    assert read_emissions(path)["project_name"][0] == "@SUM(1+1)"


def test_an_idle_writer_thread_ends_and_starts_again_when_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output nobody closes leaves no thread behind for long."""
    from codecarbon_callbacks_core.output import file

    monkeypatch.setattr(file, "IDLE_THREAD_S", 0.2)
    out = FileOutput("emissions.csv", tmp_path)
    out.window_out(window(0))
    assert out.flush_windows()
    thread = out._writer._thread
    assert thread is not None
    thread.join(5.0)
    assert not thread.is_alive()
    out.window_out(window(1))
    assert out.flush_windows()
    assert list(read_emissions(tmp_path / "emissions_windows.csv")["epoch"]) == [0, 1]
    out.exit()


def test_a_text_that_utf8_cannot_encode_does_not_lose_its_row(tmp_path: Path) -> None:
    out = FileOutput("emissions.csv", tmp_path)
    out.out(record("a", project_name="bad\udcffname"), record())
    out.exit()
    assert list(read_emissions(tmp_path / "emissions.csv")["project_name"]) == ["bad?name"]


def test_a_fault_that_holds_at_interpreter_exit_sends_the_rows_to_the_cache_folder(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    out_dir = tmp_path / "out"
    code = (
        "import pathlib, shutil\n"
        "from codecarbon_callbacks_core.output.file import FileOutput\n"
        "from codecarbon_callbacks_core.records import WindowRecord\n"
        f"out = FileOutput('emissions.csv', {str(out_dir)!r})\n"
        f"shutil.rmtree({str(out_dir)!r}); pathlib.Path({str(out_dir)!r}).write_text('x')\n"
        "for i in range(5): out.window_out(WindowRecord(run_id='r', epoch=i))\n"
    )  # no exit(): the interpreter's exit writes the backlog, or here its fallback
    core = Path(__file__).resolve().parents[3] / "core"
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(core), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    fallback = list(
        (tmp_path / "cache").glob("codecarbon-callbacks/unwritten/*/emissions_windows.csv")
    )
    assert len(fallback) == 1 and str(fallback[0]) in proc.stderr
    assert list(read_emissions(fallback[0])["epoch"]) == [0, 1, 2, 3, 4]
