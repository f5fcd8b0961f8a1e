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
   ``nvmlDeviceGetPowerUsage`` integrated with its lag corrected) on the same epochs;
4. a window edge's cost: counter reads per edge and the virtual time the edge holds the
   caller's thread, plus the CPU time of our edge arithmetic (real ``perf_counter``);
5. counter reads the sampler makes besides the edges' (phase watches and anchors), per second,
   from ``BURST_SETTLE_S`` after the first edge.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import REPO_ROOT, Row, cv_percent, emit, fmt_ms, fmt_pct, max_dev_percent

TESTS_DIR = REPO_ROOT / "tests"
SAMPLER_INTERVAL_S = 0.025
SAMPLER_JITTER_S = 0.002

#: the steady full-load spans of the trace (3.50-8.50 s and 16.52-20.52 s), ramps left out
STEADY_SPANS_S = ((3.9, 8.4), (16.6, 20.4))
#: the whole trace, for windows that tile it
WHOLE_SPAN_S = (0.6, 33.4)
#: replays per figure, each with its own epoch length and edge jitter
SEEDS = tuple(range(12))
#: background reads are counted from this long after the first edge (its burst and the
#: YOUNG_OBSERVATIONS watches that follow it, one every 0.25 s), s
BURST_SETTLE_S = 6.0
COUNTER_CALL = "nvmlDeviceGetTotalEnergyConsumption"


def epoch_edges(seed: int, lo: float, hi: float) -> list[float]:
    """Edges of ~1-s epochs from ``lo`` to ``hi``, as real epochs are: not exactly 1.000 s.

    Each replay draws its epoch length in 0.95-1.05 s and each epoch adds 0-4 ms. (Windows of
    exactly 1.000 s would be a multiple of the counter's 100.001-ms period: every edge would sit
    at the same phase against the counter's steps, and the staleness of plain counter deltas
    would cancel between the two edges of every window, which real epochs never do.)
    """
    import random

    rng = random.Random(seed)
    period = 1.0 + rng.uniform(-0.05, 0.05)
    edges, t = [], lo + rng.uniform(0.0, 0.1)
    while t < hi:
        edges.append(t)
        t += period + rng.uniform(0.0, 0.004)
    return edges


def _fakes() -> Any:
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    from fakes import fake_nvml

    return fake_nvml


def _gpu(*, energy_counter: bool = True, instant_field: bool = True) -> tuple[Any, Any, Any]:
    """A fake H200 replaying the trace, and our component on it. Returns (gpu, nvml, clock)."""
    from codecarbon_callbacks_core.hardware.nvml import detect_nvml

    fake = _fakes()
    clock = fake.VirtualClock()
    device = fake.FakeDevice.from_h200_trace(
        uuid="GPU-bench", energy_counter=energy_counter, instant_field=instant_field
    )
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
    calls = nvml.calls
    background, settled_s = 0, edges_s[0] + BURST_SETTLE_S
    for edge in edges_s:
        while next_tick < edge:
            clock.set(next_tick)
            reads_before = calls.get(COUNTER_CALL, 0)
            gpu.sample(clock.now())
            if next_tick >= settled_s:
                background += calls.get(COUNTER_CALL, 0) - reads_before
            next_tick += SAMPLER_INTERVAL_S + rng.uniform(-SAMPLER_JITTER_S, SAMPLER_JITTER_S)
        clock.set(edge)
        now = clock.now()
        reads_before = calls.get(COUNTER_CALL, 0)
        t0 = time.perf_counter()
        ours_j.append(gpu.energy_j(now))
        cpu_s.append(time.perf_counter() - t0)
        hold_s.append(clock.now() - now)
        reads.append(calls.get(COUNTER_CALL, 0) - reads_before)
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
        # counter reads the sampler made (not at an edge) after the first burst, per second
        "background_reads_per_s": background / max(1e-9, edges_s[-1] - settled_s),
        "method": str(getattr(gpu.method, "value", gpu.method)),
    }


def _errors_percent(measured: Sequence[float], truth: Sequence[float]) -> list[float]:
    return [100.0 * (m - t) / t for m, t in zip(measured, truth)]


def _rms(values: Sequence[float]) -> float:
    return (sum(v * v for v in values) / len(values)) ** 0.5 if values else float("nan")


