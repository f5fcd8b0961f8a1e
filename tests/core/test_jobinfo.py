"""Job identity (SLURM, Kubernetes, torchrun) and cgroup limits: read, and carried by records."""

from __future__ import annotations

from pathlib import Path

import pytest
from codecarbon_callbacks_core import container, jobinfo
from codecarbon_callbacks_core.container import ContainerLimits, container_limits
from codecarbon_callbacks_core.jobinfo import JOB_KEYS, job_identity
from core.constant_power import components

from codecarbon_callbacks import OfflineEmissionsTracker, read_emissions

SLURM_ARRAY_STEP = {
    "SLURM_JOB_ID": "1001",
    "SLURM_ARRAY_JOB_ID": "1000",
    "SLURM_ARRAY_TASK_ID": "7",
    "SLURM_STEP_ID": "0",
    "SLURM_JOB_NODELIST": "gpu[01-04]",
}


def test_slurm_array_task_and_step() -> None:
    assert job_identity(SLURM_ARRAY_STEP, root="/nonexistent") == {
        "slurm_job_id": "1001",
        "slurm_array_job_id": "1000",
        "slurm_array_task_id": "7",
        "slurm_step_id": "0",
        "slurm_job_nodelist": "gpu[01-04]",
    }
    # the older names SLURM still sets
    older = {"SLURM_JOBID": "9", "SLURM_STEPID": "2", "SLURM_NODELIST": "n1"}
    assert job_identity(older, root="/nonexistent") == {
        "slurm_job_id": "9",
        "slurm_step_id": "2",
        "slurm_job_nodelist": "n1",
    }


def test_kubernetes_pod_and_namespace_only_inside_kubernetes(tmp_path: Path) -> None:
    account = tmp_path / "var/run/secrets/kubernetes.io/serviceaccount"
    account.mkdir(parents=True)
    (account / "namespace").write_text("ml-team\n")
    (account / "token").write_text("SECRET-TOKEN")
    outside = {"HOSTNAME": "laptop"}
    assert job_identity(outside, root=tmp_path) == {}  # a host name alone is no pod
    inside = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "train-abc12"}
    found = job_identity(inside, root=tmp_path)
    assert found == {"k8s_pod": "train-abc12", "k8s_namespace": "ml-team"}
    assert "SECRET-TOKEN" not in repr(found)
    # the downward API's names win over the host name and the service account's file
    downward = {**inside, "POD_NAME": "train-0", "POD_NAMESPACE": "prod"}
    assert job_identity(downward, root=tmp_path) == {"k8s_pod": "train-0", "k8s_namespace": "prod"}


def test_torchrun_run_id_values_cleaned_and_order_fixed() -> None:
    env = {"TORCHELASTIC_RUN_ID": "run\n-1", "SLURM_JOB_ID": " " + "4" * 400}
    found = job_identity(env, root="/nonexistent")
    assert list(found) == [k for k in JOB_KEYS if k in found]
    assert found["torchelastic_run_id"] == "run-1"
    assert found["slurm_job_id"] == "4" * jobinfo.MAX_VALUE_CHARS


def cgroup_tree(root: Path, files: dict[str, str], own: str = "0::/\n") -> Path:
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/cgroup").write_text(own)
    for name, text in files.items():
        path = root / "sys/fs/cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cgroup_v2_quota_and_memory_limit(tmp_path: Path) -> None:
    root = cgroup_tree(
        tmp_path,
        {
            "cgroup.controllers": "cpu memory",
            "cpu.max": "200000 100000",
            "memory.max": "4294967296",
        },
    )
    limits = container_limits(root)
    assert limits == ContainerLimits(
        cpu_quota_cores=2.0, memory_limit_bytes=2**32, cgroup_version=2
    )
    assert "2 cores" in limits.describe_limits() and "4.0 GiB" in limits.describe_limits()
    assert "whole node" in limits.counts("machine")
    assert "whole node" not in limits.counts("process")
    unlimited = cgroup_tree(
        tmp_path / "free",
        {"cgroup.controllers": "cpu memory", "cpu.max": "max 100000", "memory.max": "max"},
    )
    assert container_limits(unlimited) is None


