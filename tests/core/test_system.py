"""Cheap machine readings agree with psutil's."""

from __future__ import annotations

import psutil
import pytest
from codecarbon_callbacks_core.system import (
    cpu_busy_total_s,
    cpu_times,
    logical_cpu_count,
    total_ram_bytes,
)


def test_cpu_times_agree_with_psutil() -> None:
    ours, theirs = cpu_times(), psutil.cpu_times()
    assert ours.user == pytest.approx(theirs.user, abs=1.0)
    assert ours.idle == pytest.approx(theirs.idle, abs=5.0)
    assert ours.total_s == pytest.approx(
        sum(theirs) - getattr(theirs, "guest", 0) - getattr(theirs, "guest_nice", 0), abs=5.0
    )
    assert 0 < ours.busy_s < ours.total_s
    later = cpu_times()
    assert later.total_s >= ours.total_s  # fresh on each call (pread of a kept descriptor)


def test_busy_and_total_in_one_read_are_cpu_times_figures() -> None:
    before = cpu_times()
    busy, total = cpu_busy_total_s()
    after = cpu_times()
    # summed in ticks, then divided (cpu_times divides each): the last digit may differ
    assert before.busy_s - 1e-6 <= busy <= after.busy_s + 1e-6
    assert before.total_s - 1e-6 <= total <= after.total_s + 1e-6
    assert 0 < busy < total


def test_busy_and_total_without_proc_stat_come_from_cpu_times(monkeypatch) -> None:
    import codecarbon_callbacks_core.system as system

    monkeypatch.setattr(system, "_read_proc_stat", lambda: None)  # no /proc: psutil's figures
    busy, total = cpu_busy_total_s()
    times = psutil.cpu_times()
    assert total == pytest.approx(sum(times), rel=0.01)
    assert 0 < busy < total
    monkeypatch.setattr(system, "_read_proc_stat", lambda: b"cpu  bad line\n")
    assert cpu_busy_total_s() == (0.0, 0.0)  # as cpu_times: an unreadable line counts nothing


def test_ram_and_cpu_count_agree_with_psutil() -> None:
    assert total_ram_bytes() == pytest.approx(psutil.virtual_memory().total, rel=0.01)
    assert logical_cpu_count() == psutil.cpu_count()


def test_start_and_edges_do_not_import_psutil(tmp_path) -> None:
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from codecarbon_callbacks import OfflineEmissionsTracker\n"
        f"t = OfflineEmissionsTracker(country_iso_code='FRA', output_dir={str(tmp_path)!r})\n"
        "t.start()\n"
        "t.close_window(t.open_window('epoch'))\n"
        "print(json.dumps('psutil' in sys.modules))\n"
        "t.stop()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[0]) is False


def test_memory_readings_agree_with_psutil() -> None:
    from codecarbon_callbacks_core.system import memory_used_bytes, process_rss_bytes

    used, total = memory_used_bytes()
    vm = psutil.virtual_memory()
    assert total == vm.total
    assert used == pytest.approx(vm.total - vm.available, rel=0.05)
    assert process_rss_bytes() == pytest.approx(psutil.Process().memory_info().rss, rel=0.05)
