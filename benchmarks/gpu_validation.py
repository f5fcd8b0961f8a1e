"""GPU validation: our per-epoch GPU energy against independent NVML reads, on one NVIDIA GPU.

Run on a machine with one NVIDIA GPU, torch, lightning and nvidia-ml-py (fits in 5 minutes)::

    python benchmarks/gpu_validation.py [--json gpu.json] [--steady-epochs 60] [--alt-epochs 12]

Without a GPU it says so and exits 0. ``--fake-nvml`` runs the same code on a CPU machine with the
fake NVML of ``tests/fakes`` replaying the H200 trace in real time (the trace does not follow the
training, so its figures mean nothing: it only checks that the script works).

One Lightning run on the GPU, everything measured side by side in that run:

- the workload: identical ~1-second epochs of bf16 8192^3 matmuls (steady load), then epochs
  alternating idle and full load, the last one idle;
- callbacks, in Lightning's call order: a first callback synchronises CUDA at each epoch edge (so
  our callback's own synchronisation costs nothing and its hook time is the edge's own cost) and
  reads the counter at fit start, just before our run starts; our ``EmissionsCallback``; an
  independent callback that reads ``nvmlDeviceGetTotalEnergyConsumption`` at the same edges (plain
  counter deltas), keeps windows of two more trackers whose GPU has no energy counter (the
  power-polling fallback: instant power field 186, and ``nvmlDeviceGetPowerUsage``), runs
  CodeCarbon 3.3.2 with a task per epoch (when installed; its tracker and the fallback trackers
  are started before fit and stopped after it), and reads the counter again at fit end, just
  after our run stopped.

Figures:

1. jitter: coefficient of variation of our per-epoch GPU energy over the steady epochs, against
   that of the plain counter deltas and of CodeCarbon's tasks (target: ours < 1% and below plain);
2. agreement: our run total against the counter delta read independently around fit (target:
   within 0.5%), and the sum of our tiling windows against our total;
3. the power-polling fallback's error on 1-second windows (steady and alternating epochs), taking
   our counter-based epochs as the reference;
4. the cost of a window edge on the training thread (time in our epoch hooks), a counter read, a
   power read, and whether N concurrent counter reads (N threads, one GPU) overlap.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    REPO_ROOT,
    Row,
    cv_percent,
    fmt_ms,
    fmt_pct,
    format_table,
    machine_info,
    max_dev_percent,
)

logger = logging.getLogger("gpu_validation")

J_PER_KWH = 3.6e6
FIELD_POWER_INSTANT = 186
WARMUP_EPOCHS = 3
CONCURRENT_THREADS = (1, 2, 4, 8)
#: the length of one training step, s
STEP_S = 0.05


# -- environment ----------------------------------------------------------------------------------


def install_fake_nvml() -> Any:
    """Put the fake NVML (tests/fakes, H200 trace, real clock) in sys.modules['pynvml']."""
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from fakes import fake_nvml

    fake = fake_nvml.from_spec(
        {"devices": [{"uuid": "GPU-fake-0", "trace": "h200", "time_offset_s": 3.0}]}
    )
    return fake_nvml.install(fake)


def check_environment(fake: bool) -> str | None:
    """None when the validation can run here, else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    try:
        import lightning  # noqa: F401
    except ImportError:
        from codecarbon_callbacks.session import install_hint

        return f"lightning is not installed ({install_hint('lightning')})"
    if fake:
        return None
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as e:
        return f"nvmlInit failed: {e}"
    return None


