"""The benchmarks run end to end in their quick mode, so that they never rot.

``python benchmarks/run.py --quick`` runs every section (core, frameworks, trace replay) with tiny
sizes in fresh processes. The figures of a quick pass are not meaningful; what is checked is that
every benchmark still runs against the current package and reports ours beside CodeCarbon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN = REPO_ROOT / "benchmarks" / "run.py"
GPU_VALIDATION = REPO_ROOT / "benchmarks" / "gpu_validation.py"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECARBON_")}
    env["HOME"] = str(home)
    env.setdefault("KERAS_BACKEND", "torch")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict]:
    work = tmp_path_factory.mktemp("bench")
    out = work / "results.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out)],
        cwd=work,
        env=_env(work),
        check=False,
        capture_output=True,
        text=True,
        timeout=170,
    )
    data = json.loads(out.read_text()) if out.exists() else {}
    return proc, data


@pytest.mark.timeout(200)
def test_quick_run_prints_one_table_with_every_section(quick_run) -> None:
    proc, data = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "codecarbon_callbacks" in proc.stdout and "CodeCarbon 3.3.2" in proc.stdout
    sections = {row["section"] for row in data["rows"]}
    assert {"core", "gpu:replay"} <= sections
    assert {"train:lightning", "train:transformers", "train:keras"} <= sections
    failed = [row for row in data["rows"] if row["ours"] == "failed"]
    assert not failed, failed


@pytest.mark.timeout(200)
def test_quick_run_measures_both_tools(quick_run) -> None:
    _, data = quick_run
    for tool in ("ours", "codecarbon"):
        runs = data["core"]["lifecycle"][tool]
        assert runs and all(
            r["import_s"] > 0 and r["construct_start_s"] > 0 and r["stop_s"] >= 0 for r in runs
        )
        edges = data["core"]["edges"][tool]
        assert edges["edge_median_s"] > 0 and edges["n_memory"] > 0
        assert data["core"]["sampler"][tool]["wall_s"] > 1.0
    # the import row checks DESIGN.md's rule on the modules it may load
    heavy_row = next(r for r in data["rows"] if r["figure"].startswith("modules DESIGN.md forbids"))
    assert heavy_row["ours"] == "none", heavy_row
    # each framework ran our callback and CodeCarbon's, alternating with no callback
    for framework in ("lightning", "transformers", "keras"):
        results = data["frameworks"][framework]["results"]
        assert set(results) == {"none", "ours", "codecarbon"}, data["frameworks"][framework].get(
            "unavailable"
        )
        ours = results["ours"][0]
        assert ours["hook_s"] > 0 and ours["wall_s"] > ours["hook_s"]


@pytest.mark.timeout(200)
def test_quick_run_replays_the_h200_traces(quick_run) -> None:
    _, data = quick_run
    replay = data["replay"]
    assert replay["whole"]["method"] == "nvml_energy"
    assert replay["fallback_instant"]["method"] == "nvml_power"
    # windows that tile the run sum to the run (the meter's invariant, seen through the replay)
    assert abs(replay["whole"]["tiling_sum_minus_total_j_max"]) < 1e-6
    assert replay["jitter_steady"]["windows"] > 0


def test_gpu_validation_exits_cleanly_without_a_gpu(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, even on a machine that has one
    proc = subprocess.run(
        [sys.executable, str(GPU_VALIDATION)],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no GPU validation on this machine" in proc.stdout and "nothing measured" in proc.stdout


@pytest.mark.timeout(200)
def test_gpu_validation_runs_end_to_end_on_the_fake_nvml(tmp_path: Path) -> None:
    """The GPU script's whole path (Lightning run, trackers, analysis, table) on CPU."""
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(GPU_VALIDATION),
            "--fake-nvml",
            "--steady-epochs",
            "5",
            "--alt-epochs",
            "2",
            "--epoch-s",
            "0.1",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAKE NVML" in proc.stdout
    result = json.loads(out.read_text())
    assert result["jitter"]["epochs"] == 2  # 5 steady epochs, the first 3 left out as warm-up
    assert result["agreement"]["ours_total_j"] > 0 and result["agreement"]["independent_j"] > 0
    assert set(result["edge_hooks"]) == {"on_train_epoch_start", "on_train_epoch_end"}
    assert "fallback_error" not in result, result.get("fallback_error")
    assert result["fallback"]["instant_alternating"]["rms_percent"] is not None
    assert set(result["concurrency"]["by_threads"]) == {"1", "2", "4", "8"}