def jitter() -> dict[str, Any]:
    """CV of ~1-s windows at steady full load: ours, plain counter deltas, truth."""
    cvs: dict[str, list[float]] = {"ours": [], "plain": [], "truth": []}
    devs: dict[str, list[float]] = {"ours": [], "plain": [], "truth": []}
    all_errors: dict[str, list[float]] = {"ours": [], "plain": []}
    for seed in SEEDS:
        for lo, hi in STEADY_SPANS_S:
            result = replay(epoch_edges(seed, lo, hi), lead_s=0.5, seed=seed)
            for key in cvs:
                cvs[key].append(cv_percent(result[f"{key}_j"]))
                devs[key].append(max_dev_percent(result[f"{key}_j"]))
            all_errors["ours"] += _errors_percent(result["ours_j"], result["truth_j"])
            all_errors["plain"] += _errors_percent(result["plain_j"], result["truth_j"])
    summary: dict[str, Any] = {}
    for key in ("ours", "plain", "truth"):
        summary[f"{key}_cv_percent"] = statistics.fmean(cvs[key])
        summary[f"{key}_max_dev_percent"] = max(devs[key])
    for key in ("ours", "plain"):
        summary[f"{key}_rms_error_percent"] = _rms(all_errors[key])
        summary[f"{key}_max_error_percent"] = max(abs(e) for e in all_errors[key])
        # a window off by a whole counter step (100 ms of power) shows as a > 5% error at 1 s
        summary[f"{key}_windows_over_5pct"] = sum(abs(e) > 5.0 for e in all_errors[key])
    summary["windows"] = len(all_errors["ours"])
    summary["sets"] = len(cvs["ours"])
    return summary


def whole_trace(**kwargs: Any) -> dict[str, Any]:
    """~1-s windows tiling the whole trace (every load phase), over every seed."""
    errors: list[float] = []
    plain_errors: list[float] = []
    totals: dict[str, list[float]] = {"vs_truth": [], "vs_plain": [], "tiling": []}
    holds: list[float] = []
    reads: list[int] = []
    cpu: list[float] = []
    background: list[float] = []
    method = ""
    codecarbon_errors: list[float] = []
    codecarbon_totals: list[float] = []
    for seed in SEEDS:
        lo, hi = WHOLE_SPAN_S
        edges = epoch_edges(seed, lo, hi) + [hi]
        result = replay(edges, lead_s=0.0, seed=seed, **kwargs)
        method = result["method"]
        errors += _errors_percent(result["ours_j"], result["truth_j"])
        totals["vs_truth"].append(100.0 * (result["ours_total_j"] / result["truth_total_j"] - 1))
        totals["tiling"].append(sum(result["ours_j"]) - result["ours_total_j"])
        if result["plain_total_j"]:
            totals["vs_plain"].append(
                100.0 * (result["ours_total_j"] / result["plain_total_j"] - 1)
            )
            plain_errors += _errors_percent(result["plain_j"], result["truth_j"])
        holds += result["edge_hold_s"][1:]
        reads += result["edge_counter_reads"]
        background.append(result["background_reads_per_s"])
        cpu += result["edge_cpu_s"][1:]
        if kwargs.get("energy_counter", True):
            cc = power_usage_average_windows(result["edge_times_s"])
            codecarbon_errors += _errors_percent(cc, result["truth_j"])
            codecarbon_totals.append(100.0 * (sum(cc) / result["truth_total_j"] - 1))
    out: dict[str, Any] = {
        "method": method,
        "windows": len(errors),
        "window_rms_error_percent": _rms(errors),
        "window_max_error_percent": max(abs(e) for e in errors),
        "total_vs_truth_percent_max": max(totals["vs_truth"], key=abs),
        "tiling_sum_minus_total_j_max": max(totals["tiling"], key=abs),
        "edge_hold_median_s": statistics.median(holds),
        "edge_hold_max_s": max(holds),
        "edge_counter_reads_max": max(reads),
        "edge_cpu_median_s": statistics.median(cpu),
        "background_reads_per_s_mean": statistics.fmean(background),
        "background_reads_per_s_max": max(background),
    }
    if totals["vs_plain"]:
        out["total_vs_plain_percent_max"] = max(totals["vs_plain"], key=abs)
        out["plain_window_rms_error_percent"] = _rms(plain_errors)
        out["plain_window_max_error_percent"] = max(abs(e) for e in plain_errors)
    if codecarbon_errors:
        out["codecarbon_fallback"] = {
            "window_rms_error_percent": _rms(codecarbon_errors),
            "window_max_error_percent": max(abs(e) for e in codecarbon_errors),
            "total_vs_truth_percent_max": max(codecarbon_totals, key=abs),
        }
    return out


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
        "jitter_steady": jitter(),
        "whole": whole_trace(),
        "fallback_instant": whole_trace(energy_counter=False),
        "fallback_usage": whole_trace(energy_counter=False, instant_field=False),
    }
    result["codecarbon_fallback"] = result["whole"].pop("codecarbon_fallback")
    return result


# -- orchestration --------------------------------------------------------------------------------