def nvml_handle(nvml: Any, cuda_index: int) -> tuple[Any, int]:
    """The NVML handle of the CUDA device, matched by UUID (CUDA_VISIBLE_DEVICES may renumber)."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(cuda_index).uuid)
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            nvml_uuid = nvml.nvmlDeviceGetUUID(handle)
            nvml_uuid = nvml_uuid.decode() if isinstance(nvml_uuid, bytes) else str(nvml_uuid)
            if nvml_uuid.replace("GPU-", "") == uuid.replace("GPU-", ""):
                return handle, i
    except Exception as e:  # the fake, or an old torch without .uuid
        logger.debug("UUID match failed (%s): using NVML index %d", e, cuda_index)
    return nvml.nvmlDeviceGetHandleByIndex(cuda_index), cuda_index


class NvmlWithout(types.ModuleType):
    """pynvml as a GPU without an energy counter (and, optionally, without the instant field)."""

    def __init__(self, nvml: Any, *, instant_field: bool) -> None:
        super().__init__("pynvml")
        self._nvml = nvml
        self._instant_field = instant_field

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nvml, name)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        raise self._nvml.NVMLError(self._nvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: Any) -> Any:
        if not self._instant_field:
            raise self._nvml.NVMLError(self._nvml.NVML_ERROR_NOT_SUPPORTED)
        return self._nvml.nvmlDeviceGetFieldValues(handle, field_ids)


# -- (4) raw NVML costs ----------------------------------------------------------------------------


def _timed_calls(fn: Callable[[], Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def read_costs(
    nvml: Any, handle: Any, *, n_counter: int = 100, n_power: int = 1000
) -> dict[str, Any]:
    counter = _timed_calls(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle), n_counter)
    field = _timed_calls(
        lambda: nvml.nvmlDeviceGetFieldValues(handle, [FIELD_POWER_INSTANT]), n_power
    )
    usage = _timed_calls(lambda: nvml.nvmlDeviceGetPowerUsage(handle), n_power)

    def stats(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        return {
            "median_s": statistics.median(values),
            "p99_s": values[int(0.99 * (len(values) - 1))],
            "max_s": values[-1],
        }

    return {"counter": stats(counter), "power_instant": stats(field), "power_usage": stats(usage)}


def concurrent_counter_reads(
    nvml: Any, handle: Any, *, reads_per_thread: int = 20
) -> dict[str, Any]:
    """N threads read the one GPU's counter at once: do the reads overlap or queue?

    ``overlap`` = (N x reads x single-thread read time) / wall time: 1 means the reads queue one
    after the other, N means they fully overlap.
    """
    single = statistics.median(
        _timed_calls(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle), 30)
    )
    out: dict[str, Any] = {"single_read_s": single, "by_threads": {}}
    for n_threads in CONCURRENT_THREADS:
        barrier = threading.Barrier(n_threads + 1)
        latencies: list[float] = []
        lock = threading.Lock()

        def work(barrier: threading.Barrier, latencies: list[float], lock: threading.Lock) -> None:
            barrier.wait()
            mine = _timed_calls(
                lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle), reads_per_thread
            )
            with lock:
                latencies.extend(mine)

        threads = [
            threading.Thread(target=work, args=(barrier, latencies, lock)) for _ in range(n_threads)
        ]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        out["by_threads"][n_threads] = {
            "wall_s": wall,
            "read_latency_median_s": statistics.median(latencies),
            "overlap": n_threads * reads_per_thread * single / wall if wall > 0 else float("nan"),
        }
    return out


# -- the Lightning run -----------------------------------------------------------------------------


class WindowCollector:
    """An output handler keeping every window record a tracker closes."""

    def __init__(self) -> None:
        from codecarbon_callbacks import BaseOutput

        collector = self

        class _Handler(BaseOutput):
            def window_out(self, record: Any) -> None:
                collector.records.append(record)

        self.records: list[Any] = []
        self.handler = _Handler()


def _timed_hooks(callback: Any, names: Sequence[str], sink: dict[str, list[float]]) -> None:
    for name in names:
        method = getattr(callback, name)

        def timed(
            *args: Any, _method: Callable[..., Any] = method, _name: str = name, **kwargs: Any
        ) -> Any:
            t0 = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                sink.setdefault(_name, []).append(time.perf_counter() - t0)

        setattr(callback, name, timed)


@dataclasses.dataclass
class Workload:
    """The calibrated workload: each training step runs ``a @ b`` ``matmuls_per_step`` times."""

    a: Any
    b: Any
    #: the time of one matmul, s
    matmul_s: float
    matmuls_per_step: int
    #: the time of one step (``matmul_s * matmuls_per_step``), s
    step_s: float
    steps_per_epoch: int
    size: int
    dtype: Any

    def summary(self) -> dict[str, Any]:
        """The figures of the workload that go into the result JSON."""
        return {
            "matmul_s": self.matmul_s,
            "matmuls_per_step": self.matmuls_per_step,
            "steps_per_epoch": self.steps_per_epoch,
            "size": self.size,
            "dtype": str(self.dtype),
        }


def calibrate_workload(*, fake: bool, epoch_s: float, sync: Callable[[], None]) -> Workload:
    """Matmuls (bf16 8192^3 on the GPU, small fp32 on CPU) timed so an epoch lasts ~epoch_s."""
    import torch

    device = "cpu" if fake else "cuda"
    size = 256 if fake else 8192
    dtype = torch.float32 if fake else torch.bfloat16
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(5):
        a @ b
    sync()
    t0 = time.perf_counter()
    n_cal = 10 if fake else 50
    for _ in range(n_cal):
        a @ b
    sync()
    matmul_s = (time.perf_counter() - t0) / n_cal
    # steps of ~50 ms: Lightning's per-step work (about a millisecond of CPU) stays hidden behind
    # the queued GPU work, so the GPU is busy the whole epoch
    matmuls_per_step = max(1, round(STEP_S / matmul_s))
    step_s = matmul_s * matmuls_per_step
    steps_per_epoch = max(2, round(epoch_s / step_s))
    return Workload(a, b, matmul_s, matmuls_per_step, step_s, steps_per_epoch, size, dtype)


def make_module(workload: Workload, steady_epochs: int) -> Any:
    """The LightningModule: full load for the steady epochs, then idle, full, idle, ..."""
    import lightning.pytorch as pl
    import torch

    def idle_epoch(epoch: int) -> bool:
        # after the steady epochs: idle, full, idle, ..., and the last epoch idle
        return epoch >= steady_epochs and (epoch - steady_epochs) % 2 == 0

    class Matmuls(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: Any, batch_idx: int) -> None:
            if idle_epoch(self.current_epoch):
                time.sleep(workload.step_s)
                return
            for _ in range(workload.matmuls_per_step):
                workload.a @ workload.b
            return

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    return Matmuls()


@dataclasses.dataclass
class Ours:
    """Our tracker, the callback over it, its closed windows and the times of its epoch hooks."""

    tracker: Any
    callback: Any
    collector: WindowCollector
    #: hook name -> the duration of each call, s
    hook_times: dict[str, list[float]]


def build_ours() -> Ours:
    """Our ``EmissionsCallback`` over a tracker whose windows are kept, epoch hooks timed."""
    from codecarbon_callbacks import OfflineEmissionsTracker
    from codecarbon_callbacks.lightning import EmissionsCallback

    collector = WindowCollector()
    ours_tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_methods=[],
        output_handlers=[collector.handler],
        log_level="error",
    )
    ours = EmissionsCallback(tracker=ours_tracker)
    hook_times: dict[str, list[float]] = {}
    _timed_hooks(ours, ("on_train_epoch_start", "on_train_epoch_end"), hook_times)
    return Ours(ours_tracker, ours, collector, hook_times)


def build_fallbacks(
    nvml: Any, nvml_index: int, cuda_index: int
) -> tuple[dict[str, Any], str | None]:
    """Two power-only trackers on the same GPU (instant field, power usage), and any error.

    An error (an internal API changed) is returned as text, so that the rest is still measured.
    """
    from codecarbon_callbacks import OfflineEmissionsTracker

    fallbacks: dict[str, Any] = {}
    try:
        from codecarbon_callbacks_core.hardware.nvml import NvmlGpu

        for label, instant in (("instant", True), ("usage", False)):
            gpu = NvmlGpu(
                NvmlWithout(nvml, instant_field=instant), nvml_index, cuda_index=cuda_index
            )
            fallbacks[label] = OfflineEmissionsTracker(
                country_iso_code="FRA",
                output_methods=[],
                components=[gpu],
                log_level="error",
                allow_multiple_runs=True,
            )
    except Exception as e:  # an internal API changed: say so, measure the rest
        return fallbacks, f"{type(e).__name__}: {e}"
    return fallbacks, None


def build_codecarbon(fake: bool, nvml_index: int) -> tuple[Any, str | None]:
    """CodeCarbon's tracker on the GPU (None with the fake NVML or on error), and any error."""
    codecarbon_tracker = None
    try:
        import codecarbon

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        if not fake:  # CodeCarbon reads the real pynvml; the fake is not enough for it
            codecarbon_tracker = codecarbon.OfflineEmissionsTracker(
                country_iso_code="FRA",
                save_to_file=False,
                log_level="error",
                gpu_ids=[nvml_index],
            )
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"
    return codecarbon_tracker, None


