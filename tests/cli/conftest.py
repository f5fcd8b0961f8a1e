"""Fixtures of the CLI tests: run the command as a subprocess; real reports to read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from core.constant_power import components

#: the constant powers of the fake-free reports below (W); the tracker integrates them exactly
CPU_W, GPU_W, RAM_W = 50.0, 300.0, 5.0


def run_cli(
    *args: str,
    cwd: Path,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m codecarbon_callbacks ARGS`` (the entry point's module), captured."""
    return subprocess.run(
        [sys.executable, "-m", "codecarbon_callbacks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def write_run(output_dir: Path, *, epochs: int = 3, flush: bool = False, task: bool = False) -> str:
    """One run with tiling epoch/validation windows, written by the real tracker and CSV output.

    Components draw constant powers, so every window's energy is power x duration exactly.
    """
    from codecarbon_callbacks import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_dir=str(output_dir),
        project_name="cli-test",
        components=components(cpu_w=CPU_W, gpu_w=GPU_W, ram_w=RAM_W),
    )
    tracker.start()
    window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    for epoch in range(epochs):
        time.sleep(0.03)
        _, window = tracker.switch_window(
            window, "phase", f"validation {epoch}", epoch=epoch, phase="validation"
        )
        time.sleep(0.01)
        last = epoch == epochs - 1
        _, window = tracker.switch_window(
            window,
            "phase" if last else "epoch",
            "",
            epoch=None if last else epoch + 1,
            phase="other" if last else "train",
        )
        if flush and epoch == 0:
            tracker.flush()
    tracker.close_window(window)
    if task:
        tracker.start_task("evaluate")
        time.sleep(0.01)
        tracker.stop_task()
    tracker.stop()
    return tracker.run_id


@pytest.fixture
def reports_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two runs in one folder: the first flushed once, the second with a task."""
    output = tmp_path / "runs"
    first = write_run(output, epochs=3, flush=True)
    second = write_run(output, epochs=2, task=True)
    return output, [first, second]
