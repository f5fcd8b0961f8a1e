"""Fixtures for the distributed tests: one real launch each, shared by the tests that read it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from ddp_launch import (
    GPU_UUIDS,
    SCRIPTS,
    check_launch,
    dump_stacks,
    free_port,
    gpu_spec,
    kill_tree,
    launch_env,
    run,
    torchrun,
)


@pytest.fixture(scope="session")
def ddp_spawn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lightning ddp_spawn, 2 processes on one machine, one GPU bound to each rank by UUID."""
    base = tmp_path_factory.mktemp("ddp_spawn")
    out = base / "out"
    result = run(
        [
            sys.executable,
            str(SCRIPTS / "lightning_fit.py"),
            str(out),
            "ddp_spawn",
            "--bind-gpus",
            ",".join(GPU_UUIDS),
        ],
        launch_env(base, gpu_spec()),
    )
    check_launch(result.returncode, result.stderr, out)
    return out


@pytest.fixture(scope="session")
def hf_torchrun_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HF Trainer under torchrun --nproc_per_node 2; both ranks see both GPUs (no CUDA)."""
    base = tmp_path_factory.mktemp("hf_torchrun")
    out = base / "out"
    result = run(
        torchrun(
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            str(SCRIPTS / "hf_trainer_fit.py"),
            str(out),
        ),
        launch_env(base, gpu_spec()),
    )
    check_launch(result.returncode, result.stderr, out)
    return out


@pytest.fixture(scope="session")
def two_machines_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lightning ddp on 2 "machines": two torchrun node launches, distinct machine ids."""
    base = tmp_path_factory.mktemp("two_machines")
    port = str(free_port())
    procs = []
    for node, machine in enumerate(("node-a", "node-b")):
        env = launch_env(base, gpu_spec((node,)), CODECARBON_CALLBACKS_MACHINE_ID=machine)
        cmd = torchrun(
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--node_rank",
            str(node),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            port,
            str(SCRIPTS / "lightning_fit.py"),
            str(base / f"out-{node}"),
            "ddp",
            "--devices",
            "1",
            "--num-nodes",
            "2",
            "--boamps",
        )
        # Files, not pipes: a pipe nobody reads while we wait on the other node would fill up
        # and block that node, and with it the whole process group.
        log = (base / f"node-{node}.log").open("w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 180
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.returncode not in (None, 0) for p in procs):
            break  # a node failed: its peer would wait for it at the exit barrier
        time.sleep(0.2)
    for proc in procs:
        if proc.poll() is None:
            dump_stacks(proc)
            kill_tree(proc)
            proc.wait()
    for node, proc in enumerate(procs):
        if proc.returncode == 0:
            continue
        # a node killed because its peer aborted at exit waits no more: judge by the aborted one
        logs = "".join((base / f"node-{n}.log").read_text() for n in range(len(procs)))
        check_launch(proc.returncode, logs, base / "out-0")
    return base


@pytest.fixture(scope="session")
def failing_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess]:
    """Lightning ddp under torchrun, 2 processes; rank 0 raises in its second epoch."""
    base = tmp_path_factory.mktemp("failing")
    out = base / "out"
    result = run(
        torchrun(
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            str(SCRIPTS / "lightning_fit.py"),
            str(out),
            "ddp",
            "--fail-at-epoch",
            "1",
        ),
        launch_env(base, gpu_spec()),
        timeout_s=180,
    )
    return out, result


@pytest.fixture(scope="session")
def other_rank_dies_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess]:
    """The HF Trainer under torchrun, 2 processes; rank 1 raises at its 6th step (epoch 1)."""
    base = tmp_path_factory.mktemp("other_rank_dies")
    out = base / "out"
    result = run(
        torchrun(
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            str(SCRIPTS / "hf_trainer_fit.py"),
            str(out),
            "--fail",
            "1:5",
        ),
        launch_env(base, gpu_spec()),
        timeout_s=180,
    )
    return out, result


@pytest.fixture(scope="session")
def terminated_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess]:
    """torch.distributed + the session under torchrun: rank 1 dies, rank 0 gets SIGTERM."""
    base = tmp_path_factory.mktemp("terminated")
    out = base / "out"
    result = run(
        torchrun(
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            str(SCRIPTS / "session_sigterm.py"),
            str(out),
        ),
        launch_env(base, gpu_spec()),
        timeout_s=120,
    )
    return out, result


@pytest.fixture(scope="session")
def budget_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess]:
    """Lightning ddp under torchrun, 2 processes, 3 epochs planned, a budget crossed at once."""
    base = tmp_path_factory.mktemp("budget")
    out = base / "out"
    result = run(
        torchrun(
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            str(SCRIPTS / "lightning_fit.py"),
            str(out),
            "ddp",
            "--epochs",
            "3",
            "--max-energy-kwh",
            "1e-12",
        ),
        launch_env(base, gpu_spec()),
        timeout_s=180,
    )
    return out, result
