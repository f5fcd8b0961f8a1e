"""Real distributed runs (gloo on CPU, launched as subprocesses) with fake GPUs.

What the issue asks: exactly one run row and one training row per epoch (not per rank); each
rank measures only its own GPU, so GPU energy is the sum over ranks; each machine's CPU and RAM
are counted once (and two machines count them twice, once each); a run that dies still leaves
rank zero's record, marked as partial, and nobody hangs.
"""

from __future__ import annotations

import json

import pytest
from ddp_launch import GPU_POWER_W, GPU_UUIDS, check_launch, metadata, read

pytest.importorskip("torch")
J_PER_KWH = 3.6e6


def one_run(out):
    runs, windows = read(out)
    assert len(runs) == 1, runs[["run_id", "status"]]
    run = runs.iloc[0]
    assert set(windows["run_id"]) == {run["run_id"]}
    return run, windows


def check_sums(run) -> dict:
    """The combined record is the sum of the ranks' components, each counted once."""
    meta = metadata(run)
    components = meta["components"]
    for kind in ("cpu", "gpu", "ram"):
        assert run[f"{kind}_energy"] == pytest.approx(
            sum(c["energy_kwh"] for c in components if c["kind"] == kind), rel=1e-9, abs=1e-15
        )
    assert run["energy_consumed"] == pytest.approx(
        run["cpu_energy"] + run["gpu_energy"] + run["ram_energy"], rel=1e-9
    )
    return meta


def check_windows_tile(windows, run) -> None:
    """The windows chain from the run's start to its very end (the last closes at stop()).

    Their energy is the run's but for the few ms before the first window opens; there the meter
    may place a GPU's first 100-ms counter step (it learns the counter's phase only after the
    run's first snapshot), so up to one step (power x 0.1 s) per GPU, plus 1%, may be missing.
    """
    from datetime import datetime

    tiles = windows[windows["kind"].isin(("epoch", "phase"))]
    assert list(tiles["start_timestamp"])[1:] == list(tiles["end_timestamp"])[:-1]
    assert tiles.iloc[-1]["end_timestamp"] == run["timestamp"]
    start = datetime.fromisoformat(metadata(run)["run_start_timestamp"])
    assert (
        0
        <= (datetime.fromisoformat(tiles.iloc[0]["start_timestamp"]) - start).total_seconds()
        < 0.1
    )
    missing_j = (run["energy_consumed"] - tiles["energy_consumed"].sum()) * J_PER_KWH
    gpus = metadata(run)["distributed"]["per_gpu"]
    step_j = sum(GPU_POWER_W[GPU_UUIDS.index(g["uuid"])] * 0.1 for g in gpus)
    assert -1e-6 <= missing_j <= step_j + 0.01 * run["energy_consumed"] * J_PER_KWH, missing_j


def check_gpu(component: dict, duration_s: float) -> None:
    """A fake GPU of constant power: its energy is power x the run's duration, once."""
    power_w = GPU_POWER_W[GPU_UUIDS.index(component["uuid"])]
    assert component["energy_kwh"] * J_PER_KWH == pytest.approx(power_w * duration_s, rel=0.2)


def test_lightning_ddp_spawn_one_machine(ddp_spawn_run):
    run, windows = one_run(ddp_spawn_run)
    assert run["status"] == "completed"
    assert list(windows.query("phase == 'train'")["epoch"]) == [0, 1]
    assert list(windows.query("name == 'sanity check'")["phase"]) == ["validation"]
    assert list(windows.query("phase == 'validation' and kind == 'phase'")["epoch"].dropna()) == [
        0,
        1,
    ]
    meta = check_sums(run)
    info = meta["distributed"]
    assert info["world_size"] == 2 and info["num_machines"] == 1 and info["complete"]
    (machine,) = info["per_machine"]
    assert machine["ranks"] == [0, 1] and machine["host_measured_by"] == [0]
    # each rank measured its own GPU (bound by UUID), nothing else
    assert {(g["rank"], g["uuid"]) for g in info["per_gpu"]} == {
        (0, GPU_UUIDS[0]),
        (1, GPU_UUIDS[1]),
    }
    for gpu in info["per_gpu"]:
        check_gpu(gpu, run["duration"])
    assert run["gpu_count"] == 2 and run["gpu_model"] == "2 x NVIDIA H200"
    # the machine's CPU and RAM once, by local rank zero
    host = [c for c in meta["components"] if c["kind"] in ("cpu", "ram")]
    assert host and {c["rank"] for c in host} == {0}
    assert run["cpu_energy"] > 0 and run["ram_energy"] > 0
    # every window is combined too, and the windows tile the run to its end
    for _, window in windows.iterrows():
        assert metadata(window)["distributed"]["world_size"] == 2
    check_windows_tile(windows, run)


def test_hf_trainer_torchrun_one_machine(hf_torchrun_run):
    run, windows = one_run(hf_torchrun_run)
    assert run["status"] == "completed"
    assert list(windows.query("phase == 'train'")["epoch"]) == [0, 1]
    assert len(windows.query("phase == 'validation'")) == 2
    meta = check_sums(run)
    info = meta["distributed"]
    assert info["world_size"] == 2 and info["num_machines"] == 1
    # no CUDA device per rank: both ranks see both GPUs, each GPU is measured once (rank 0)
    assert sorted(g["uuid"] for g in info["per_gpu"]) == list(GPU_UUIDS)
    assert {g["rank"] for g in info["per_gpu"]} == {0}
    for gpu in info["per_gpu"]:
        check_gpu(gpu, run["duration"])
    assert {c["rank"] for c in meta["components"] if c["kind"] in ("cpu", "ram")} == {0}
    check_windows_tile(windows, run)


