"""Core figures, ours beside CodeCarbon 3.3.2: import, start, stop, window edges, sampler, memory.

Each measurement runs in a fresh process (``python benchmarks/core_bench.py <what> --tool ours``
prints one JSON line); :func:`collect` runs them and returns the table rows.

- ``lifecycle``: ``import`` time and the modules it loaded, construction + ``start()`` (everything
  after the bare import, lazy imports and hardware detection included), ``stop()`` after a short
  run.
- ``edges``: the cost of one window boundary on the calling thread (ours: ``switch_window``, one
  meter read; CodeCarbon: ``stop_task()`` + ``start_task()``, what a user writes today), then the
  Python memory retained after 10,000 of them (tracemalloc, after ``gc.collect()``) and the RSS
  growth.
- ``session``: the framework-neutral session behind every callback: memory retained and the cost
  of an epoch's edges, early in a run and after thousands of epochs.
- ``fake-gpus``: ours with 1 and 4 fake H200s (tests/fakes, real clock): edge cost and sampler CPU.
- ``sampler``: the CPU time of every thread the tracker starts while the main thread sleeps
  (process CPU time minus the main thread's), over the wall time.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    CODECARBON_KWARGS,
    HEAVY_MODULES,
    JSON_MARK,
    Row,
    emit,
    fake_nvml_env,
    fmt_ms,
    fmt_pct,
    median,
    run_fresh,
    run_script,
)

logger = logging.getLogger(__name__)

TOOLS = ("ours", "codecarbon")
IMPORT_TARGET_S = 0.050
START_TARGET_S = 0.050
STOP_TARGET_S = 0.020
SAMPLER_TARGET_PERCENT = 0.5


def _quiet_codecarbon() -> None:
    # CodeCarbon logs at INFO before log_level applies; keep the benchmark output readable
    logging.getLogger("codecarbon").setLevel(logging.ERROR)


def _new_tracker(tool: str, **overrides: Any) -> Any:
    kwargs = {**CODECARBON_KWARGS, **overrides}
    if tool == "ours":
        from codecarbon_callbacks import OfflineEmissionsTracker

        return OfflineEmissionsTracker(**kwargs)
    import codecarbon

    _quiet_codecarbon()
    return codecarbon.OfflineEmissionsTracker(**kwargs)


# -- measurements, each run in its own fresh process ---------------------------------------------


#: run as ``python -c`` in a fresh interpreter: nothing but sys and time is loaded before the
#: timed import, so the import pays for every stdlib module it needs (as a user's script does);
#: %-formatted, since the template is full of braces that str.format would need doubled
LIFECYCLE_SNIPPET = """
import sys, time
tool, run_s = sys.argv[1], float(sys.argv[2])
t0 = time.perf_counter()
if tool == "ours":
    import codecarbon_callbacks
else:
    import codecarbon
t1 = time.perf_counter()
heavy = sorted(m for m in %(heavy)r if m in sys.modules)
if tool == "ours":
    from codecarbon_callbacks import OfflineEmissionsTracker