def rows_for(data: dict[str, Any]) -> list[Row]:
    section = "gpu:replay"
    rows = []
    j = data["jitter_steady"]
    ok = j["ours_cv_percent"] < 1.0 and j["ours_cv_percent"] < j["plain_cv_percent"]
    rows.append(
        Row(
            section,
            "(1) jitter: CV of ~1-s epochs at steady full load (max dev)",
            f"{fmt_pct(j['ours_cv_percent'])} ({fmt_pct(j['ours_max_dev_percent'], 1)})",
            f"{fmt_pct(j['plain_cv_percent'])} ({fmt_pct(j['plain_max_dev_percent'], 1)})",
            "< 1%, below plain",
            ok,
            note=f"{j['sets']} sets, {j['windows']} windows; the true windows' CV "
            f"{fmt_pct(j['truth_cv_percent'])}; "
            f"rms error vs truth ours {fmt_pct(j['ours_rms_error_percent'])} (max "
            f"{fmt_pct(j['ours_max_error_percent'], 1)}), plain "
            f"{fmt_pct(j['plain_rms_error_percent'])} (max "
            f"{fmt_pct(j['plain_max_error_percent'], 1)}); windows off by > 5%: ours "
            f"{j['ours_windows_over_5pct']}, "
            f"plain {j['plain_windows_over_5pct']}. CodeCarbon column: plain counter deltas read "
            "at the same edges, "
            "which is CodeCarbon 3.3.2's method (GPUDevice.delta)",
        )
    )
    whole = data["whole"]
    rows.append(
        Row(
            section,
            "(1') ~1-s epochs over the whole trace (all loads): rms error vs truth (max)",
            f"{fmt_pct(whole['window_rms_error_percent'])} "
            f"({fmt_pct(whole['window_max_error_percent'], 1)})",
            f"{fmt_pct(whole['plain_window_rms_error_percent'])} "
            f"({fmt_pct(whole['plain_window_max_error_percent'], 1)})",
            "",
            note=f"{whole['windows']} windows over {len(SEEDS)} replays",
        )
    )
    worst = whole["total_vs_plain_percent_max"]
    rows.append(
        Row(
            section,
            "(2) agreement: run total vs counter delta read around it (worst replay)",
            fmt_pct(worst, 3),
            "-",
            "within 0.5%",
            abs(worst) < 0.5,
            note=f"vs truth (worst) {fmt_pct(whole['total_vs_truth_percent_max'], 3)}; tiling "
            "windows sum - total "
            f"(worst) {whole['tiling_sum_minus_total_j_max']:.1e} J",
        )
    )
    inst, usage, cc = data["fallback_instant"], data["fallback_usage"], data["codecarbon_fallback"]
    rows.append(
        Row(
            section,
            "(3) power fallback, ~1-s epochs: rms error vs truth (max)",
            f"instant {fmt_pct(inst['window_rms_error_percent'])} "
            f"({fmt_pct(inst['window_max_error_percent'], 1)}); "
            f"usage {fmt_pct(usage['window_rms_error_percent'])} "
            f"({fmt_pct(usage['window_max_error_percent'], 1)})",
            f"usage avg {fmt_pct(cc['window_rms_error_percent'])} "
            f"({fmt_pct(cc['window_max_error_percent'], 1)})",
            "",
            note="run totals vs truth (worst): instant "
            f"{fmt_pct(inst['total_vs_truth_percent_max'])}, usage "
            f"{fmt_pct(usage['total_vs_truth_percent_max'])}, CodeCarbon's fallback (emulated: "
            "nvmlDeviceGetPowerUsage averaged over the window) "
            f"{fmt_pct(cc['total_vs_truth_percent_max'])}",
        )
    )
    rows.append(
        Row(
            section,
            "(4) edge: counter reads; time held (virtual); our CPU",
            f"{whole['edge_counter_reads_max']} read; {fmt_ms(whole['edge_hold_median_s'])} "
            f"(max {fmt_ms(whole['edge_hold_max_s'])}); {fmt_ms(whole['edge_cpu_median_s'])}",
            "1 read (plain)",
            "1 read per edge",
            whole["edge_counter_reads_max"] <= 1,
            note="the fake replays the H200's read durations; whether real reads overlap: "
            "gpu_validation.py",
        )
    )
    rows.append(
        Row(
            section,
            "(5) background counter reads per s per GPU, ~1-s epochs (mean, worst replay)",
            f"{whole['background_reads_per_s_mean']:.2f} "
            f"({whole['background_reads_per_s_max']:.2f})",
            "0",
            "< 1 a second",
            whole["background_reads_per_s_max"] < 1.0,
            note=f"counted from {BURST_SETTLE_S:.0f} s after the first edge (its burst and the "
            "young "
            "watches); the edges' own reads not counted",
        )
    )
    return rows


def collect(*, quick: bool = False) -> tuple[list[Row], dict[str, Any]]:
    from _common import run_script

    try:
        data = run_script("trace_replay.py", [], timeout_s=600)
    except Exception as e:
        return [
            Row(
                "gpu:replay",
                "trace replay",
                "failed",
                "-",
                "",
                note=str(e).strip().splitlines()[-1][:160] if str(e).strip() else "failed",
            )
        ], {"error": str(e)}
    return rows_for(data), data


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    emit(measure())


if __name__ == "__main__":
    main()