def test_cgroup_v2_tightest_limit_of_the_process_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root = cgroup_tree(
        tmp_path,
        {
            "cgroup.controllers": "cpu memory",
            "job.slice/cpu.max": "400000 100000",
            "job.slice/memory.max": "1073741824",
            "job.slice/step/cpu.max": "150000 100000",
            "job.slice/step/memory.max": "max",
        },
        own="0::/job.slice/step\n",
    )
    limits = container_limits(root)
    assert limits is not None
    assert (limits.cpu_quota_cores, limits.memory_limit_bytes) == (1.5, 2**30)


def test_cgroup_v1_quota_and_memory_limit(tmp_path: Path) -> None:
    own = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    root = cgroup_tree(
        tmp_path,
        {  # a cgroup namespace: the process's path is not visible, the mount root is its own
            "cpu,cpuacct/cpu.cfs_quota_us": "50000",
            "cpu,cpuacct/cpu.cfs_period_us": "100000",
            "memory/memory.limit_in_bytes": "536870912",
        },
        own=own,
    )
    assert container_limits(root) == ContainerLimits(0.5, 2**29, cgroup_version=1)
    unlimited = cgroup_tree(
        tmp_path / "free",
        {
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
            "memory/memory.limit_in_bytes": "9223372036854771712",
        },
        own=own,
    )
    assert container_limits(unlimited) is None
    assert container_limits(tmp_path / "nothing-here") is None


def test_records_carry_the_job_and_the_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SLURM_ARRAY_STEP.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "elastic-9")
    fake = cgroup_tree(tmp_path / "root", {"cgroup.controllers": "cpu", "cpu.max": "300000 100000"})
    real = container.container_limits
    monkeypatch.setattr(container, "container_limits", lambda root="/": real(fake))
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_dir=str(tmp_path),
        components=components(),
        measure_power_secs=60,
    )
    tracker.start()
    tracker.close_window(tracker.open_window("epoch", "epoch 0", epoch=0, phase="train"))
    tracker.stop()
    data = tracker.final_emissions_data
    assert data is not None
    assert data.metadata["job"]["slurm_array_task_id"] == "7"
    assert data.metadata["job"]["torchelastic_run_id"] == "elastic-9"
    assert data.metadata["container"]["cpu_quota_cores"] == 3.0
    assert "whole node" in data.metadata["container"]["tracking_mode_counts"]
    run_row = read_emissions(tmp_path / "emissions.csv").loc[0, "metadata"]
    assert run_row["job"]["slurm_job_id"] == "1001"
    windows = read_emissions(tmp_path / "emissions_windows.csv")
    assert windows.loc[0, "metadata"]["job"]["slurm_step_id"] == "0"


def test_detect_says_the_limits_and_what_machine_mode_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import json

    from codecarbon_callbacks.cli.app import build_parser
    from codecarbon_callbacks.cli.detect import run

    fake = cgroup_tree(tmp_path, {"memory/memory.limit_in_bytes": "2147483648"})
    real = container.container_limits
    monkeypatch.setattr(container, "container_limits", lambda root="/": real(fake))
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    text = io.StringIO()
    assert run(parser.parse_args(["detect", "--country-iso-code", "FRA"]), text) == 0
    line = next(x for x in text.getvalue().splitlines() if x.startswith("Container limits:"))
    assert "memory limit of 2.0 GiB" in line and "whole node's CPU and RAM" in line
    as_json = io.StringIO()
    run(parser.parse_args(["detect", "--json", "--country-iso-code", "FRA"]), as_json)
    assert "cgroup v1" in json.loads(as_json.getvalue())["container"]
    monkeypatch.setattr(container, "container_limits", lambda root="/": None)
    none = io.StringIO()
    run(parser.parse_args(["detect", "--country-iso-code", "FRA"]), none)
    assert "Container limits: none" in none.getvalue()