def new_edges(fallback_labels: Sequence[str]) -> dict[str, Any]:
    """The store of the independent reads: counter (J) at fit edges, epoch edges, windows (J)."""
    return {
        "fit": [],
        "plain_start": {},
        "plain_end": {},
        "fallback": {k: {} for k in fallback_labels},
        "codecarbon": {},
    }


def edge_callbacks(
    edges: dict[str, Any],
    *,
    sync: Callable[[], None],
    counter_j: Callable[[], float],
    fallbacks: dict[str, Any],
    codecarbon_tracker: Any,
) -> tuple[Any, Any]:
    """The callbacks placed before and after ours: they fill ``edges`` at the same edges."""
    import lightning.pytorch as pl

    class First(pl.Callback):
        """Synchronises CUDA before our callback sees an edge; reads the counter at fit start."""

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            sync()
            edges["fit"].append(counter_j())  # just before our callback starts its run

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            sync()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            sync()

    class Independent(pl.Callback):
        """Plain counter reads, fallback windows and CodeCarbon tasks at the same edges."""

        def __init__(self) -> None:
            self.windows: dict[str, str] = {}

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            epoch = int(trainer.current_epoch)
            edges["plain_start"][epoch] = counter_j()
            for label, tracker in fallbacks.items():
                self.windows[label] = tracker.open_window(
                    "epoch", f"epoch {epoch}", epoch=epoch, phase="train"
                )
            if codecarbon_tracker is not None:
                codecarbon_tracker.start_task(f"epoch {epoch}")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            epoch = int(trainer.current_epoch)
            edges["plain_end"][epoch] = counter_j()
            for label, tracker in fallbacks.items():
                record = tracker.close_window(self.windows.pop(label))
                edges["fallback"][label][epoch] = record.gpu_energy * J_PER_KWH
            if codecarbon_tracker is not None:
                data = codecarbon_tracker.stop_task()
                edges["codecarbon"][epoch] = data.gpu_energy * J_PER_KWH

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            sync()
            edges["fit"].append(counter_j())  # just after our callback stopped its run

    return First(), Independent()


