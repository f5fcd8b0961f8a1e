"""Launching real process groups (gloo, CPU) as subprocesses, for the distributed tests.

Each launch is a real multi-process run (Lightning ``ddp_spawn``, ``torchrun`` with the Lightning
``ddp`` strategy or the Hugging Face Trainer), never inside pytest's own process. GPUs are the
fake NVML module (tests/fakes/fake_nvml.py), installed in every process of a launch through the
environment; everything else (CPU, RAM, the process group, the frameworks) is real.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
sys.path.insert(0, str(HERE.parent / "fakes"))

import fake_nvml

#: two fake GPUs with distinct constant powers: who measured which shows in the energies
GPU_UUIDS = ("GPU-0000aaaa-0000-0000-0000-000000000000", "GPU-1111aaaa-0000-0000-0000-000000000001")
GPU_POWER_W = (300.0, 100.0)


def gpu_spec(indexes: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    return {"devices": [{"uuid": GPU_UUIDS[i], "power_w": GPU_POWER_W[i]} for i in indexes]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_env(home: Path, spec: dict[str, Any], **extra: str) -> dict[str, str]:
    env = fake_nvml.subprocess_env(spec)
    env.update(HOME=str(home), PYTHONWARNINGS="ignore", GLOO_SOCKET_IFNAME="lo", **extra)
    for key in list(env):
        if key.startswith("CODECARBON_") and key not in extra and key != fake_nvml.ENV_VAR:
            del env[key]
    return env


def run(cmd: list[str], env: dict[str, str], timeout_s: float = 240) -> subprocess.CompletedProcess:
    """Run a launch; if it hangs, dump its processes' stacks into the output, then kill it."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        dump_stacks(proc)
        kill_tree(proc)
        out, err = proc.communicate()
        err = f"{err}\nTIMEOUT after {timeout_s} s (stacks above)"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def read(out: Path) -> tuple[Any, Any]:
    import pandas as pd

    return pd.read_csv(out / "emissions.csv"), pd.read_csv(out / "emissions_windows.csv")


def metadata(row: Any) -> dict[str, Any]:
    return json.loads(row["metadata"])


def dump_stacks(proc: subprocess.Popen) -> None:
    """A hung launch: ask its worker processes to print their stacks (they register SIGUSR1)."""
    import signal
    import time

    import psutil

    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
    except psutil.Error:
        pass


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill a launch and the processes it started (its workers would outlive a killed torchrun)."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    proc.kill()


#: torch's gloo exit abort (pytorch/pytorch#190489): a rank dies in C++ teardown after training
EXIT_ABORT = "terminate called without an active exception"


def check_launch(returncode: int | None, output: str, out: Path) -> None:
    """The launch succeeded, or only torch's gloo exit abort hit a rank after the run was written.

    The abort happens in C++ teardown, after training and after the records were written (the
    tests then check those records in full); anything else fails here.
    """
    if returncode == 0:
        return
    import pandas as pd

    runs = out / "emissions.csv"
    written = runs.exists() and set(pd.read_csv(runs)["status"]) <= {"completed", "budget_stop"}
    assert EXIT_ABORT in output and written, output[-4000:]
