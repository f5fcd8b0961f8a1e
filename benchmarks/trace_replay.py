"""The GPU validation figures on CPU: the H200 traces replayed through the fake NVML.

``python benchmarks/trace_replay.py`` prints one JSON line. The recorded H200 traces
(``tests/data/h200_*``, copied from ``../shared/reference/traces``) are played back by
``tests/fakes/fake_nvml.py`` on a virtual clock: a counter read advances it by a recorded read
duration (2.4-3.6 ms) and sees the counter as the trace had it, so the 100-ms counter steps and
the staleness they cause are reproduced exactly. Our NVML component (``NvmlGpu``) runs on that
clock: ``sample()`` every 25 ms (+-2 ms jitter), ``energy_j()`` at each window edge, then an
independent plain counter read at the same edge (what CodeCarbon 3.3.2 does for a task:
``GPUDevice.delta`` is a plain counter difference).

Figures, as in ``gpu_validation.py`` on a real GPU:

1. jitter: identical 1-second windows (the trace's 10 x (0.5 s full + 0.5 s idle) cycles, and
   1-s windows inside its steady full-load spans), each set replayed at 10 phase offsets
   (0-90 ms) against the counter's steps: coefficient of variation of our per-window energy,
   of plain counter deltas and of the truth (the counter interpolated between its steps);
2. agreement: 1-s windows tiling the whole 33-s trace: our total against the counter delta
   read independently around it, and against the truth;
3. the power-only fallback (no energy counter: instant power field 186 integrated; neither:
   ``nvmlDeviceGetPowerUsage`` integrated with its lag corrected) on the same 1-s windows;
4. a window edge's cost: counter reads per edge and the virtual time the edge holds the
   caller's thread, plus the CPU time of our edge arithmetic (real ``perf_counter``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import REPO_ROOT, Row, cv_percent, emit, fmt_ms, fmt_pct, max_dev_percent  # noqa: E402

TESTS_DIR = REPO_ROOT / "tests"
SAMPLER_INTERVAL_S = 0.025
SAMPLER_JITTER_S = 0.002
PHASE_OFFSETS_S = tuple(i * 0.010 for i in range(10))

#: the 10 x 1-s cycles begin here in the trace (h200_trace_phases.csv: full at 23.521805)
CYCLES_START_S = 23.5218
#: 9 identical 1-s windows, edges in the middle of each cycle's full-load half (steady at the edge)
CYCLE_EDGES_S = tuple(CYCLES_START_S + 0.25 + k for k in range(10))
#: the same windows with their edges on the idle -> full transitions (the worst case for any
#: extrapolation from instant power, which updates on its own ~100-ms clock)
TRANSITION_EDGES_S = tuple(CYCLES_START_S + k for k in range(10))
#: 1-s windows inside the steady full-load spans (3.50-8.50 s and 16.52-20.52 s), ramps left out
STEADY_EDGES_S = ((3.8, 4.8, 5.8, 6.8, 7.8), (16.8, 17.8, 18.8, 19.8))


def _fakes() -> Any:
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    from fakes import fake_nvml

    return fake_nvml


def _gpu(*, energy_counter: bool = True, instant_field: bool = True) -> tuple[Any, Any, Any]:
    """A fake H200 replaying the trace, and our component on it. Returns (gpu, nvml, clock)."""
    from codecarbon_callbacks.core.hardware.nvml import detect_nvml

    fake = _fakes()
    clock = fake.VirtualClock()
    device = fake.FakeDevice.from_h200_trace(uuid="GPU-bench", energy_counter=energy_counter,
                                             instant_field=instant_field)
    nvml = fake.FakeNvml([device], clock=clock)
    gpus, notes = detect_nvml(nvml=nvml, clock=clock.now, sleep=clock.sleep, environ={})
    if not gpus:
        raise RuntimeError(f"the fake NVML gave no GPU: {notes}")
    return gpus[0], nvml, clock


def replay(
    edges_s: Sequence[float],
    *,
    lead_s: float = 2.0,
    energy_counter: bool = True,
    instant_field: bool = True,
    plain: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Start ``lead_s`` before the first edge; at each edge our read, then a plain counter read."""
    import random

    rng = random.Random(seed)
    gpu, nvml, clock = _gpu(energy_counter=energy_counter, instant_field=instant_field)
    trace = _fakes().h200_trace()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    start_s = edges_s[0] - lead_s
    clock.set(start_s)
    gpu.start(clock.now())
    next_tick = start_s + SAMPLER_INTERVAL_S
    edge_times, ours_j, plain_j, truth_j = [], [], [], []
    hold_s, reads, cpu_s = [], [], []
    for edge in edges_s:
        while next_tick < edge:
            clock.set(next_tick)
            gpu.sample(clock.now())
            next_tick += SAMPLER_INTERVAL_S + rng.uniform(-SAMPLER_JITTER_S, SAMPLER_JITTER_S)
        clock.set(edge)
        now = clock.now()
        reads_before = getattr(gpu, "counter_reads", 0)
        t0 = time.perf_counter()
        ours_j.append(gpu.energy_j(now))
        cpu_s.append(time.perf_counter() - t0)
        hold_s.append(clock.now() - now)
        reads.append(getattr(gpu, "counter_reads", 0) - reads_before)
        edge_times.append(now)
        truth_j.append(trace.true_energy_mj(now) / 1000.0)
        if plain and energy_counter:
            plain_j.append(nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0)

    def diffs(values: list[float]) -> list[float]:
        return [b - a for a, b in zip(values, values[1:])]

    return {
        "edge_times_s": edge_times,
        "ours_j": diffs(ours_j),
        "plain_j": diffs(plain_j),
        "truth_j": diffs(truth_j),
        "ours_total_j": ours_j[-1] - ours_j[0],
        "plain_total_j": plain_j[-1] - plain_j[0] if plain_j else None,
        "truth_total_j": truth_j[-1] - truth_j[0],
        "edge_hold_s": hold_s,
        "edge_counter_reads": reads,
        "edge_cpu_s": cpu_s,
        "method": str(getattr(gpu.method, "value", gpu.method)),
    }


