"""A fork while the sampler holds a component's lock must not deadlock the child."""

from __future__ import annotations

import os
import sys
import time

import pytest
from codecarbon_callbacks_core.hardware.cpu_estimate import CpuLoadComponent


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="fork on Linux")
def test_child_gets_fresh_locks():
    component = CpuLoadComponent(tdp_w=100.0)
    component.start(time.monotonic())
    component._lock.acquire()  # as the parent's sampler thread would, mid-sample
    try:
        pid = os.fork()
        if pid == 0:  # child: would hang forever on the inherited, held lock
            try:
                component.sample(time.monotonic() + 1.0)
                ok = component.energy_j(time.monotonic() + 1.0) > 0
            finally:
                os._exit(0 if ok else 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0
                return
            time.sleep(0.01)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child deadlocked on an inherited lock")
    finally:
        component._lock.release()
