"""``report`` and ``resend`` find the CSV rows a run could not write to its folder at stop,
kept in a fallback file under the user's cache folder."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import pytest
from cli.conftest import CPU_W, GPU_W, RAM_W, run_cli, write_run
from codecarbon_callbacks_core.output.file import fallback_files, read_emissions
from core.constant_power import components


def _run_with_folder_gone_at_stop(output_dir: Path) -> str:
    """A run whose folder is replaced by a file before stop (a fault that holds even for root),
    then put back: its rows went to the fallback file."""
    from codecarbon_callbacks import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_dir=str(output_dir),
        project_name="fallback-test",
        components=components(cpu_w=CPU_W, gpu_w=GPU_W, ram_w=RAM_W),
    )
    tracker.start()
    window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    time.sleep(0.03)
    aside = output_dir.with_name(output_dir.name + ".aside")
    output_dir.rename(aside)
    output_dir.write_text("not a folder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker.close_window(window)
        tracker.stop()
    output_dir.unlink()
    aside.rename(output_dir)
    return tracker.run_id


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_report_shows_the_fallback_rows_and_resend_writes_them_back(
    tmp_path: Path, cache: Path
) -> None:
    output = tmp_path / "runs"
    first = write_run(output, epochs=1)
    second = _run_with_folder_gone_at_stop(output)
    fallbacks = fallback_files(output)
    assert [p.name for p in fallbacks] == ["emissions.csv", "emissions_windows.csv"]
    assert list(read_emissions(output / "emissions.csv")["run_id"]) == [first]
    env = {"XDG_CACHE_HOME": str(cache)}

    result = run_cli("report", str(output), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["fallback_files"] == [str(p) for p in fallbacks]
    assert [r["run_id"] for r in payload["runs"]] == [first, second]
    assert {e["run_id"] for e in payload["epochs"]} == {first, second}
    text = run_cli("report", str(output), cwd=tmp_path, env=env)
    assert text.returncode == 0, text.stderr
    assert f"{fallbacks[0]} [fallback file]" in text.stdout
    assert "Rows from fallback files" in text.stdout and second[:8] in text.stdout

    kept = run_cli("resend", str(output), "--keep-fallback", cwd=tmp_path, env=env)
    assert kept.returncode == 0, kept.stderr
    assert str(fallbacks[0]) in kept.stdout and fallback_files(output) == fallbacks

    resent = run_cli("resend", str(output), cwd=tmp_path, env=env)
    assert resent.returncode == 0, resent.stderr
    assert f"Wrote back 1 CSV row(s) to {output / 'emissions.csv'}" in resent.stdout
    assert fallback_files(output) == []
    assert list(read_emissions(output / "emissions.csv")["run_id"]) == [first, second]
    windows = read_emissions(output / "emissions_windows.csv")
    assert set(windows["run_id"]) == {first, second}
    again = run_cli("report", str(output), "--json", cwd=tmp_path, env=env)
    assert json.loads(again.stdout)["fallback_files"] == []
    assert [r["run_id"] for r in json.loads(again.stdout)["runs"]] == [first, second]


def test_a_deleted_folder_is_reported_from_its_fallback_and_resend_recreates_it(
    tmp_path: Path, cache: Path
) -> None:
    output = tmp_path / "runs"
    output.mkdir()
    run_id = _run_with_folder_gone_at_stop(output)
    shutil.rmtree(output)
    env = {"XDG_CACHE_HOME": str(cache)}
    result = run_cli("report", str(output), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert [r["run_id"] for r in json.loads(result.stdout)["runs"]] == [run_id]

    output.write_text("still not a folder")  # the fault holds: the rows stay where they are
    blocked = run_cli("resend", str(output), cwd=tmp_path, env=env)
    assert blocked.returncode == 1
    assert "stay in" in blocked.stderr and len(fallback_files(output)) == 2
    output.unlink()

    resent = run_cli("resend", str(output), cwd=tmp_path, env=env)
    assert resent.returncode == 0, resent.stderr
    assert list(read_emissions(output / "emissions.csv")["run_id"]) == [run_id]
    assert fallback_files(output) == []