def _errors_percent(measured: Sequence[float], truth: Sequence[float]) -> list[float]:
    return [100.0 * (m - t) / t for m, t in zip(measured, truth)]


def _rms(values: Sequence[float]) -> float:
    return (sum(v * v for v in values) / len(values)) ** 0.5 if values else float("nan")


def jitter(edge_sets: Sequence[Sequence[float]]) -> dict[str, Any]:
    """CV of identical windows, ours / plain / truth, over every phase offset."""
    per_offset = []
    all_errors: dict[str, list[float]] = {"ours": [], "plain": []}
    for i, offset in enumerate(PHASE_OFFSETS_S):
        cvs: dict[str, list[float]] = {"ours": [], "plain": [], "truth": []}
        devs: dict[str, list[float]] = {"ours": [], "plain": [], "truth": []}
        for edges in edge_sets:
            result = replay([e + offset for e in edges], seed=i)
            for key in cvs:
                cvs[key].append(cv_percent(result[f"{key}_j"]))
                devs[key].append(max_dev_percent(result[f"{key}_j"]))
            all_errors["ours"] += _errors_percent(result["ours_j"], result["truth_j"])
            all_errors["plain"] += _errors_percent(result["plain_j"], result["truth_j"])
        per_offset.append({
            "offset_s": offset,
            **{f"{k}_cv_percent": statistics.fmean(v) for k, v in cvs.items()},
            **{f"{k}_max_dev_percent": max(v) for k, v in devs.items()},
        })
    summary = {}
    for key in ("ours", "plain", "truth"):
        summary[f"{key}_cv_percent"] = statistics.fmean(p[f"{key}_cv_percent"] for p in per_offset)
        summary[f"{key}_max_dev_percent"] = max(p[f"{key}_max_dev_percent"] for p in per_offset)
    summary["ours_rms_error_percent"] = _rms(all_errors["ours"])
    summary["plain_rms_error_percent"] = _rms(all_errors["plain"])
    summary["ours_max_error_percent"] = max(abs(e) for e in all_errors["ours"])
    summary["plain_max_error_percent"] = max(abs(e) for e in all_errors["plain"])
    summary["windows"] = len(all_errors["ours"])
    # a window off by a whole counter step (100 ms of power) shows as a > 5% error at 1 s
    summary["ours_windows_over_5pct"] = sum(abs(e) > 5.0 for e in all_errors["ours"])
    summary["plain_windows_over_5pct"] = sum(abs(e) > 5.0 for e in all_errors["plain"])
    summary["per_offset"] = per_offset
    return summary


