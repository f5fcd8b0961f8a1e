"""Background NVML energy-counter reads per second per GPU, with 8 idle fake H200s (issue 16).

``python benchmarks/gpu_background_reads.py [--seconds 4]`` prints one JSON line. A real
:class:`~codecarbon_callbacks_core.meter.Meter` runs its sampler in real time over 8 fake H200s
(``tests/fakes/fake_nvml.py``: a constant 75 W on 100-ms counter steps, a counter read sleeping
3 ms as on the GPU). Counter reads are counted after the first ``--settle`` s (default 8: the
burst that finds each counter's step, and the YOUNG_OBSERVATIONS watches, one every 0.25 s, that
follow it) for ``--seconds`` with no window edge and no live output: the reads nobody asked
for. It also reports the ``codecarbon-callbacks-gpu*`` threads alive meanwhile.

Measured (2-core shared machine, ``--seconds 6``): before issue 16, 6.44 reads/s per GPU and a
``codecarbon-callbacks-gpu{i}-counter`` thread per GPU; after, 0.0 reads/s and only the shared
edge-read pool (one step is watched again every 30 s: 0.05 reads/s over a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import REPO_ROOT

COUNTER_CALL = "nvmlDeviceGetTotalEnergyConsumption"


def measure(seconds: float = 4.0, gpus: int = 8, settle_s: float = 8.0) -> dict[str, object]:
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from codecarbon_callbacks_core.hardware.nvml import detect_nvml
    from codecarbon_callbacks_core.meter import Meter
    from fakes.fake_nvml import FakeDevice, FakeNvml, RealClock

    clock = RealClock()
    devices = [
        FakeDevice(uuid=f"GPU-{i:08d}-0000-0000-0000-000000000000", power_w=75.0)
        for i in range(gpus)
    ]
    nvml = FakeNvml(devices, clock=clock)
    components, _ = detect_nvml(nvml=nvml)
    meter = Meter(components)
    meter.start()
    time.sleep(settle_s)
    before = nvml.calls.get(COUNTER_CALL, 0)
    threads = sorted(t.name for t in threading.enumerate() if "-gpu" in t.name)
    time.sleep(seconds)
    after = nvml.calls.get(COUNTER_CALL, 0)
    meter.stop()
    return {
        "gpus": gpus,
        "seconds": seconds,
        "background_counter_reads_per_s_per_gpu": round((after - before) / seconds / gpus, 3),
        "gpu_threads_alive": threads,
        "locked": sum(1 for c in components if c.counter_period_s is not None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--settle", type=float, default=8.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.seconds, settle_s=args.settle)))


if __name__ == "__main__":
    main()
