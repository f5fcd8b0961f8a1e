"""CSV output: columns, CodeCarbon's own file, backups, concurrent writers, fsync, read_emissions."""

from __future__ import annotations

import csv
import multiprocessing
import os
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
    return EmissionsData(run_id=run_id, emissions=emissions, project_name="p", energy_consumed=0.01,
                         metadata={"task": {"family": "x"}, "n": 1}, **kw)


def header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_codecarbon_columns_first_then_ours(tmp_path: Path) -> None:
    import codecarbon.output_methods.emissions_data as cc

    # the CodeCarbon 3.3.2 EmissionsData fields are exactly our first columns, in order
    assert tuple(cc.EmissionsData.__dataclass_fields__) == CODECARBON_COLUMNS
    out = FileOutput(tmp_path)
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
    FileOutput(tmp_path).out(record("ours"), record("ours"))
    assert tuple(header(path)) == CODECARBON_COLUMNS
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_id"] for r in rows] == ["x", "ours"]
    assert list(tmp_path.glob("*.bak")) == []


def test_other_header_is_backed_up_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    path.write_text("a,b\n1,2\n")
    FileOutput(tmp_path).out(record(), record())
    backups = list(tmp_path.glob("emissions.csv.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == "a,b\n1,2\n"
    assert tuple(header(path)) == RUN_CSV_COLUMNS


def test_windows_file(tmp_path: Path) -> None:
    out = FileOutput(tmp_path)
    out.window_out(WindowRecord(run_id="r", kind="epoch", epoch=3, phase="train", name="epoch 3",
                                start_timestamp="2026-01-01T00:00:00+00:00", end_timestamp="2026-01-01T00:00:01+00:00"))
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
    FileOutput(tmp_path).out(ours, ours)
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

    out = FileOutput(tmp_path)
    out.out(record(timestamp="2025-07-01T12:00:00+00:00"), record())
    times = read_emissions(tmp_path / "emissions.csv")["timestamp"]
    assert str(times.dt.tz) == "UTC" and times[0] == pd.Timestamp("2025-07-01 12:00", tz="UTC")


def test_update_mode_replaces_row(tmp_path: Path) -> None:
    out = FileOutput(tmp_path, on_csv_write="update")
    out.out(record("a", 1.0), record())
    out.out(record("b", 2.0), record())
    out.out(record("a", 3.0), record())
    frame = read_emissions(tmp_path / "emissions.csv")
    assert dict(zip(frame["run_id"], frame["emissions"])) == {"a": 3.0, "b": 2.0}


def test_every_row_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    out = FileOutput(tmp_path)
    out.out(record(), record())
    out.out(record(), record())
    out.window_out(WindowRecord(run_id="r"))
    out.exit()
    assert len(calls) >= 3


def _writer(directory: str, worker: int, rows: int) -> None:
    out = FileOutput(directory)
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


def test_rows_are_written_off_the_calling_thread_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Window rows and run rows take one path: the background writer, in the order given."""
    import threading

    from codecarbon_callbacks_core.output.file import CsvFile

    writes: list[tuple[str, str, int]] = []
    real = CsvFile.append_rows
    monkeypatch.setattr(CsvFile, "append_rows", lambda self, rows: (
        writes.append((threading.current_thread().name, self.path.name, len(rows))), real(self, rows)))
    out = FileOutput(tmp_path)
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
        f"out = FileOutput({str(tmp_path)!r})\n"
        "for i in range(50): out.window_out(WindowRecord(run_id='r', epoch=i))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert len(read_emissions(tmp_path / "emissions_windows.csv")) == 50