else:
    import logging
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    from codecarbon import OfflineEmissionsTracker
tracker = OfflineEmissionsTracker(**%(kwargs)r)
t2 = time.perf_counter()
tracker.start()
t3 = time.perf_counter()
time.sleep(run_s)
t4 = time.perf_counter()
tracker.stop()
t5 = time.perf_counter()
import json
print(%(mark)r + json.dumps({
    "tool": tool, "import_s": t1 - t0, "heavy_modules": heavy, "construct_s": t2 - t1,
    "start_s": t3 - t2, "construct_start_s": t3 - t1, "stop_s": t5 - t4,
}), flush=True)
""" % {"heavy": HEAVY_MODULES, "kwargs": CODECARBON_KWARGS, "mark": JSON_MARK}  # noqa: UP031


def measure_lifecycle(tool: str, run_s: float) -> dict[str, Any]:
    """import, construction + start() (everything after the bare import), stop(): fresh process."""
    return run_fresh(LIFECYCLE_SNIPPET, args=[tool, str(run_s)])


def measure_sampler(tool: str, run_s: float) -> dict[str, Any]:
    """CPU time of the threads the tracker runs, while the main thread sleeps."""
    tracker = _new_tracker(tool)
    tracker.start()
    time.sleep(0.2)  # let start-up work (first reads, lookups) finish: we want the steady cost
    cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    time.sleep(run_s)
    cpu1, main1, wall1 = time.process_time(), time.thread_time(), time.perf_counter()
    tracker.stop()
    wall = wall1 - wall0
    background_s = (cpu1 - cpu0) - (main1 - main0)
    result = {
        "tool": tool,
        "wall_s": wall,
        "background_cpu_s": background_s,
        "percent_of_core": 100.0 * background_s / wall,
    }
    meter = getattr(tracker, "_meter", None)
    if tool == "ours" and meter is not None:
        # the sampler's own account (time.thread_time inside the thread), as a cross-check
        result["sampler_thread_cpu_s"] = getattr(meter, "sampler_cpu_s", None)
    return result


def measure_edges(tool: str, n_timed: int, n_memory: int) -> dict[str, Any]:
    """Cost of one window boundary, then memory retained over ``n_memory`` boundaries."""
    import tracemalloc

    import psutil

    process = psutil.Process()
    tracker = _new_tracker(tool)
    tracker.start()
    if tool == "ours":
        state = {"id": tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")}

        def boundary(i: int) -> None:
            _, state["id"] = tracker.switch_window(
                state["id"], "epoch", f"epoch {i}", epoch=i, phase="train"
            )

    else:
        tracker.start_task("epoch 0")

        def boundary(i: int) -> None:
            tracker.stop_task()
            tracker.start_task(f"epoch {i}")

    for i in range(1, 51):  # warm-up: first-call imports and caches
        boundary(i)
    times = []
    for i in range(51, 51 + n_timed):
        t0 = time.perf_counter()
        boundary(i)
        times.append(time.perf_counter() - t0)
    times.sort()
    gc.collect()
    rss0 = process.memory_info().rss
    tracemalloc.start()
    gc.collect()
    traced0 = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    start = 51 + n_timed
    for i in range(start, start + n_memory):
        boundary(i)
    loop_s = time.perf_counter() - t0
    gc.collect()
    traced1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    gc.collect()
    rss1 = process.memory_info().rss
    tracker.stop()
    return {
        "tool": tool,
        "edge_median_s": median(times),
        "edge_p99_s": times[int(0.99 * (len(times) - 1))],
        "edge_max_s": times[-1],
        "n_timed": n_timed,
        "n_memory": n_memory,
        "traced_growth_bytes": traced1 - traced0,
        "bytes_per_window": (traced1 - traced0) / n_memory,
        "rss_growth_bytes": rss1 - rss0,
        "memory_loop_s": loop_s,
    }


def measure_edges_csv(n_timed: int) -> dict[str, Any]:
    """Ours with the default CSV output: a window row appended to emissions_windows.csv per edge."""
    with tempfile.TemporaryDirectory() as out:
        tracker = _new_tracker("ours", save_to_file=True, output_dir=out)
        tracker.start()
        window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
        for i in range(1, 21):
            _, window = tracker.switch_window(window, "epoch", f"epoch {i}", epoch=i, phase="train")
        times = []
        for i in range(21, 21 + n_timed):
            t0 = time.perf_counter()
            _, window = tracker.switch_window(window, "epoch", f"epoch {i}", epoch=i, phase="train")
            times.append(time.perf_counter() - t0)
        tracker.stop()
    return {"edge_median_s": median(times), "n_timed": n_timed}


def measure_fake_gpus(run_s: float, n_edges: int) -> dict[str, Any]:
    """Ours with fake H200s (tests/fakes, real clock): sampler CPU and edge cost with GPUs.

    The fake's counter read sleeps for a recorded H200 read duration (2.4-3.6 ms), so an edge
    shows whether several GPUs' counters are read one after the other or at once.
    """
    tracker = _new_tracker("ours")
    tracker.start()
    gpus = [c for c in tracker.components if c.kind == "gpu"]
    time.sleep(0.6)  # the first counter watch (<= 0.35 s) is start-up work
    cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    time.sleep(run_s)
    cpu1, main1, wall1 = time.process_time(), time.thread_time(), time.perf_counter()
    window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    reads0 = sum(getattr(g, "counter_reads", 0) for g in gpus)
    times = []
    for i in range(1, n_edges + 1):
        t0 = time.perf_counter()
        _, window = tracker.switch_window(window, "epoch", f"epoch {i}", epoch=i, phase="train")
        times.append(time.perf_counter() - t0)
    reads1 = sum(getattr(g, "counter_reads", 0) for g in gpus)
    tracker.stop()
    wall = wall1 - wall0
    return {
        "gpus": len(gpus),
        "methods": sorted({str(getattr(g.method, "value", g.method)) for g in gpus}),
        "percent_of_core": 100.0 * ((cpu1 - cpu0) - (main1 - main0)) / wall,
        "edge_median_s": median(times),
        "edge_max_s": max(times),
        # includes the sampler's watch reads during the edge loop: an upper bound per edge
        "counter_reads_per_edge_upper": (reads1 - reads0) / max(1, n_edges) / max(1, len(gpus)),
    }


def measure_session(n_epochs: int) -> dict[str, Any]:
    """The framework-neutral session every callback uses: memory and cost per epoch over a run.

    Each epoch is ``begin_epoch`` + ``end_epoch`` (two window edges: train -> other -> train).
    """
    import tracemalloc

    from codecarbon_callbacks.session import EmissionsSession

    session = EmissionsSession("custom", **CODECARBON_KWARGS)
    session.begin_run("fit", info={"epochs": n_epochs + 400})

    def epoch(i: int) -> float:
        t0 = time.perf_counter()
        session.begin_epoch(i)
        session.end_epoch(i, done=i + 1)
        return time.perf_counter() - t0

    early = [epoch(i) for i in range(200)]
    gc.collect()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    for i in range(200, 200 + n_epochs):
        epoch(i)
    gc.collect()
    traced1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    late = [epoch(i) for i in range(200 + n_epochs, 400 + n_epochs)]
    session.end_run()
    return {
        "n_epochs": n_epochs,
        "bytes_per_epoch": (traced1 - traced0) / n_epochs,
        "epoch_cost_first_200_s": median(early),
        "epoch_cost_after_s": median(late),
    }


# -- orchestration --------------------------------------------------------------------------------


def collect(*, quick: bool = False) -> tuple[list[Row], dict[str, Any]]:
    """Run every core measurement for both tools; return table rows and the raw results."""
    n_fresh = 2 if quick else 7
    run_s = 0.1 if quick else 1.0
    sampler_s = 1.5 if quick else 20.0
    n_timed = 200 if quick else 2000
    n_memory = 1000 if quick else 10_000
    raw: dict[str, Any] = {}

    # sampler runs first, both tools at once: each mostly sleeps, CPU times are per process
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            tool: pool.submit(
                run_script, "core_bench.py", ["sampler", "--tool", tool, "--run-s", str(sampler_s)]
            )
            for tool in TOOLS
        }
        raw["sampler"] = {tool: f.result() for tool, f in futures.items()}

    raw["lifecycle"] = {}
    for tool in TOOLS:
        if not quick:
            measure_lifecycle(
                tool, 0.0
            )  # untimed: fills __pycache__, as an installed package has it
        raw["lifecycle"][tool] = [measure_lifecycle(tool, run_s) for _ in range(n_fresh)]
    raw["edges"] = {
        tool: run_script(
            "core_bench.py",
            ["edges", "--tool", tool, "--n-timed", str(n_timed), "--n-memory", str(n_memory)],
        )
        for tool in TOOLS
    }
    raw["edges_csv"] = run_script("core_bench.py", ["edges-csv", "--n-timed", str(n_timed // 4)])

    raw["session"] = run_script(
        "core_bench.py", ["session", "--n-timed", str(300 if quick else 3000)]
    )
    raw["fake_gpus"] = {}
    for n_gpus in (1, 4):
        devices = [
            {"uuid": f"GPU-fake-{i}", "trace": "h200", "time_offset_s": 3.6} for i in range(n_gpus)
        ]
        try:
            raw["fake_gpus"][n_gpus] = run_script(
                "core_bench.py",
                [
                    "fake-gpus",
                    "--run-s",
                    str(0.5 if quick else 8.0),
                    "--n-timed",
                    "20" if quick else "100",
                ],
                env_extra=fake_nvml_env(devices),
            )
        except Exception as e:  # the fake lives in tests/: absent from an installed package
            raw["fake_gpus"][n_gpus] = {"error": str(e)[-300:]}

    life = {tool: raw["lifecycle"][tool] for tool in TOOLS}

    def med(tool: str, key: str) -> float:
        return median([r[key] for r in life[tool]])

    rows: list[Row] = []
    imp = med("ours", "import_s")
    heavy = sorted({m for r in life["ours"] for m in r["heavy_modules"]})
    rows.append(
        Row(
            "core",
            f"import (fresh process, median of {n_fresh})",
            fmt_ms(imp),
            fmt_ms(med("codecarbon", "import_s")),
            "< 50 ms",
            imp < IMPORT_TARGET_S,
            raw={"ours_s": imp},
        )
    )
    rows.append(
        Row(
            "core",
            "modules DESIGN.md forbids, loaded by the import",
            ", ".join(heavy) or "none",
            ", ".join(sorted({m for r in life["codecarbon"] for m in r["heavy_modules"]}))
            or "none",
            "none",
            not heavy,
        )
    )
    cs = med("ours", "construct_start_s")
    rows.append(
        Row(
            "core",
            f"construction + start() (fresh process, median of {n_fresh})",
            fmt_ms(cs),
            fmt_ms(med("codecarbon", "construct_start_s")),
            "< 50 ms",
            cs < START_TARGET_S,
            note="after the bare import: lazy imports and hardware detection included; "
            "fastest run: ours "
            f"{fmt_ms(min(r['construct_start_s'] for r in life['ours']))}, CodeCarbon "
            f"{fmt_ms(min(r['construct_start_s'] for r in life['codecarbon']))}",
        )
    )
    stop_s = med("ours", "stop_s")
    rows.append(
        Row(
            "core",
            f"stop() after {run_s:g} s (fresh process, median of {n_fresh})",
            fmt_ms(stop_s),
            fmt_ms(med("codecarbon", "stop_s")),
            "< 20 ms",
            stop_s < STOP_TARGET_S,
        )
    )
    edges = raw["edges"]
    rows.append(
        Row(
            "core",
            f"one window boundary (median of {n_timed})",
            fmt_ms(edges["ours"]["edge_median_s"]),
            fmt_ms(edges["codecarbon"]["edge_median_s"]),
            "",
            note="ours: switch_window (one meter read); CodeCarbon: stop_task()+start_task(); "
            f"p99 ours {fmt_ms(edges['ours']['edge_p99_s'])}, "
            f"CodeCarbon {fmt_ms(edges['codecarbon']['edge_p99_s'])}",
        )
    )
    rows.append(
        Row(
            "core",
            "one window boundary with the CSV output",
            fmt_ms(raw["edges_csv"]["edge_median_s"]),
            "-",
            "",
            note="ours only (CodeCarbon writes no per-task file): "
            "a row appended to emissions_windows.csv",
        )
    )
    sampler = raw["sampler"]
    pct = sampler["ours"]["percent_of_core"]
    rows.append(
        Row(
            "core",
            f"sampler CPU, idle run of {sampler_s:g} s (% of one core)",
            fmt_pct(max(0.0, pct), 3),
            fmt_pct(max(0.0, sampler["codecarbon"]["percent_of_core"]), 3),
            "< 0.5%",
            pct < SAMPLER_TARGET_PERCENT,
            note="CPU time of every thread the tracker starts, over wall time "
            "(this machine: no RAPL, no GPU, "
            "so our sampler has little to do; see the fake-H200 row)",
        )
    )
    sess = raw["session"]
    rows.append(
        Row(
            "core",
            f"session (every callback): memory per epoch over {sess['n_epochs']:,} epochs",
            f"{sess['bytes_per_epoch']:.0f} B",
            f"{edges['codecarbon']['bytes_per_window']:.0f} B (a task per epoch)",
            "",
            note="the session keeps every window record for summary(); an epoch is 2 window edges",
        )
    )
    rows.append(
        Row(
            "core",
            "session: cost of an epoch's edges, "
            f"first 200 / after {sess['n_epochs'] + 200:,} epochs",
            f"{fmt_ms(sess['epoch_cost_first_200_s'])} / {fmt_ms(sess['epoch_cost_after_s'])}",
            f"{fmt_ms(edges['codecarbon']['edge_median_s'])} (flat)",
            "flat",
            sess["epoch_cost_after_s"] < 1.5 * sess["epoch_cost_first_200_s"],
            note="grows with the run when end_epoch scans every record kept so far",
        )
    )
    for n_gpus, data in raw["fake_gpus"].items():
        if "error" in data or not data.get("gpus"):
            rows.append(
                Row(
                    "core",
                    f"with {n_gpus} fake H200 (replayed trace)",
                    "n/a",
                    "-",
                    "",
                    note=str(data.get("error", "no GPU detected"))[-150:],
                )
            )
            continue
        rows.append(
            Row(
                "core",
                f"with {n_gpus} fake H200: window boundary; sampler CPU",
                f"{fmt_ms(data['edge_median_s'])}; {fmt_pct(data['percent_of_core'], 2)}",
                "-",
                "",
                note="fake NVML (tests/fakes) in real time: "
                "a counter read sleeps 2.4-3.6 ms as on an H200; "
                f"methods {','.join(data['methods'])}",
            )
        )
    bpw = edges["ours"]["bytes_per_window"]
    rows.append(
        Row(
            "core",
            f"memory retained per window over {n_memory:,} windows",
            f"{bpw:.1f} B ({edges['ours']['rss_growth_bytes'] / 2**20:+.1f} MiB RSS)",
            f"{edges['codecarbon']['bytes_per_window']:.0f} B "
            f"({edges['codecarbon']['rss_growth_bytes'] / 2**20:+.1f} MiB RSS)",
            "no leak (< 100 B)",
            bpw < 100,
            note="tracemalloc after gc.collect(); CodeCarbon keeps every task's record by design",
        )
    )
    return rows, raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["sampler", "edges", "edges-csv", "fake-gpus", "session"])
    parser.add_argument("--tool", choices=TOOLS, default="ours")
    parser.add_argument("--run-s", type=float, default=1.0)
    parser.add_argument("--n-timed", type=int, default=2000)
    parser.add_argument("--n-memory", type=int, default=10_000)
    args = parser.parse_args(argv)
    if args.what == "sampler":
        emit(measure_sampler(args.tool, args.run_s))
    elif args.what == "session":
        emit(measure_session(args.n_timed))
    elif args.what == "fake-gpus":
        emit(measure_fake_gpus(args.run_s, args.n_timed))
    elif args.what == "edges":
        emit(measure_edges(args.tool, args.n_timed, args.n_memory))
    else:
        emit(measure_edges_csv(args.n_timed))


if __name__ == "__main__":
    main()