def run_fit(
    *,
    fake: bool,
    n_epochs: int,
    callbacks: list[Any],
    module_factory: Callable[[], Any],
    loader: Any,
    fallbacks: dict[str, Any],
    codecarbon_tracker: Any,
) -> float:
    """The Lightning run, the other trackers started before fit and stopped after it; wall s."""
    import lightning.pytorch as pl

    trainer = pl.Trainer(
        max_epochs=n_epochs,
        accelerator="cpu" if fake else "gpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    # the other trackers start before fit and stop after it, so that nothing of theirs (CodeCarbon's
    # start() takes seconds) happens between the two independent reads around our run
    for tracker in fallbacks.values():
        tracker.start()
    if codecarbon_tracker is not None:
        codecarbon_tracker.start()
    t0 = time.perf_counter()
    trainer.fit(module_factory(), loader)
    fit_wall_s = time.perf_counter() - t0
    for tracker in fallbacks.values():
        tracker.stop()
    if codecarbon_tracker is not None:
        codecarbon_tracker.stop()
    return fit_wall_s


# -- analysis --------------------------------------------------------------------------------------


def _series(values: dict[int, float], epochs: list[int]) -> list[float]:
    return [values[e] for e in epochs if e in values]


def analyse_jitter(
    series_j: dict[str, dict[int, float]], steady_epochs: list[int]
) -> dict[str, Any]:
    """(1) CV, largest deviation and mean (J) of each label's per-epoch energy (J)."""
    jitter: dict[str, Any] = {"epochs": len(steady_epochs)}
    for label, values in series_j.items():
        data = _series(values, steady_epochs)
        jitter[label] = {
            "cv_percent": cv_percent(data),
            "max_dev_percent": max_dev_percent(data),
            "mean_j": statistics.fmean(data) if data else None,
        }
    return jitter


def analyse_agreement(
    ours_total_j: float, fit_counter_j: list[float], tiling_j: float
) -> dict[str, Any]:
    """(2) our run total (J) against the counter delta (J) read around fit, and the tiling sum."""
    independent_j = fit_counter_j[1] - fit_counter_j[0]
    return {
        "ours_total_j": ours_total_j,
        "independent_j": independent_j,
        "diff_percent": 100.0 * (ours_total_j / independent_j - 1) if independent_j else None,
        "tiling_sum_j": tiling_j,
        "tiling_diff_percent": 100.0 * (tiling_j / ours_total_j - 1) if ours_total_j else None,
    }


def _error_stats(errors: list[float]) -> dict[str, Any]:
    return {
        "rms_percent": (sum(x * x for x in errors) / len(errors)) ** 0.5 if errors else None,
        "max_percent": max((abs(x) for x in errors), default=None),
        "mean_percent": statistics.fmean(errors) if errors else None,
    }


def analyse_fallback(
    windows_j: dict[str, dict[int, float]],
    epoch_j: dict[int, float],
    parts: dict[str, list[int]],
) -> dict[str, Any]:
    """(3) each power-based series' per-epoch error (%) against our counter-based epochs."""
    fallback_errors: dict[str, Any] = {}
    for label, values in windows_j.items():
        for part, epochs in parts.items():
            errors = [
                100.0 * (values[e] / epoch_j[e] - 1)
                for e in epochs
                if e in values and epoch_j.get(e)
            ]
            fallback_errors[f"{label}_{part}"] = _error_stats(errors)
    return fallback_errors


def analyse_run(
    ours: Ours,
    edges: dict[str, Any],
    *,
    steady: int,
    n_epochs: int,
    epoch_s: float,
    fit_wall_s: float,
) -> dict[str, Any]:
    """The figures of the run, in the result JSON's order (sampler CPU, (1), (2), (3), (4))."""
    out: dict[str, Any] = {}
    # the CPU our sampler thread used (its own time.thread_time account), over the fit
    sampler_cpu_s = getattr(getattr(ours.tracker, "_meter", None), "sampler_cpu_s", None)
    out["sampler_cpu_percent"] = (
        100.0 * sampler_cpu_s / fit_wall_s if sampler_cpu_s is not None else None
    )
    ours_total_j = ours.tracker.final_emissions_data.gpu_energy * J_PER_KWH
    records = ours.collector.records
    epoch_j = {
        r.epoch: r.gpu_energy * J_PER_KWH
        for r in records
        if r.kind == "epoch" and r.phase == "train"
    }
    tiling_j = sum(r.gpu_energy for r in records if r.kind in ("epoch", "phase")) * J_PER_KWH
    plain_j = {e: edges["plain_end"][e] - edges["plain_start"][e] for e in edges["plain_end"]}
    steady_epochs = [e for e in range(WARMUP_EPOCHS, steady) if e in epoch_j and e in plain_j]
    alt_epochs = [e for e in range(steady, n_epochs) if e in epoch_j]
    jitter = analyse_jitter(
        {"ours": epoch_j, "plain": plain_j, "codecarbon": edges["codecarbon"]}, steady_epochs
    )
    out["jitter"] = jitter
    out["agreement"] = analyse_agreement(ours_total_j, edges["fit"], tiling_j)
    windows_j = dict(edges["fallback"])
    if edges["codecarbon"]:
        windows_j["codecarbon"] = edges["codecarbon"]
    out["fallback"] = analyse_fallback(
        windows_j, epoch_j, {"steady": steady_epochs, "alternating": alt_epochs}
    )
    out["edge_hooks"] = {
        name: {"median_s": statistics.median(v), "max_s": max(v), "n": len(v)}
        for name, v in ours.hook_times.items()
    }
    out["steady_power_w"] = (
        (jitter["ours"]["mean_j"] or 0.0) / epoch_s if jitter["ours"]["mean_j"] else None
    )
    return out


def describe_run(
    nvml: Any, handle: Any, nvml_index: int, *, fake: bool, epoch_s: float
) -> dict[str, Any]:
    """The head of the result JSON: the GPU's name, its NVML index, the fake flag, epoch_s (s)."""
    name = nvml.nvmlDeviceGetName(handle)
    return {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "nvml_index": nvml_index,
        "fake_nvml": fake,
        "epoch_s": epoch_s,
    }


def run_validation(args: argparse.Namespace, nvml: Any) -> dict[str, Any]:
    """The whole validation (raw costs, then the Lightning run and its analysis) as a JSON dict."""
    # the frameworks are imported first, before anything is measured
    import lightning.pytorch  # noqa: F401
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import codecarbon_callbacks.lightning  # noqa: F401

    fake = args.fake_nvml
    cuda_index = 0
    if not fake:
        torch.cuda.set_device(cuda_index)
    handle, nvml_index = nvml_handle(nvml, cuda_index)
    result = describe_run(nvml, handle, nvml_index, fake=fake, epoch_s=args.epoch_s)

    def sync() -> None:
        if not fake:
            torch.cuda.synchronize()

    def counter_j() -> float:
        return nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0

    # (4) raw costs first, on an idle GPU
    result["read_costs"] = read_costs(
        nvml, handle, n_counter=30 if fake else 100, n_power=200 if fake else 1000
    )
    result["concurrency"] = concurrent_counter_reads(
        nvml, handle, reads_per_thread=5 if fake else 20
    )
    workload = calibrate_workload(fake=fake, epoch_s=args.epoch_s, sync=sync)
    result["workload"] = workload.summary()
    steady = args.steady_epochs
    # end on an idle epoch
    n_epochs = steady + args.alt_epochs + (1 if args.alt_epochs % 2 == 0 else 0)
    loader = DataLoader(TensorDataset(torch.zeros(workload.steps_per_epoch, 1)), batch_size=1)

    # trackers: ours (through the callback), and two power-only fallbacks on the same GPU
    ours = build_ours()
    fallbacks, fallback_error = build_fallbacks(nvml, nvml_index, cuda_index)
    if fallback_error is not None:
        result["fallback_error"] = fallback_error
    codecarbon_tracker, codecarbon_error = build_codecarbon(fake, nvml_index)
    if codecarbon_error is not None:
        result["codecarbon_error"] = codecarbon_error
    edges = new_edges(list(fallbacks))
    first, independent = edge_callbacks(
        edges,
        sync=sync,
        counter_j=counter_j,
        fallbacks=fallbacks,
        codecarbon_tracker=codecarbon_tracker,
    )
    fit_wall_s = run_fit(
        fake=fake,
        n_epochs=n_epochs,
        callbacks=[first, ours.callback, independent],
        module_factory=lambda: make_module(workload, steady),
        loader=loader,
        fallbacks=fallbacks,
        codecarbon_tracker=codecarbon_tracker,
    )
    result["fit_wall_s"] = fit_wall_s
    result.update(
        analyse_run(
            ours,
            edges,
            steady=steady,
            n_epochs=n_epochs,
            epoch_s=args.epoch_s,
            fit_wall_s=fit_wall_s,
        )
    )
    return result


def _jitter_and_agreement_rows(result: dict[str, Any], section: str) -> list[Row]:
    """(1) and (2): the jitter of the steady epochs and the run total's agreement."""
    j = result["jitter"]

    def cv(label: str) -> str:
        item = j.get(label) or {}
        if item.get("cv_percent") is None or item["cv_percent"] != item["cv_percent"]:
            return "n/a"
        return f"{fmt_pct(item['cv_percent'])} (max {fmt_pct(item['max_dev_percent'], 1)})"

    ours_cv, plain_cv = j["ours"]["cv_percent"], j["plain"]["cv_percent"]
    a = result["agreement"]
    diff = a["diff_percent"]
    return [
        Row(
            section,
            f"(1) jitter: CV of {j['epochs']} steady {result['epoch_s']:g}-s epochs",
            cv("ours"),
            cv("codecarbon"),
            "< 1% and below plain",
            ours_cv < 1.0 and ours_cv < plain_cv,
            note=f"plain counter deltas at the same edges: {cv('plain')}",
        ),
        Row(
            section,
            "(2) agreement: run total vs counter delta around fit",
            fmt_pct(diff, 3),
            "-",
            "within 0.5%",
            diff is not None and abs(diff) < 0.5,
            note=f"ours {a['ours_total_j']:.0f} J, independent {a['independent_j']:.0f} J; "
            f"tiling windows vs total {fmt_pct(a['tiling_diff_percent'], 4)}",
        ),
    ]


def _fallback_rows(result: dict[str, Any], section: str) -> list[Row]:
    """(3): the power-polling fallback's error, steady and alternating epochs."""
    fb = result["fallback"]

    def err(key: str) -> str:
        item = fb.get(key) or {}
        if item.get("rms_percent") is None:
            return "n/a"
        return f"{fmt_pct(item['rms_percent'])} rms (max {fmt_pct(item['max_percent'], 1)})"

    return [
        Row(
            section,
            f"(3) power fallback, {result['epoch_s']:g}-s {part} epochs, error vs ours",
            f"instant {err('instant_' + part)}; usage {err('usage_' + part)}",
            err("codecarbon_" + part),
            "",
        )
        for part in ("steady", "alternating")
    ]


def _cost_rows(result: dict[str, Any], section: str) -> list[Row]:
    """(4): edge and read costs, the sampler's CPU and concurrent reads."""
    hooks = result["edge_hooks"]
    costs = result["read_costs"]
    rows = [
        Row(
            section,
            "(4) edge on the training thread (our epoch hooks, median / max)",
            "; ".join(
                f"{k.replace('on_train_epoch_', '')} {fmt_ms(v['median_s'])} / {fmt_ms(v['max_s'])}"
                for k, v in hooks.items()
            ),
            "-",
            "",
        ),
        Row(
            section,
            "(4) NVML read: counter; instant power; power usage (median)",
            f"{fmt_ms(costs['counter']['median_s'])} (max {fmt_ms(costs['counter']['max_s'])}); "
            f"{fmt_ms(costs['power_instant']['median_s'])}; "
            f"{fmt_ms(costs['power_usage']['median_s'])}",
            "-",
            "",
        ),
    ]
    if result.get("sampler_cpu_percent") is not None:
        rows.append(
            Row(
                section,
                "sampler thread CPU during the run (% of one core)",
                fmt_pct(result["sampler_cpu_percent"], 3),
                "-",
                "< 0.5%",
                result["sampler_cpu_percent"] < 0.5,
            )
        )
    conc = result["concurrency"]["by_threads"]
    rows.append(
        Row(
            section,
            "(4) N concurrent counter reads on one GPU: overlap (1 = queued, N = parallel)",
            ", ".join(f"N={n}: {v['overlap']:.2f}" for n, v in conc.items()),
            "-",
            "",
        )
    )
    return rows


def rows_for(result: dict[str, Any]) -> list[Row]:
    """The table rows of a result, figures (1) to (4) in order."""
    section = "gpu"
    return (
        _jitter_and_agreement_rows(result, section)
        + _fallback_rows(result, section)
        + _cost_rows(result, section)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steady-epochs", type=int, default=60)
    parser.add_argument("--alt-epochs", type=int, default=12)
    parser.add_argument("--epoch-s", type=float, default=1.0)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--fake-nvml",
        action="store_true",
        help="CPU check of the script itself: the fake NVML replays the H200 trace; "
        "figures mean nothing",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.steady_epochs <= WARMUP_EPOCHS + 1:
        parser.error(f"--steady-epochs must be more than {WARMUP_EPOCHS + 1}")
    if args.fake_nvml:
        install_fake_nvml()
    why_not = check_environment(args.fake_nvml)
    if why_not is not None:
        print(
            f"gpu_validation: no GPU validation on this machine ({why_not}); nothing measured. "
            "Run it on a machine with one NVIDIA GPU, torch, lightning and nvidia-ml-py."
        )
        return 0
    import pynvml as nvml  # the real one, or the fake installed above

    if args.fake_nvml:
        nvml.nvmlInit()
    t0 = time.perf_counter()
    result = run_validation(args, nvml)
    result["machine"] = machine_info()
    result["total_s"] = time.perf_counter() - t0
    print(
        f"GPU validation on {result['gpu']}"
        f"{' (FAKE NVML: figures mean nothing)' if args.fake_nvml else ''} | "
        f"{result['machine']['date_utc']} | {result['total_s']:.0f} s | "
        f"{result['workload']['steps_per_epoch']} steps of "
        f"{result['workload']['matmuls_per_step']} "
        f"matmuls per epoch"
    )
    print(format_table(rows_for(result), markdown=args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