def whole_trace(**kwargs: Any) -> dict[str, Any]:
    """1-s windows tiling 0.6-33.4 s of the trace."""
    edges = [0.6 + i for i in range(33)] + [33.4]
    result = replay(edges, lead_s=0.0, **kwargs)
    errors = _errors_percent(result["ours_j"], result["truth_j"])
    result["window_rms_error_percent"] = _rms(errors)
    result["window_max_error_percent"] = max(abs(e) for e in errors)
    result["total_vs_truth_percent"] = 100.0 * (result["ours_total_j"] / result["truth_total_j"] - 1)
    if result["plain_total_j"]:
        result["total_vs_plain_percent"] = 100.0 * (result["ours_total_j"] / result["plain_total_j"] - 1)
        plain_errors = _errors_percent(result["plain_j"], result["truth_j"])
        result["plain_window_rms_error_percent"] = _rms(plain_errors)
        result["plain_window_max_error_percent"] = max(abs(e) for e in plain_errors)
    result["tiling_sum_minus_total_j"] = sum(result["ours_j"]) - result["ours_total_j"]
    return result


def power_usage_average_windows(edges: Sequence[float]) -> list[float]:
    """CodeCarbon's fallback, emulated: nvmlDeviceGetPowerUsage averaged over each window, J."""
    trace = _fakes().h200_trace()
    out = []
    for a, b in zip(edges, edges[1:]):
        n = max(1, int(round((b - a) / SAMPLER_INTERVAL_S)))
        samples = [trace.usage_mw(a + (i + 0.5) * (b - a) / n) / 1000.0 for i in range(n)]
        out.append(statistics.fmean(samples) * (b - a))
    return out


def measure() -> dict[str, Any]:
    result: dict[str, Any] = {
        "jitter_cycles": jitter([list(CYCLE_EDGES_S)]),
        "jitter_transitions": jitter([list(TRANSITION_EDGES_S)]),
        "jitter_steady": jitter([list(e) for e in STEADY_EDGES_S]),
        "whole": whole_trace(),
        "fallback_instant": whole_trace(energy_counter=False),
        "fallback_usage": whole_trace(energy_counter=False, instant_field=False),
    }
    whole = result["whole"]
    cc_windows = power_usage_average_windows(whole["edge_times_s"])
    cc_errors = _errors_percent(cc_windows, whole["truth_j"])
    result["codecarbon_fallback"] = {
        "window_rms_error_percent": _rms(cc_errors),
        "window_max_error_percent": max(abs(e) for e in cc_errors),
        "total_vs_truth_percent": 100.0 * (sum(cc_windows) / whole["truth_total_j"] - 1),
    }
    for key in ("whole", "fallback_instant", "fallback_usage"):
        for heavy in ("edge_times_s", "ours_j", "plain_j", "truth_j", "edge_hold_s", "edge_counter_reads",
                      "edge_cpu_s"):
            values = result[key].pop(heavy)
            if heavy == "edge_hold_s":
                result[key]["edge_hold_median_s"] = statistics.median(values[1:])
                result[key]["edge_hold_max_s"] = max(values[1:])
            elif heavy == "edge_counter_reads":
                result[key]["edge_counter_reads_max"] = max(values)
            elif heavy == "edge_cpu_s":
                result[key]["edge_cpu_median_s"] = statistics.median(values[1:])
    return result


# -- orchestration --------------------------------------------------------------------------------