def test_two_machines_count_cpu_and_ram_once_each(two_machines_run):
    assert not (two_machines_run / "out-1" / "emissions.csv").exists()  # only global rank 0 writes
    run, windows = one_run(two_machines_run / "out-0")
    assert run["status"] == "completed"
    assert list(windows.query("phase == 'train'")["epoch"]) == [0, 1]
    meta = check_sums(run)
    info = meta["distributed"]
    assert info["world_size"] == 2 and info["num_machines"] == 2
    machines = {m["machine"]: m for m in info["per_machine"]}
    assert set(machines) == {"node-a", "node-b"}
    assert machines["node-a"]["host_measured_by"] == [0] and machines["node-b"][
        "host_measured_by"
    ] == [1]
    cpus = [c for c in meta["components"] if c["kind"] == "cpu"]
    rams = [c for c in meta["components"] if c["kind"] == "ram"]
    assert sorted(c["machine"] for c in cpus) == ["node-a", "node-b"]
    assert sorted(c["machine"] for c in rams) == ["node-a", "node-b"]
    # both "machines" are this one: each counts the same CPU and RAM, once
    a, b = machines["node-a"], machines["node-b"]
    assert a["ram_energy_kwh"] == pytest.approx(b["ram_energy_kwh"], rel=0.25)
    assert run["ram_energy"] == pytest.approx(a["ram_energy_kwh"] + b["ram_energy_kwh"], rel=1e-9)
    assert run["cpu_energy"] == pytest.approx(a["cpu_energy_kwh"] + b["cpu_energy_kwh"], rel=1e-9)
    assert run["cpu_count"] == a["cpu_count"] + b["cpu_count"]
    assert {(g["machine"], g["uuid"]) for g in info["per_gpu"]} == {
        ("node-a", GPU_UUIDS[0]),
        ("node-b", GPU_UUIDS[1]),
    }
    for gpu in info["per_gpu"]:
        check_gpu(gpu, run["duration"])
    check_windows_tile(windows, run)
    # the BoAmps report counts both machines' hardware
    report = json.loads(
        (two_machines_run / "out-0" / f"boamps_report_{run['run_id']}.json").read_text()
    )
    components = {c["componentType"]: c for c in report["infrastructure"]["components"]}
    assert components["cpu"]["nbComponent"] == run["cpu_count"] and components["cpu"]["share"] == 1
    assert components["gpu"]["nbComponent"] == 2 and components["ram"]["nbComponent"] == 2
    assert report["measures"][0]["powerConsumption"] == pytest.approx(run["energy_consumed"])


def test_a_dying_run_leaves_rank_zeros_partial_record_and_no_hang(failing_run):
    out, result = failing_run
    assert result.returncode != 0  # the launcher reports the failure (it did not hang: timeout)
    assert "training died on rank 0" in result.stderr
    run, windows = one_run(out)
    assert run["status"] == "failed"
    info = metadata(run)["distributed"]
    assert info["complete"] is False and "rank 0" in info["partial"]
    # epoch 0 ended normally: its windows were combined over both ranks
    epoch0 = windows.query("phase == 'train' and epoch == 0").iloc[0]
    assert epoch0["status"] == "completed"
    assert metadata(epoch0)["distributed"]["complete"] is True
    assert {g["rank"] for g in metadata(epoch0)["distributed"]["per_gpu"]} == {0}
    # the window open when training died: rank 0's own, failed
    last = windows.iloc[-1]
    assert last["status"] == "failed" and metadata(last)["distributed"]["complete"] is False


def test_when_another_rank_dies_rank_zero_still_writes_what_it_has(other_rank_dies_run):
    """torchrun terminates the surviving ranks (SIGTERM): rank 0 writes its partial run first."""
    out, result = other_rank_dies_run
    assert result.returncode != 0
    assert "training died on rank 1" in result.stderr
    run, windows = one_run(out)
    assert run["status"] in ("interrupted", "failed", "incomplete")
    info = metadata(run)["distributed"]
    assert info["complete"] is False
    epoch0 = windows.query("phase == 'train' and epoch == 0").iloc[0]
    assert metadata(epoch0)["distributed"]["complete"] is True  # combined before the failure
    assert windows.iloc[-1]["status"] != "completed"


def test_a_rank_terminated_by_its_launcher_writes_what_it_has(terminated_run):
    """Rank 0 busy in Python when torchrun's SIGTERM comes: it writes, then dies of SIGTERM."""
    out, result = terminated_run
    assert "training died on rank 1" in result.stderr
    assert "SIGTERM" in result.stderr  # torchrun terminated rank 0 (it was not waiting 60 s)
    run, windows = one_run(out)
    assert run["status"] == "interrupted"
    assert metadata(run)["distributed"]["complete"] is False
    assert list(windows["status"]) == ["completed"] * (len(windows) - 1) + ["interrupted"]
    assert metadata(windows.iloc[0])["distributed"]["complete"] is True


def test_a_budget_stops_every_rank_at_the_same_epoch(budget_run):
    """The decision is taken on the combined figures, identical on every rank: all stop."""
    out, result = budget_run
    check_launch(result.returncode, result.stderr, out)  # every rank stopped: no hang
    run, windows = one_run(out)
    assert run["status"] == "budget_stop"
    assert list(windows.query("phase == 'train'")["epoch"]) == [0]
    meta = metadata(run)
    assert meta["distributed"]["complete"] is True  # a budget stop is a collective end
    assert "max_energy_kwh" in meta["budget_stop_reason"]
    check_windows_tile(windows, run)