def rows_for(data: dict[str, Any]) -> list[Row]:
    section = "gpu:replay"
    rows = []
    for key, label in (("jitter_steady", "1-s windows at full load"),
                       ("jitter_cycles", "1-s cycles, edges mid-load"),
                       ("jitter_transitions", "1-s cycles, edges on load steps")):
        j = data[key]
        ok = j["ours_cv_percent"] < 1.0 and j["ours_cv_percent"] < j["plain_cv_percent"]
        if key == "jitter_transitions":
            ok = None  # a stress case, no target
        rows.append(Row(
            section, f"(1) jitter, CV of {label} (max dev)",
            f"{fmt_pct(j['ours_cv_percent'])} ({fmt_pct(j['ours_max_dev_percent'], 1)})",
            f"{fmt_pct(j['plain_cv_percent'])} ({fmt_pct(j['plain_max_dev_percent'], 1)})",
            "< 1%, below plain", ok,
            note=f"{len(PHASE_OFFSETS_S)} phase offsets, {j['windows']} windows; truth CV "
                 f"{fmt_pct(j['truth_cv_percent'])}; rms error vs truth ours "
                 f"{fmt_pct(j['ours_rms_error_percent'])}, plain {fmt_pct(j['plain_rms_error_percent'])}; "
                 f"windows off by > 5%: ours {j['ours_windows_over_5pct']}, plain {j['plain_windows_over_5pct']}",
        ))
    whole = data["whole"]
    rows.append(Row(
        section, "(2) agreement: run total vs counter delta around it",
        fmt_pct(whole["total_vs_plain_percent"], 3), "-", "within 0.5%",
        abs(whole["total_vs_plain_percent"]) < 0.5,
        note=f"vs truth {fmt_pct(whole['total_vs_truth_percent'], 3)}; tiling windows sum - total = "
             f"{whole['tiling_sum_minus_total_j']:.2e} J",
    ))
    rows.append(Row(
        section, "(1') 1-s windows over the whole trace, rms error vs truth (max)",
        f"{fmt_pct(whole['window_rms_error_percent'])} ({fmt_pct(whole['window_max_error_percent'], 1)})",
        f"{fmt_pct(whole['plain_window_rms_error_percent'])} "
        f"({fmt_pct(whole['plain_window_max_error_percent'], 1)})", "",
        note="CodeCarbon column: plain counter deltas at the same edges (CodeCarbon 3.3.2's method)",
    ))
    inst, usage, cc = data["fallback_instant"], data["fallback_usage"], data["codecarbon_fallback"]
    rows.append(Row(
        section, "(3) power fallback, 1-s windows rms error (max)",
        f"instant {fmt_pct(inst['window_rms_error_percent'])} ({fmt_pct(inst['window_max_error_percent'], 1)}); "
        f"usage {fmt_pct(usage['window_rms_error_percent'])} ({fmt_pct(usage['window_max_error_percent'], 1)})",
        f"usage avg {fmt_pct(cc['window_rms_error_percent'])} ({fmt_pct(cc['window_max_error_percent'], 1)})",
        "",
        note=f"totals vs truth: instant {fmt_pct(inst['total_vs_truth_percent'])}, usage "
             f"{fmt_pct(usage['total_vs_truth_percent'])}, CodeCarbon-style usage average "
             f"{fmt_pct(cc['total_vs_truth_percent'])}",
    ))
    rows.append(Row(
        section, "(4) edge: counter reads; time held (virtual); our CPU",
        f"{whole['edge_counter_reads_max']} read; {fmt_ms(whole['edge_hold_median_s'])} "
        f"(max {fmt_ms(whole['edge_hold_max_s'])}); {fmt_ms(whole['edge_cpu_median_s'])}",
        "1 read (plain)", "1 read per edge", whole["edge_counter_reads_max"] <= 1,
        note="the fake replays the H200's read durations; concurrency of real reads: gpu_validation.py",
    ))
    return rows


def collect(*, quick: bool = False) -> tuple[list[Row], dict[str, Any]]:
    from _common import run_script

    try:
        data = run_script("trace_replay.py", [], timeout_s=600)
    except Exception as e:
        return [Row("gpu:replay", "trace replay", "failed", "-", "",
                    note=str(e).strip().splitlines()[-1][:160] if str(e).strip() else "failed")], {"error": str(e)}
    return rows_for(data), data


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    emit(measure())


if __name__ == "__main__":
    main()
